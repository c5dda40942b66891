"""Blind indexes: HMAC-SHA256 over a normalized value, for exact-match search on sealed fields.

Index keys are data keys of their own purpose (never encryption keys), one per organization,
so the same email has unrelated index values in two organizations. The kind of value is
part of the MAC input, so an email and a phone never share an index value.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import StrEnum

import phonenumbers


class IndexKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    TEXT = "text"


_SPACES = re.compile(r"\s+")


def normalize_email(value: str) -> str:
    return value.strip().casefold()


def normalize_phone(value: str, default_region: str | None) -> str:
    """E.164 when the number parses (with its +country code, or in the default region);
    otherwise its digits, so that at least the same spelling always matches."""
    try:
        number = phonenumbers.parse(value, default_region)
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        pass
    digits = re.sub(r"\D", "", value)
    return ("+" if value.strip().startswith("+") else "") + digits


def normalize_text(value: str) -> str:
    return _SPACES.sub(" ", value.strip()).casefold()


def normalize(kind: IndexKind, value: str, *, phone_region: str | None) -> str:
    if kind is IndexKind.EMAIL:
        return normalize_email(value)
    if kind is IndexKind.PHONE:
        return normalize_phone(value, phone_region)
    return normalize_text(value)


def blind_index(key: bytes, kind: IndexKind, value: str, *, phone_region: str | None) -> str:
    message = (
        kind.value.encode() + b"\x00" + normalize(kind, value, phone_region=phone_region).encode()
    )
    return hmac.new(key, message, hashlib.sha256).hexdigest()
