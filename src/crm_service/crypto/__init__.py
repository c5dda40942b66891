"""Encryption at rest: master keyring (KMS seam), wrapped data keys, the field codec and
blind indexes. See rules 1-3 of DESIGN.md."""
