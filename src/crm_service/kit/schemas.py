"""The one input base class and the types every request schema is built from.

Inputs refuse unknown fields and take JSON as it is typed: a flag is `true` or `false`,
never "yes" or 1; a number is a JSON number, never "5" (JSON Schema counts 5.0 as the
integer 5, so it is taken as such, while 5.5 is not). Query strings arrive as text, so
their numbers are written in decimal digits, and nothing else parses.

Text refuses control characters (C0, DEL, C1): PostgreSQL cannot store NUL, and no name,
address or token contains the others. Multi-line fields (descriptions, notes, assessments)
take tab, line feed, carriage return and the Unicode line and paragraph separators; single-line
fields refuse them too. A lone surrogate, which PostgreSQL cannot store either, pydantic
itself refuses (`string_unicode`). Each text type publishes its rule as a JSON Schema
`pattern`, so generated clients and fuzzers know it; the rule is checked from that expression.

Responses are bounded too (`text`, `FieldNames`): what a response carries is at most what its
input allowed or its construction guarantees, and the document says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

from annotated_types import Interval
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from crm_service.emails import valid_email


class InputModel(BaseModel):
    """Base of every request body and query model: unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid")


# Character classes in the syntax JSON Schema (ECMA-262) and Python's `re` share.
_ALWAYS_REFUSED = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
_LINE_BREAKS = r"\u0009\u000a\u000d\u2028\u2029"
SINGLE_LINE_PATTERN = f"^[^{_ALWAYS_REFUSED}{_LINE_BREAKS}]*$"
MULTI_LINE_PATTERN = f"^[^{_ALWAYS_REFUSED}]*$"


@dataclass(frozen=True, slots=True)
class _TextRule:
    """Refuses text `pattern` does not match (as `rule`), and publishes `pattern`.

    A type with a stricter pattern of its own (a phone number, a URL) keeps that one in
    the schema; it must exclude control characters as well, which a test checks.
    """

    pattern: str
    message: str
    rule: str = "control_character"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        allowed = re.compile(self.pattern)
        message, rule = self.message, self.rule

        def check(value: str) -> str:
            if allowed.match(value) is None:
                raise PydanticCustomError(rule, message)
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault("pattern", self.pattern)
        return json_schema


_SINGLE_LINE = _TextRule(
    SINGLE_LINE_PATTERN, "must be one line without tabs, line breaks or control characters"
)
_MULTI_LINE = _TextRule(
    MULTI_LINE_PATTERN, "must not contain control characters other than tab and line breaks"
)


def single_line(
    max_length: int, *, min_length: int = 1, strip: bool = True, pattern: str | None = None
) -> Any:
    """One line of text, at most `max_length` characters, surrounding spaces trimmed unless
    `strip` is False (passwords). `pattern`, when given, must exclude control characters."""
    return Annotated[
        str,
        StringConstraints(
            strip_whitespace=strip, min_length=min_length, max_length=max_length, pattern=pattern
        ),
        _SINGLE_LINE,
    ]


