"""TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps) with pyotp, and the QR code for enrolment."""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp
import segno

STEP_SECONDS = 30
DIGITS = 6
ISSUER = "crm-service"
# The current step and one step back are accepted (clock drift, slow typing); never later.
ACCEPTED_STEPS_BACK = 1


def new_secret() -> str:
    """160 random bits, base32 (RFC 4226 recommends at least 128)."""
    return pyotp.random_base32(length=32)


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def matching_step(secret: str, code: str, moment: datetime) -> int | None:
    """The accepted time step whose code equals `code`, newest first; None when none does."""
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = step_at(moment)
    for step in range(current, current - ACCEPTED_STEPS_BACK - 1, -1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def qr_svg_data_uri(uri: str) -> str:
    """The otpauth:// URI as a QR code, an SVG data URI an <img> can show directly."""
    return segno.make(uri, error="m").svg_data_uri(scale=4)
