"""Erasure receipts and blocklist entries. Neither holds a value of personal data: a receipt
names what was erased by kind, count and id; a blocklist entry holds one blind-index HMAC."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped


class ErasureReceipt(IdMixin, OrganizationScoped, Base):
    """That a data subject was erased: when, by whom, what (counts and record ids)."""

    __tablename__ = "erasure_receipts"
    __table_args__ = (Index("ix_erasure_receipts_subject", "organization_id", "subject_id"),)

    subject_id: Mapped[uuid.UUID]
    erased_at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    # JSON: {"leads": [ids], "contacts": [ids], "counts": {"data_keys": n, ...}}
    erased: Mapped[str] = mapped_column(Text)
    # The privacy request it carried out, once requests exist.
    request_id: Mapped[uuid.UUID | None]
    # Set when a restore of an older backup applied this erasure again (the forget-log).
    reapplied_at: Mapped[datetime | None]


class BlocklistEntry(IdMixin, OrganizationScoped, Base):
    """An erased email or phone number, as the organization's blind index of it."""

    __tablename__ = "blocklist_entries"
    __table_args__ = (UniqueConstraint("organization_id", "kind", "hmac"),)

    kind: Mapped[str] = mapped_column(String(16))  # email | phone
    hmac: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    receipt_id: Mapped[uuid.UUID | None]
