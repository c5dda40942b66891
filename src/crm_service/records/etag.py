"""Entity tags for optimistic concurrency: `ETag` on reads, `If-Match` on writes."""

from __future__ import annotations

from crm_service.errors import PreconditionFailed


def etag_for(version: int) -> str:
    return f'"{version}"'


def check_if_match(if_match: str | None, version: int) -> None:
    """Raise 412 when the client's If-Match names none of the current representation."""
    if if_match is None:
        return
    current = etag_for(version)
    for candidate in (part.strip() for part in if_match.split(",")):
        # Weak tags never match under If-Match (RFC 9110, 13.1.1: strong comparison).
        if candidate == "*" or candidate == current:
            return
    raise PreconditionFailed("The record was changed since you read it; fetch it and retry.")
