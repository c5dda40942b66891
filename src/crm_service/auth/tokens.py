"""Opaque bearer tokens: 256 random bits, a recognisable prefix, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "crm_at_"


def new_access_token() -> str:
    # The prefix lets secret scanners recognise a leaked token.
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
