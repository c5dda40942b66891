"""Audit log bodies."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm_service.audit.actions import AuditAction, Outcome
from crm_service.records.paging import DEFAULT_LIMIT, MAX_LIMIT


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    occurred_at: datetime
    actor_type: str = Field(description="user, client (a partner), system (CLI, worker).")
    actor_id: uuid.UUID | None
    action: AuditAction
    target_type: str | None = Field(description="lead, contact, account, user, ... ")
    target_id: str | None = Field(
        description="The one record (or user, ...) the event is about; null when it is about "
        "several, listed in `target_ids`."
    )
    target_ids: list[str] = Field(
        description="Every record an event about records shown together names (the sensitive "
        "values one response revealed), even when it is one; empty for other events. "
        "Filtering on `target_id` finds the events that list it here too."
    )
    fields: list[str] = Field(description="Names of the fields involved; never values.")
    outcome: Outcome
    reason: str | None = Field(description="A fixed code for a failure or refusal.")
    client_ip: str | None
    request_id: str | None

    @field_validator("fields", "target_ids", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        if value is None:
            return []
        return json.loads(value) if isinstance(value, str) else value


class AuditEventList(BaseModel):
    data: list[AuditEventRead]
    next_cursor: str | None


class AuditEventQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor_id: uuid.UUID | None = None
    action: AuditAction | None = None
    target_type: str | None = Field(default=None, max_length=32)
    target_id: str | None = Field(default=None, max_length=64)
    since: datetime | None = Field(default=None, description="Inclusive, ISO 8601 with offset.")
    until: datetime | None = Field(default=None, description="Exclusive, ISO 8601 with offset.")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=200)

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-11-23T10:00:00Z")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is outside the years 1 to 9999 in UTC") from None
