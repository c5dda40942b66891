"""Webhook bodies: endpoints, their secret (shown once), deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from crm_service.kit.modules import Module
from crm_service.kit.schemas import (
    Flag,
    HttpUrl,
    InputModel,
    multi_line,
    query_integer,
    single_line,
    text,
    whole_number,
)
from crm_service.records.events import RecordEventKind
from crm_service.records.paging import DEFAULT_LIMIT, MAX_LIMIT

# Told to recipients of a data subject's data when a privacy request rectified, erased or
# restricted it (GDPR Art. 19); their body carries ids only.
PRIVACY_EVENTS = ("privacy.rectified", "privacy.erased", "privacy.restricted")

# lead.created, lead.updated, ..., account.deleted; conversion is a lead's; privacy.*.
EventType = StrEnum(  # type: ignore[misc]
    "EventType",
    {
        **{
            f"{module.noun}_{kind.value}".upper(): f"{module.noun}.{kind.value}"
            for module in Module
            for kind in RecordEventKind
            if kind is not RecordEventKind.CONVERTED or module is Module.LEADS
        },
        **{event.replace(".", "_").upper(): event for event in PRIVACY_EVENTS},
    },
)

EventList = Annotated[list[EventType], Field(min_length=1, max_length=len(EventType))]


class WebhookCreate(InputModel):
    url: HttpUrl = Field(description="Where events are POSTed; https in production.")
    events: EventList
    description: multi_line(500) | None = None


class WebhookUpdate(InputModel):
    url: HttpUrl = None  # type: ignore[assignment]  # omit to keep
    events: EventList = None  # type: ignore[assignment]
    description: multi_line(500) | None = None
    enabled: Flag = Field(
        default=None,  # type: ignore[arg-type,assignment]
        description="Switch the endpoint on or off; switching on clears `disabled_reason` and "
        "resumes its pending deliveries.",
    )


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: text(500)
    events: Annotated[list[EventType], Field(max_length=len(EventType))]
    description: text(500) | None
    enabled: bool
    disabled_reason: text(64) | None = Field(
        description="Why the service switched it off: `gone` (the receiver answered 410) or "
        "`failing` (every attempt failed for about three days); null when on or switched off "
        "by an administrator."
    )
    disabled_at: datetime | None
    previous_secret_until: datetime | None = Field(
        description="Until then the rotated-out secret still signs beside the new one."
    )
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookRead):
    secret: text(100) = Field(
        description="`whsec_` and the base64 signing key. Shown only now: store it."
    )


class WebhookSecret(BaseModel):
    secret: text(100) = Field(description="The new secret, shown only now.")
    previous_secret_until: datetime | None = Field(
        description="Until then deliveries carry a second signature with the old secret."
    )


class WebhookList(BaseModel):
    data: Annotated[list[WebhookRead], Field(max_length=MAX_LIMIT)]


class DeliveryAttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    delivery_id: uuid.UUID = Field(description="`crm-service webhooks redeliver` takes it.")
    event_type: text(32)
    attempted_at: datetime
    outcome: text(16) = Field(
        description="`delivered` (2xx), `failed` (another status, a redirect, a timeout, no "
        "connection) or `refused` (the target resolved to a refused address)."
    )
    # What the target answered: HTTP/1.1 status lines carry three digits.
    response_code: whole_number(le=999) | None
    error: text(64) | None = Field(description="A value-free code, e.g. `timeout`.")
    duration_ms: whole_number()


class DeliveryAttemptPage(BaseModel):
    data: Annotated[list[DeliveryAttemptRead], Field(max_length=MAX_LIMIT)]
    next_cursor: text(512) | None


class DeliveryQuery(InputModel):
    limit: query_integer(ge=1, le=MAX_LIMIT) = DEFAULT_LIMIT
    cursor: single_line(512, min_length=0) | None = Field(
        default=None, description="`next_cursor` of the previous page."
    )
