"""Audit events and the heads of their hash chains.

An organization's events form several independent chains ("shards"). An event joins one
chain under a short lock on that chain's head row, taken just before the request commits, so
concurrent writers of one organization spread over the chains instead of queueing on one lock.
Each event carries an HMAC over its content and the MAC of the event before it in its chain,
under a key only the service can unwrap, so an edited, removed, inserted or reordered event
breaks the chain where it happened.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped


class AuditEvent(IdMixin, OrganizationScoped, Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("organization_id", "shard", "seq"),
        Index("ix_audit_events_listing", "organization_id", "occurred_at", "id"),
        Index("ix_audit_events_target", "organization_id", "target_id"),
        Index("ix_audit_events_actor", "organization_id", "actor_id"),
    )

    shard: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    # JSON array of the ids of the records an event is about when it is about several (the
    # reveals of one list response); target_id is then set only when there is exactly one.
    target_ids: Mapped[str | None] = mapped_column(Text)
    # JSON array of field names, never values.
    fields: Mapped[str] = mapped_column(Text, default="[]")
    outcome: Mapped[str] = mapped_column(String(16))
    # A value-free reason code for a failure or refusal ("wrong_password", "locked").
    reason: Mapped[str | None] = mapped_column(String(64))
    client_ip: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditChain(Base):
    """The head of one chain: its newest event, and where retention cut its beginning."""

    __tablename__ = "audit_chains"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_mac: Mapped[str] = mapped_column(String(64))
    # Events up to anchor_seq were purged by retention; the first kept event follows anchor_mac.
    anchor_seq: Mapped[int] = mapped_column(Integer, default=0)
    anchor_mac: Mapped[str] = mapped_column(String(64))
    # MAC over the head itself, so a truncated tail cannot be hidden by editing the head.
    head_mac: Mapped[str] = mapped_column(String(64))


class RecordHistoryEntry(IdMixin, OrganizationScoped, Base):
    """One change of a record: who, when, which fields, and the old and new values sealed
    under the record's key (the data subject's for leads and contacts), so erasing the
    subject makes its history unreadable too."""

    __tablename__ = "record_history"
    __table_args__ = (
        Index("ix_record_history_record", "organization_id", "module", "record_id", "occurred_at"),
    )

    module: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[uuid.UUID]
    occurred_at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    # created, updated, deleted, restored, converted
    action: Mapped[str] = mapped_column(String(16))
    # JSON array of the field names changed.
    fields: Mapped[str] = mapped_column(Text, default="[]")
    # Sealed JSON {field: [old, new]}; null when the change carries no values.
    changes_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
