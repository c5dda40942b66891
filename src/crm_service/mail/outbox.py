"""The outbox: mail is written in the caller's transaction, so it is sent exactly when the
change that asked for it commits (a rolled-back request sends nothing), and the worker's
dispatcher (dispatcher.py) delivers it.

The recipient, subject line, bodies and List-Unsubscribe URL are rendered now and sealed as
one value: under the data subject's key when `subject_id` is given (erasing the subject
makes their queued mail unreadable; `purge_subject_mail` deletes it), otherwise under the
organization's key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.crypto.codec import FieldContext, open_value, seal, sealed_key_id
from crm_service.crypto.service import key_generation, keyring_for
from crm_service.db.base import utcnow
from crm_service.mail.models import MailStatus, OutboxMessage
from crm_service.mail.repository import MailTemplateRepository
from crm_service.mail.sandbox import TemplateSource
from crm_service.mail.templates import candidate_languages, render

TABLE = OutboxMessage.__tablename__


@dataclass(frozen=True)
class MailContent:
    """What a queued message says once opened."""

    to: str
    subject: str
    text: str
    html: str
    list_unsubscribe: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "to": self.to,
                "subject": self.subject,
                "text": self.text,
                "html": self.html,
                "list_unsubscribe": self.list_unsubscribe,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> MailContent:
        data = json.loads(text)
        return cls(
            to=data["to"],
            subject=data["subject"],
            text=data["text"],
            html=data["html"],
            list_unsubscribe=data.get("list_unsubscribe"),
        )


def _context(message: OutboxMessage) -> FieldContext:
    return FieldContext(message.organization_id, TABLE, "content", message.id)


async def enqueue(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    to: str,
    template: str,
    context: Mapping[str, object],
    language: str = "en",
    subject_id: uuid.UUID | None = None,
    list_unsubscribe: str | None = None,
    own_key: bool = False,
) -> uuid.UUID:
    """Queue one message in the session's transaction; returns its outbox id.

    `template` names a kind of mail (kinds.py), rendered now with `context` from the
    organization's own template or the bundled files (templates.py says which first);
    `language` is "en" or "ja" (English when missing), and the row records the language
    used. The recipient and List-Unsubscribe are the caller's, whatever a template says.
    `subject_id` is
    the data subject whose key seals the message; `list_unsubscribe` a URL for the
    List-Unsubscribe (and one-click List-Unsubscribe-Post) headers. `own_key` (instead of a
    `subject_id`) seals it under a key of its own, destroyed as soon as the message is
    settled (sent, failed or cancelled): for mail that must outlive its data subject's
    erasure, such as the confirmation of that erasure.
    """
    if own_key and subject_id is not None:
        raise ValueError("a message is sealed under its subject's key or its own, not both")
    overrides = {
        row.language: TemplateSource(subject=row.subject, text=row.text_body, html=row.html_body)
        for row in await MailTemplateRepository(session, organization_id).of_kind(
            template, candidate_languages(language)
        )
    }
    rendered = render(template, context, language, overrides)
    try:
        recipient = validate_email(to.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        # Never the address itself: it is personal data.
        raise ValueError("a mail recipient must be one valid address") from None
    if list_unsubscribe is not None and ("\r" in list_unsubscribe or "\n" in list_unsubscribe):
        raise ValueError("a List-Unsubscribe URL is one line")
    content = MailContent(
        to=recipient,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        list_unsubscribe=list_unsubscribe,
    )
    message_id = uuid.uuid4()
    if own_key:
        subject_id = message_id  # a key no one else has: see owns_its_key()
    keyring = keyring_for(session, organization_id)
    generation = await key_generation(session, organization_id, for_write=True)
    if subject_id is not None:
        key = await keyring.subject_key(subject_id, generation)
    else:
        key = await keyring.organization_key(generation)
    now = utcnow()
    message = OutboxMessage(
        id=message_id,
        organization_id=organization_id,
        subject_id=subject_id,
        template=template,
        language=rendered.language,
        status=MailStatus.QUEUED.value,
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )
    message.content_sealed = seal(key, content.to_json(), _context(message))
    session.add(message)
    return message.id


def owns_its_key(message: OutboxMessage) -> bool:
    """Sealed under a key of its own (`enqueue(own_key=True)`), destroyed once it settles."""
    return message.subject_id == message.id


async def open_content(session: AsyncSession, message: OutboxMessage) -> MailContent | None:
    """The message's content, or None when its key is gone (the subject was erased)."""
    key_id = sealed_key_id(message.content_sealed)
    if key_id is None:
        return None
    keys = await keyring_for(session, message.organization_id).keys_by_id([key_id])
    key = keys.get(key_id)
    if key is None:
        return None
    return MailContent.from_json(open_value(message.content_sealed, key, _context(message)))


async def purge_subject_mail(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> int:
    """Delete every outbox message of a data subject (the erasure stream calls this with
    the key destruction); returns how many."""
    result = await session.execute(
        delete(OutboxMessage)
        .where(
            OutboxMessage.organization_id == organization_id,
            OutboxMessage.subject_id == subject_id,
        )
        .returning(OutboxMessage.id)
    )
    return len(result.scalars().all())


@dataclass(frozen=True)
class OutboxEntry:
    """What an operator sees of a message without opening it: no recipient, no content."""

    id: uuid.UUID
    organization_id: uuid.UUID
    template: str
    language: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None
    sealed_under: str  # "subject", "organization" or "own" (its own key, gone once settled)


async def list_outbox(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[OutboxEntry]:
    statement = select(OutboxMessage).order_by(OutboxMessage.created_at.desc(), OutboxMessage.id)
    if organization_id is not None:
        statement = statement.where(OutboxMessage.organization_id == organization_id)
    if status is not None:
        statement = statement.where(OutboxMessage.status == status)
    rows = (await session.execute(statement.limit(limit))).scalars().all()
    return [
        OutboxEntry(
            id=row.id,
            organization_id=row.organization_id,
            template=row.template,
            language=row.language,
            status=row.status,
            attempts=row.attempts,
            created_at=row.created_at,
            next_attempt_at=row.next_attempt_at
            if row.status in (MailStatus.QUEUED, MailStatus.SENDING)
            else None,
            sent_at=row.sent_at,
            last_error=row.last_error,
            sealed_under="own"
            if owns_its_key(row)
            else "subject"
            if row.subject_id is not None
            else "organization",
        )
        for row in rows
    ]


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    result = await session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    )
    return {status: count for status, count in result.all()}
