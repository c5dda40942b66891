"""Privacy requests, erasure receipts and blocklist entries.

None holds a value of personal data in plain text: a receipt names what was erased by kind,
count and id; a blocklist entry holds one blind-index HMAC; a privacy request keeps the
requester's email as a blind-index HMAC and seals the email, the details, the corrections
asked for and the reasons given under each of its data subjects' keys, so erasing the subject
makes them unreadable.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
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


class PrivacyRequestType(StrEnum):
    """The data subject's rights a request exercises (GDPR Art. 15-18, 20, 21)."""

    ACCESS = "access"
    PORTABILITY = "portability"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"
    ERASURE = "erasure"
    OBJECTION = "objection"


class PrivacyRequestStatus(StrEnum):
    """Filed by staff: awaiting verification until staff confirm who asks; filed through the
    portal (the subject proved control of the email): in progress at once."""

    AWAITING_VERIFICATION = "awaiting_verification"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REJECTED = "rejected"

    @property
    def closed(self) -> bool:
        return self in (PrivacyRequestStatus.COMPLETED, PrivacyRequestStatus.REJECTED)


class PrivacyRequest(IdMixin, OrganizationScoped, Base):
    """A data-subject request and its legal clock: due one calendar month after receipt,
    extendable by one or two months within that first month."""

    __tablename__ = "privacy_requests"
    __table_args__ = (
        Index("ix_privacy_requests_due", "organization_id", "status", "due_at"),
        Index("ix_privacy_requests_email", "organization_id", "email_bidx"),
    )

    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    # The blind index of the requester's email (filed by email); the email is sealed.
    email_bidx: Mapped[str | None] = mapped_column(String(64))
    # The lead or contact it was filed for (filed by record).
    module: Mapped[str | None] = mapped_column(String(16))
    record_id: Mapped[uuid.UUID | None]
    language: Mapped[str] = mapped_column(String(8))
    # Who filed it: staff (a user), partner (a client) or portal (the subject).
    channel: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime]
    original_due_at: Mapped[datetime]
    due_at: Mapped[datetime]
    extended_months: Mapped[int] = mapped_column(Integer, default=0)
    extended_at: Mapped[datetime | None]
    filed_at: Mapped[datetime]
    filed_by_type: Mapped[str] = mapped_column(String(16))
    filed_by_id: Mapped[uuid.UUID | None]
    verified_at: Mapped[datetime | None]
    # `portal` (the subject proved control of the email) or `staff`.
    verified_by: Mapped[str | None] = mapped_column(String(16))
    verified_by_id: Mapped[uuid.UUID | None]
    completed_at: Mapped[datetime | None]
    rejected_at: Mapped[datetime | None]
    closed_by_type: Mapped[str | None] = mapped_column(String(16))
    closed_by_id: Mapped[uuid.UUID | None]
    # JSON, ids and counts only: what completing did (receipt ids, corrections applied,
    # consents withdrawn, subjects restricted), who was told (Art. 19) and the mails sent to
    # the subject (kind, time, outbox id).
    outcome: Mapped[str | None] = mapped_column(Text)
    recipients: Mapped[str | None] = mapped_column(Text)
    notices: Mapped[str | None] = mapped_column(Text)


class PrivacyRequestSubject(Base):
    """A data subject of a request, and what the request says in their words (email,
    details, corrections, reasons), sealed under that subject's key: one copy per subject, so
    erasing any of them makes their copy unreadable."""

    __tablename__ = "privacy_request_subjects"
    __table_args__ = (
        Index("ix_privacy_request_subjects_subject", "organization_id", "subject_id"),
    )

    request_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("privacy_requests.id", ondelete="CASCADE"), primary_key=True
    )
    subject_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
