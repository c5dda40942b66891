"""Webhook endpoints, the event outbox, deliveries and their attempts.

The outbox (`webhook_events`) holds ids and versions only, never a record's values: a payload
is built when it is delivered, through the disclosure policy, so compliance settings and an
erasure made meanwhile apply. An endpoint's secret is sealed under the organization's key.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped, TimestampMixin


class WebhookEndpoint(IdMixin, TimestampMixin, OrganizationScoped, Base):
    __tablename__ = "webhook_endpoints"

    url: Mapped[str] = mapped_column(String(500))
    events: Mapped[str] = mapped_column(Text)  # JSON list of event types
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why the worker switched it off (`gone`: answered 410; `failing`: failed for days).
    disabled_reason: Mapped[str | None] = mapped_column(String(64))
    disabled_at: Mapped[datetime | None]
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # After a rotation the old secret still signs (a second signature) until this time.
    previous_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_until: Mapped[datetime | None]
    created_by_id: Mapped[uuid.UUID | None]


class WebhookEvent(IdMixin, OrganizationScoped, Base):
    """A change of a record, written in the change's transaction."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_subject", "organization_id", "subject_id"),)

    type: Mapped[str] = mapped_column(String(32))
    module: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[uuid.UUID]
    subject_id: Mapped[uuid.UUID | None]
    record_version: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime]
    # JSON of ids only, for events about something other than one record's change (a privacy
    # request carried out: `privacy.erased` ...), delivered as the body's `data` as it is.
    data: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(IdMixin, OrganizationScoped, Base):
    """One event to one endpoint: pending until delivered, or failed for good."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_attempt_at: Mapped[datetime | None]
    last_response_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(64))
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class WebhookAttempt(IdMixin, OrganizationScoped, Base):
    """One try at a delivery: when, what came back. Never the payload."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint", "endpoint_id", "attempted_at"),)

    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(32))
    attempted_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    response_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(64))
    duration_ms: Mapped[int] = mapped_column(Integer)
