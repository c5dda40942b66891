"""The tamper-evident audit log (and, beside it, record history)."""
