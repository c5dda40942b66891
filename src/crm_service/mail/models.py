"""The mail outbox (one row per message, its content sealed, its delivery state in the open)
and organizations' own mail templates.

What an operator may see without opening anything: the template, language, status,
attempts and times. Who the message is for and what it says are sealed together in
`content_sealed`, under the data subject's key when the mail concerns one (erasure makes it
unreadable) and under the organization's key otherwise.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
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


class MailStatus(StrEnum):
    QUEUED = "queued"  # waiting for its (next) attempt
    SENDING = "sending"  # claimed by a worker until `lease_until`
    SENT = "sent"  # accepted by the SMTP server
    FAILED = "failed"  # refused for good, or out of attempts
    CANCELLED = "cancelled"  # its content can no longer be opened (the subject was erased)


class OutboxMessage(IdMixin, OrganizationScoped, Base):
    __tablename__ = "mail_outbox"
    __table_args__ = (
        Index("ix_mail_outbox_due", "status", "next_attempt_at"),
        Index("ix_mail_outbox_subject", "organization_id", "subject_id"),
        CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'cancelled')",
            name="status",
        ),
    )

    # The data subject whose key seals the content; None for mail under the organization's key.
    subject_id: Mapped[uuid.UUID | None]
    template: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    # JSON of recipient, subject line, text and HTML bodies and List-Unsubscribe, sealed.
    content_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    # What went wrong last: an error class or an SMTP reply code, never an address.
    last_error: Mapped[str | None] = mapped_column(String(200))


class MailTemplate(IdMixin, OrganizationScoped, Base):
    """An organization's own version of one kind of mail in one language (mail/kinds.py);
    without a row the bundled files are used. The parts are jinja2 source an administrator
    wrote, checked when stored and rendered in the sandbox (mail/sandbox.py)."""

    __tablename__ = "mail_templates"
    __table_args__ = (UniqueConstraint("organization_id", "kind", "language"),)

    kind: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]
    updated_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
