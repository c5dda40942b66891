"""Encrypted backups, their verification and restore, and the forget-log that keeps erased
data subjects erased after a restore."""
