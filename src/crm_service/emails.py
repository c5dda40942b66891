"""Email address validation whose error never quotes the address."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from pydantic_core import PydanticCustomError


def valid_email(value: str) -> str:
    """The address with its domain normalized; a value-free error when it is not an address."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        # email-validator's reasons can quote the offending characters.
        raise PydanticCustomError("email", "must be a valid email address") from None
