"""Tables of the consent feature.

Nothing personal is stored in plain text here: evidence (IP address, user agent, form
version), a web-form submission's values and a consent link's recipient are sealed under the
data subject's key, so erasing the subject (destroying that key) destroys them too. Tokens are
stored as SHA-256 hashes only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"


class ConsentChannel(StrEnum):
    WEB = "web"
    EMAIL = "email"
    PORTAL = "portal"
    PHONE = "phone"
    STAFF = "staff"


class RequestChannel(StrEnum):
    EMAIL = "email"
    PORTAL = "portal"
    PHONE = "phone"


class RequestStatus(StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"
    NO_RESPONSE = "no_response"


class ConsentPurpose(IdMixin, OrganizationScoped, Base):
    """One version of a purpose. A new notice version is a new row (version + 1); events
    point at the row they were given under, so old consent keeps its notice."""

    __tablename__ = "consent_purposes"
    __table_args__ = (UniqueConstraint("organization_id", "key", "version"),)

    key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    notice_version: Mapped[str] = mapped_column(String(64))
    notice_url: Mapped[str] = mapped_column(String(500))
    # Direct marketing (GDPR Art. 21(2)): an objection withdraws consent to every such purpose.
    marketing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # Set on the older row when a newer version is made.
    superseded_at: Mapped[datetime | None]


class ConsentEvent(IdMixin, OrganizationScoped, Base):
    """One consent event of a data subject. Append-only: the application has no update or
    delete path, and database triggers refuse both (see the migration)."""

    __tablename__ = "consent_events"
    __table_args__ = (
        Index("ix_consent_events_subject", "organization_id", "subject_id", "recorded_at"),
    )

    subject_id: Mapped[uuid.UUID]
    # The record it was recorded on (a converted lead's events stay the contact's: same subject).
    module: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[uuid.UUID]
    purpose_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consent_purposes.id"))
    purpose_key: Mapped[str] = mapped_column(String(64))
    notice_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime]
    # Who recorded it: a user, a partner client, or nobody (the data subject themselves).
    recorded_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    recorded_by_client_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[uuid.UUID | None]
    form_id: Mapped[uuid.UUID | None]
    # JSON (ip, user agent, form version, times), sealed under the subject's key.
    evidence_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)


class ConsentSigningKey(Base):
    """An organization's Ed25519 key for consent receipts. The public half is published as
    a JWK; the private half is sealed under the organization's key."""

    __tablename__ = "consent_signing_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), unique=True
    )
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    private_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class ConsentRequest(IdMixin, OrganizationScoped, Base):
    """A request to a data subject to grant or refuse purposes, by a deadline."""

    __tablename__ = "consent_requests"
    __table_args__ = (
        Index("ix_consent_requests_due", "status", "deadline"),
        Index("ix_consent_requests_subject", "organization_id", "subject_id"),
    )

    module: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[uuid.UUID]
    subject_id: Mapped[uuid.UUID]
    # JSON list of purpose version ids asked for.
    purpose_ids: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    deadline: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_by_client_id: Mapped[str | None] = mapped_column(String(64))
    answered_at: Mapped[datetime | None]
    no_response_at: Mapped[datetime | None]
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    last_reminded_at: Mapped[datetime | None]


class ConsentLink(Base):
    """A link mailed for a consent request: only the token's hash is kept. Every link of a
    request dies when the request is answered (single use) or at the deadline."""

    __tablename__ = "consent_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    request_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("consent_requests.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]


class Webform(IdMixin, OrganizationScoped, Base):
    """A web form's current definition; each change makes a new version (kept in
    `webform_versions`, which submissions are bound to)."""

    __tablename__ = "webforms"

    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    module: Mapped[str] = mapped_column(String(16))
    # JSON: [{"name", "required"}], the fields of the module the form asks for.
    fields: Mapped[str] = mapped_column(Text)
    # JSON: purpose keys.
    purposes: Mapped[str] = mapped_column(Text)
    double_opt_in: Mapped[bool] = mapped_column(Boolean)
    redirect_url: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class WebformVersion(IdMixin, OrganizationScoped, Base):
    """One version of a web form as it was: what a submission was made against."""

    __tablename__ = "webform_versions"
    __table_args__ = (UniqueConstraint("form_id", "version"),)

    form_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webforms.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    # JSON of the definition (name, module, fields, purpose version ids, double_opt_in, ...).
    definition: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class SubmissionStatus(StrEnum):
    PENDING = "pending"  # waiting for the double opt-in
    CONFIRMED = "confirmed"


class WebformSubmission(IdMixin, OrganizationScoped, Base):
    """A submission waiting for its double opt-in (or its confirmed, emptied remains).

    `data_sealed` (the values and the submission's evidence) is sealed under the key of a new
    data subject (`subject_id`), which the lead or contact made on confirmation takes over;
    the worker purges an unconfirmed submission, key and all, when its token expires.
    """

    __tablename__ = "webform_submissions"
    __table_args__ = (
        Index("ix_webform_submissions_email", "organization_id", "form_id", "email_bidx"),
        Index("ix_webform_submissions_expires", "expires_at"),
    )

    form_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webforms.id", ondelete="CASCADE"))
    form_version: Mapped[int] = mapped_column(Integer)
    subject_id: Mapped[uuid.UUID]
    email_bidx: Mapped[str | None] = mapped_column(String(64))
    data_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    submitted_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    module: Mapped[str | None] = mapped_column(String(16))
    record_id: Mapped[uuid.UUID | None]


class PublicFormCounter(Base):
    """Fixed-window counters throttling the public form endpoint (per form, per source
    address, per email address). Keys are HMACs under the organization's index key: no
    address is stored."""

    __tablename__ = "public_form_counters"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    window_start: Mapped[datetime]
    hits: Mapped[int] = mapped_column(Integer)
