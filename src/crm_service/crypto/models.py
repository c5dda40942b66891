"""Wrapped data keys. A key's material exists only wrapped by a master key; destroying a
subject's keys (erasure) deletes that material, and with it every value sealed under it."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped


class DataKeyPurpose(StrEnum):
    SUBJECT = "subject"  # one data subject's values (a lead, the contact it became, ...)
    ORGANIZATION = "organization"  # values that belong to no one subject (accounts)
    BLIND_INDEX = "blind_index"  # HMAC key for exact-match search; never encrypts
    AUDIT = "audit"  # HMAC key that chains the audit log; never encrypts


class DataKeyStatus(StrEnum):
    ACTIVE = "active"  # seals new values
    RETIRED = "retired"  # superseded by a newer generation; still opens old values
    DESTROYED = "destroyed"  # material deleted: what it sealed is gone for good


class DataKeyRecord(IdMixin, OrganizationScoped, Base):
    __tablename__ = "data_keys"
    __table_args__ = (
        UniqueConstraint("organization_id", "purpose", "subject_id", "generation"),
        Index("ix_data_keys_owner", "organization_id", "purpose", "subject_id", "status"),
    )

    purpose: Mapped[str] = mapped_column(String(16))
    # The data subject for subject keys; a fixed nil UUID for organization-wide keys, so the
    # uniqueness constraint also holds for them (NULLs never collide in SQL).
    subject_id: Mapped[uuid.UUID]
    generation: Mapped[int] = mapped_column(Integer)
    master_key_id: Mapped[str | None] = mapped_column(String(64))
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    destroyed_at: Mapped[datetime | None]