def multi_line(max_length: int, *, min_length: int = 0) -> Any:
    """Free text that may span lines: descriptions, notes, assessments."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        _MULTI_LINE,
    ]


Name = single_line(100)
LongName = single_line(200)
# Addresses are at most 254 characters (RFC 5321's path limit) and must be able to receive
# mail, which no special-use domain can.
Email = Annotated[
    single_line(254),
    AfterValidator(valid_email),
    Field(
        json_schema_extra={
            "format": "email",
            "description": "An address that can receive mail: special-use domains (.test, "
            ".local, .localhost, .invalid, .onion, .arpa) are refused.",
        }
    ),
]
# An http(s) URL: optional userinfo (refused later where credentials do not belong), a host
# name or IPv4 address (no bracketed IPv6 literal: what a schema can say of one is looser
# than what parses), an optional port 0-65535, then any path, query or fragment.
_URL_CHAR = r"[^\s\u0000-\u001f\u007f-\u009f"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
HttpUrl = single_line(
    500,
    min_length=8,
    pattern=(
        rf"^https?://(?:{_URL_CHAR}/?#@]*@)?{_URL_CHAR}/?#@:\[\]]+"
        rf"(?::{_PORT})?(?:[/?#]{_URL_CHAR}]*)?$"
    ),
)

_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H16 = "[0-9A-Fa-f]{1,4}"
_LS32 = f"(?:{_H16}:{_H16}|{_IPV4})"
# RFC 3986's IPv6address, one alternative per place of the "::".
_IPV6 = (
    "(?:"
    + "|".join(
        [
            f"(?:{_H16}:){{6}}{_LS32}",
            f"::(?:{_H16}:){{5}}{_LS32}",
            f"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
            f"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
            f"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
            f"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
            f"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
            f"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
            f"(?:(?:{_H16}:){{0,6}}{_H16})?::",
        ]
    )
    + ")"
)
IP_NETWORK_PATTERN = (
    f"^(?:{_IPV4}(?:/(?:3[0-2]|[12]?[0-9]))?|{_IPV6}(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$"
)
# An address (a network of one) or a network in CIDR notation, IPv4 or IPv6.
IpNetwork = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    _TextRule(
        IP_NETWORK_PATTERN,
        "must be an IPv4 or IPv6 address or network in CIDR notation",
        rule="ip_network",
    ),
]

# Flags in JSON are true or false; pydantic's lax mode would also take "yes", "on" and 1.
Flag = Annotated[bool, Strict()]


_INT32 = Field(json_schema_extra={"format": "int32"})


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def integer(*, ge: int, le: int) -> Any:
    """A JSON integer within [ge, le]: 5 or 5.0, not "5", 5.5 or true."""
    return Annotated[int, Strict(), Interval(ge=ge, le=le), _INT32, BeforeValidator(_integral)]


def _decimal_digits(value: Any) -> Any:
    if isinstance(value, str):
        if re.fullmatch(r"-?[0-9]{1,10}", value) is None:
            raise PydanticCustomError("int_parsing", "Input should be a whole number in digits")
        return int(value)
    return value


def query_integer(*, ge: int, le: int) -> Any:
    """An integer in a query string: decimal digits only (`5`, not `5.0` or `true`)."""
    # The bounds come before the parser so that they reach the schema as minimum/maximum.
    return Annotated[
        int, Strict(), Interval(ge=ge, le=le), _INT32, BeforeValidator(_decimal_digits)
    ]


def _date_text(value: Any) -> Any:
    # pydantic would read a number as seconds since 1970; JSON dates are strings.
    if not isinstance(value, str | date):
        raise PydanticCustomError("date_type", "Input should be a date written YYYY-MM-DD")
    return value


Date = Annotated[date, BeforeValidator(_date_text)]

_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _timestamp_text(value: Any) -> Any:
    # pydantic would read "1700000000" or "0.5" as seconds since 1970.
    if isinstance(value, str) and _RFC3339.match(value) is None:
        raise PydanticCustomError(
            "datetime_parsing", "Input should be an RFC 3339 date-time, e.g. 2026-11-23T10:00:00Z"
        )
    if not isinstance(value, str | datetime):
        raise PydanticCustomError("datetime_type", "Input should be an RFC 3339 date-time")
    return value


def _in_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise PydanticCustomError("timezone_aware", "needs a UTC offset, e.g. 2026-11-23T10:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range", "is outside the years 1 to 9999 in UTC"
        ) from None


Timestamp = Annotated[datetime, BeforeValidator(_timestamp_text), AfterValidator(_in_utc)]


def text(max_length: int) -> Any:
    """Text in a response, at most `max_length` characters."""
    return Annotated[str, StringConstraints(max_length=max_length)]


# The largest value of an `Integer` column (PostgreSQL's 32-bit integer).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def whole_number(*, ge: int = 0, le: int = INT32_MAX) -> Any:
    """A whole number in a response within [ge, le], published as int32 or int64 by its
    range; by default what an `Integer` column can hold, never negative."""
    width = "int32" if -(2**31) <= ge and le <= INT32_MAX else "int64"
    return Annotated[int, Field(ge=ge, le=le, json_schema_extra={"format": width})]


# Names of a record's fields (masked, changed, audited): a module has fewer than 100.
FieldNames = Annotated[
    list[Annotated[str, StringConstraints(max_length=64)]], Field(max_length=100)
]
