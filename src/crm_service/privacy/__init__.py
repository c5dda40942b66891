"""Data-subject rights: erasure with its receipt, and the blocklist of erased identifiers."""
