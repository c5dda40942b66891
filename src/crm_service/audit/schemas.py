"""Audit log bodies."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm_service.audit.actions import AuditAction, Outcome
from crm_service.kit.schemas import InputModel, Timestamp, query_integer, single_line
from crm_service.records.paging import DEFAULT_LIMIT, MAX_LIMIT


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    occurred_at: datetime
    actor_type: str = Field(description="user, client (a partner), system (CLI, worker).")
    actor_id: uuid.UUID | None
    action: AuditAction
    target_type: str | None = Field(description="lead, contact, account, user, ... ")
    target_id: str | None
    fields: list[str] = Field(description="Names of the fields involved; never values.")
    outcome: Outcome
    reason: str | None = Field(description="A fixed code for a failure or refusal.")
    client_ip: str | None
    request_id: str | None

    @field_validator("fields", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class AuditEventList(BaseModel):
    data: list[AuditEventRead]
    next_cursor: str | None


class AuditEventQuery(InputModel):
    actor_id: uuid.UUID | None = None
    action: AuditAction | None = None
    target_type: single_line(32) | None = None
    target_id: single_line(64) | None = None
    since: Timestamp | None = Field(default=None, description="Inclusive, RFC 3339 with offset.")
    until: Timestamp | None = Field(default=None, description="Exclusive, RFC 3339 with offset.")
    limit: query_integer(ge=1, le=MAX_LIMIT) = DEFAULT_LIMIT
    cursor: single_line(200, min_length=0) | None = None
