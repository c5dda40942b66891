"""Batch jobs that run outside requests: re-sealing records, re-wrapping data keys."""
