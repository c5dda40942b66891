"""Audit log bodies."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm_service.audit.actions import AuditAction, Outcome
from crm_service.kit.schemas import (
    FieldNames,
    InputModel,
    Timestamp,
    query_integer,
    single_line,
    text,
)
from crm_service.records.paging import DEFAULT_LIMIT, MAX_LIMIT


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    occurred_at: datetime
    actor_type: text(16) = Field(
        description="user, client (a partner), system (CLI, worker), subject (a data subject "
        "in the privacy portal)."
    )
    actor_id: uuid.UUID | None
    action: AuditAction
    target_type: text(32) | None = Field(description="lead, contact, account, user, ... ")
    target_id: text(64) | None = Field(
        description="The one record (or user, ...) the event is about; null when it is about "
        "several, listed in `target_ids`."
    )
    target_ids: Annotated[list[text(64)], Field(max_length=1000)] = Field(
        description="Every record an event about records shown together names (the sensitive "
        "values one response revealed), even when it is one; empty for other events. "
        "Filtering on `target_id` finds the events that list it here too."
    )
    fields: FieldNames = Field(description="Names of the fields involved; never values.")
    outcome: Outcome
    reason: text(64) | None = Field(description="A fixed code for a failure or refusal.")
    client_ip: text(45) | None
    request_id: text(64) | None

    @field_validator("fields", "target_ids", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        if value is None:
            return []
        return json.loads(value) if isinstance(value, str) else value


class AuditEventList(BaseModel):
    data: Annotated[list[AuditEventRead], Field(max_length=MAX_LIMIT)]
    next_cursor: text(200) | None


class AuditEventQuery(InputModel):
    actor_id: uuid.UUID | None = None
    action: AuditAction | None = None
    target_type: single_line(32) | None = None
    target_id: single_line(64) | None = None
    since: Timestamp | None = Field(default=None, description="Inclusive, RFC 3339 with offset.")
    until: Timestamp | None = Field(default=None, description="Exclusive, RFC 3339 with offset.")
    limit: query_integer(ge=1, le=MAX_LIMIT) = DEFAULT_LIMIT
    cursor: single_line(200, min_length=0) | None = None
