"""Consent: purposes, the append-only consent ledger with signed receipts, consent requests
with deadlines that lock records, and web forms with double opt-in."""
