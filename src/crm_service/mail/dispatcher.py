"""The dispatcher: the worker's job that sends queued mail through CRM_SMTP_URL.

Rows are claimed in one short transaction (an UPDATE of due rows to `sending` with a lease,
picked with FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite serializes writers), so any number
of workers send each message once. The SMTP conversation happens outside any transaction,
and each outcome is written in its own: `sent`, another attempt after an exponential
backoff, or `failed` for good (a 5xx refusal, or out of attempts). A worker that dies
mid-send leaves its rows `sending` until the lease runs out; another worker then tries again
(the Message-ID stays the same, so a receiver can tell a repeat).

Nothing about a message's recipient or content is logged or kept in `last_error`: only the
error's class and SMTP reply code. A message sealed under a key of its own loses the key when
it settles; a batch that destroyed one ends with a WAL checkpoint, as an erasure does, so no
page image of the key's material stays in SQLite's files.
"""

from __future__ import annotations

import email.utils
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib
import structlog
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.config import Settings
from crm_service.crypto.service import keyring_for
from crm_service.db.engine import checkpoint_sqlite
from crm_service.db.session import commit
from crm_service.mail.models import MailStatus, OutboxMessage
from crm_service.mail.outbox import MailContent, open_content, owns_its_key
from crm_service.metrics import observe_mail

logger = structlog.get_logger("crm_service.mail")

BATCH_SIZE = 50
# Long enough for a batch to be sent at the SMTP timeout per message.
LEASE = timedelta(minutes=15)
MAX_BACKOFF = timedelta(hours=1)
DEFAULT_PORTS = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}


@dataclass(frozen=True)
class SmtpServer:
    hostname: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("CRM_SMTP_URL must be smtp://, smtps:// or smtp+starttls://HOST")
        return cls(
            hostname=parts.hostname,
            port=parts.port or DEFAULT_PORTS[scheme],
            use_tls=scheme == "smtps",
            start_tls=scheme == "smtp+starttls",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )


def backoff(attempts: int, base_seconds: float) -> timedelta:
    """The wait after the `attempts`-th failed attempt: base, 2×base, 4×base, … up to an hour."""
    return min(timedelta(seconds=base_seconds * 2 ** max(0, attempts - 1)), MAX_BACKOFF)


@dataclass
class Claimed:
    id: uuid.UUID
    attempts: int
    content: MailContent | None
    organization_id: uuid.UUID
    own_key: bool  # sealed under a key of its own, destroyed once it settles
    key_destroyed: bool = False  # its own key went with its outcome


_SETTLED = frozenset({MailStatus.SENT.value, MailStatus.FAILED.value, MailStatus.CANCELLED.value})


def _due(now: datetime):  # noqa: ANN202 - a SQL condition
    return or_(
        and_(
            OutboxMessage.status == MailStatus.QUEUED.value,
            OutboxMessage.next_attempt_at <= now,
        ),
        and_(
            OutboxMessage.status == MailStatus.SENDING.value,
            OutboxMessage.lease_until <= now,
        ),
    )


async def _claim(session: AsyncSession, now: datetime, limit: int) -> list[Claimed]:
    due = (
        select(OutboxMessage.id)
        .where(_due(now))
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()), _due(now))
        .values(
            status=MailStatus.SENDING.value,
            lease_until=now + LEASE,
            attempts=OutboxMessage.attempts + 1,
        )
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    ids = list(result.scalars())
    if not ids:
        return []
    rows = (
        await session.execute(
            select(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .execution_options(populate_existing=True)
        )
    ).scalars()
    claimed = [
        Claimed(
            id=row.id,
            attempts=row.attempts,
            content=await open_content(session, row),
            organization_id=row.organization_id,
            own_key=owns_its_key(row),
        )
        for row in rows
    ]
    return sorted(claimed, key=lambda item: ids.index(item.id))


async def _settle(
    sessionmaker: async_sessionmaker[AsyncSession], claimed: Claimed, **values: object
) -> None:
    """Write one message's outcome, unless another worker took it over meanwhile. A message
    sealed under a key of its own loses the key with the same commit once it is settled."""
    async with sessionmaker() as session:
        result = await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == claimed.id,
                OutboxMessage.status == MailStatus.SENDING.value,
                OutboxMessage.attempts == claimed.attempts,
            )
            .values(lease_until=None, **values)
            .returning(OutboxMessage.id)
            .execution_options(synchronize_session=False)
        )
        settled = result.scalar_one_or_none() is not None and values.get("status") in _SETTLED
        if settled and claimed.own_key:
            await keyring_for(session, claimed.organization_id).destroy_subject_keys(claimed.id)
            claimed.key_destroyed = True
        await commit(session)


def _domain(sender: str) -> str:
    address = email.utils.parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"


def build_message(
    message_id: uuid.UUID, content: MailContent, *, sender: str, now: datetime
) -> EmailMessage:
    """A multipart/alternative message: plain text first, then HTML."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = content.to
    mail["Subject"] = content.subject
    mail["Date"] = email.utils.format_datetime(now)
    # Stable across attempts, so a receiver recognizes a repeat after a lost reply.
    mail["Message-ID"] = f"<{message_id}@{_domain(sender)}>"
    mail["Auto-Submitted"] = "auto-generated"
    if content.list_unsubscribe is not None:
        mail["List-Unsubscribe"] = f"<{content.list_unsubscribe}>"
        # RFC 8058: the link unsubscribes with one POST, no page to click through.
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(content.text)
    mail.add_alternative(content.html, subtype="html")
    return mail


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        code = exc.recipients[0].code
    return f"{type(exc).__name__}" + (f" {code}" if code is not None else "")


def _permanent(exc: BaseException) -> bool:
    """A refusal that another attempt would only repeat: a 5xx reply about this message
    (not about our sender address or our credentials, which an operator can fix)."""
    if isinstance(exc, aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPAuthenticationError):
        return False
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
    code = getattr(exc, "code", None)
    return isinstance(exc, aiosmtplib.SMTPResponseException) and code is not None and code >= 500


def _smtp_client(settings: Settings) -> aiosmtplib.SMTP:
    assert settings.smtp_url is not None
    server = SmtpServer.from_url(settings.smtp_url)
    tls_context = None
    if server.use_tls or server.start_tls:
        tls_context = ssl.create_default_context(
            cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None
        )
    return aiosmtplib.SMTP(
        hostname=server.hostname,
        port=server.port,
        username=server.username,
        password=server.password,
        use_tls=server.use_tls,
        # smtp:// is plain SMTP: no opportunistic upgrade that could fail on a local relay.
        start_tls=server.start_tls,
        tls_context=tls_context,
        timeout=settings.smtp_timeout_seconds,
    )


async def _retry_or_fail(
    sessionmaker: async_sessionmaker[AsyncSession],
    claimed: Claimed,
    exc: BaseException,
    settings: Settings,
    now: datetime,
    *,
    connecting: bool = False,
) -> str:
    """Another attempt after the backoff, or `failed`: for a permanent refusal of this
    message, or when its attempts are used up. A failure to connect is never permanent."""
    error = ("connect: " if connecting else "") + _describe(exc)
    permanent = not connecting and _permanent(exc)
    if permanent or claimed.attempts >= settings.mail_max_attempts:
        await _settle(sessionmaker, claimed, status=MailStatus.FAILED.value, last_error=error)
        outcome = "failed"
    else:
        await _settle(
            sessionmaker,
            claimed,
            status=MailStatus.QUEUED.value,
            next_attempt_at=now + backoff(claimed.attempts, settings.mail_retry_base_seconds),
            last_error=error,
        )
        outcome = "retried"
    observe_mail(outcome)
    logger.warning(
        "mail_not_sent",
        message=str(claimed.id),
        attempt=claimed.attempts,
        error=error,
        outcome=outcome,
    )
    return outcome


_SMTP_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


async def send_due_mail(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> int:
    """Send one batch of due mail; returns how many messages the server accepted.
    Without CRM_SMTP_URL nothing is sent: mail waits in the outbox."""
    if settings.smtp_url is None:
        return 0
    async with sessionmaker() as session:
        claimed = await _claim(session, now, BATCH_SIZE)
        await commit(session)
    try:
        return await _send(sessionmaker, settings, now, claimed)
    finally:
        if any(item.key_destroyed for item in claimed):
            # As after an erasure: no page image of the destroyed key's material may stay in
            # the SQLite file or its -wal (a no-op on PostgreSQL).
            await checkpoint_sqlite(sessionmaker.kw["bind"])


async def _send(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime,
    claimed: list[Claimed],
) -> int:
    remaining = []
    for item in claimed:
        if item.content is None:
            # The key that sealed it is gone: the data subject was erased.
            await _settle(
                sessionmaker, item, status=MailStatus.CANCELLED.value, last_error="erased"
            )
            observe_mail("cancelled")
        else:
            remaining.append(item)
    if not remaining:
        return 0
    client = _smtp_client(settings)
    sent = 0
    try:
        while remaining:
            if not client.is_connected:
                try:
                    await client.connect()
                except _SMTP_ERRORS as exc:
                    for item in remaining:
                        await _retry_or_fail(
                            sessionmaker, item, exc, settings, now, connecting=True
                        )
                    return sent
            item = remaining.pop(0)
            assert item.content is not None
            mail = build_message(item.id, item.content, sender=settings.mail_from, now=now)
            try:
                await client.send_message(mail)
            except _SMTP_ERRORS as exc:
                await _retry_or_fail(sessionmaker, item, exc, settings, now)
                continue
            await _settle(
                sessionmaker, item, status=MailStatus.SENT.value, sent_at=now, last_error=None
            )
            observe_mail("sent")
            sent += 1
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except _SMTP_ERRORS:
                client.close()
    return sent


async def purge_settled_mail(session: AsyncSession, now: datetime, keep_days: int) -> int:
    """Delete sent, failed and cancelled mail older than `keep_days` (its sealed content
    need not be kept once delivery is settled)."""
    result = await session.execute(
        delete(OutboxMessage)
        .where(
            OutboxMessage.status.in_(
                [MailStatus.SENT.value, MailStatus.FAILED.value, MailStatus.CANCELLED.value]
            ),
            OutboxMessage.created_at < now - timedelta(days=keep_days),
        )
        .returning(OutboxMessage.id)
    )
    return len(result.scalars().all())
