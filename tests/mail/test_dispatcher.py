"""The dispatcher against a real SMTP server: mail queued by a request arrives (both parts,
its headers), a rolled-back request sends nothing, retries back off under the worker's
clock, permanent refusals and used-up attempts end as `failed`, TLS is verified, and two
workers send each message once."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import BaseModel
from sqlalchemy import select

from crm_service.config import Settings
from crm_service.crypto.master import key_provider_from_settings
from crm_service.crypto.service import keyring_for, session_info
from crm_service.db.engine import make_engine, make_sessionmaker
from crm_service.db.session import CRMRouter, DbSession, commit
from crm_service.errors import CRMError
from crm_service.jobs.worker import run_due_jobs
from crm_service.mail.dispatcher import backoff, send_due_mail
from crm_service.mail.models import MailStatus, OutboxMessage
from crm_service.mail.outbox import enqueue
from crm_service.main import create_app
from crm_service.security.principal import CurrentPrincipal
from tests.conftest import CLIENT_IP, Org, assert_problem, count_rows, make_settings
from tests.mail.conftest import SMTP_PASSWORD, SMTP_USER, SmtpServer, free_port, send_all_due_mail


class _Refused(CRMError):
    status, slug, title = 409, "test-refused", "Refused after queueing mail"


class _MailRequest(BaseModel):
    to: str
    tag: str
    unsubscribe: str | None = None
    fail: bool = False


# A route of this test's own app: it queues mail in the request's transaction, and fails
# afterwards when asked (so the transaction rolls back).
router = CRMRouter()


@router.post("/v1/test-mail", status_code=201)
async def _queue_mail(body: _MailRequest, principal: CurrentPrincipal, session: DbSession) -> dict:
    message_id = await enqueue(
        session,
        organization_id=principal.organization_id,
        to=body.to,
        template="user_invitation",
        context={
            "organization_name": f"Org {body.tag}",
            "accept_url": f"https://crm.example.com/accept/{body.tag}",
            "valid_hours": 72,
        },
        list_unsubscribe=body.unsubscribe,
    )
    if body.fail:
        raise _Refused("The change after the mail failed.")
    return {"id": str(message_id)}


@pytest.fixture(scope="module")
async def mail_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(make_settings(database_url))
    application.include_router(router)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=(CLIENT_IP, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def _with(app: Any, **settings: Any) -> Settings:
    return app.state.settings.model_copy(update=settings)


def _address(prefix: str = "person") -> str:
    return f"{prefix}.{secrets.token_hex(5)}@example.com"


async def _queue(app: Any, org: Org, to: str, **options: Any) -> uuid.UUID:
    async with app.state.sessionmaker() as session:
        message_id = await enqueue(
            session,
            organization_id=org.id,
            to=to,
            template="user_invitation",
            context={
                "organization_name": "Org",
                "accept_url": "https://x.example",
                "valid_hours": 1,
            },
            **options,
        )
        await commit(session)
    return message_id


async def _row(app: Any, message_id: uuid.UUID) -> OutboxMessage:
    async with app.state.sessionmaker() as session:
        row = await session.get(OutboxMessage, message_id)
    assert row is not None
    return row


async def _send(app: Any, settings: Settings, now: datetime) -> dict[str, int | str]:
    done = await run_due_jobs(app.state.sessionmaker, settings, now, only={"send_mail"})
    if done.get("send_mail"):
        # Mail of other tests' organizations may have filled the first batch.
        await send_all_due_mail(app.state.sessionmaker, settings, now)
    return done


def _now() -> datetime:
    return datetime.now(UTC)


async def test_mail_queued_by_a_request_arrives_with_both_parts_and_its_headers(
    org: Org, app: Any, mail_client: httpx.AsyncClient, smtp_server: SmtpServer
) -> None:
    tag, to = secrets.token_hex(4), _address()
    unsubscribe = f"https://crm.example.com/unsubscribe/{tag}"
    queued = await mail_client.post(
        "/v1/test-mail",
        json={"to": to, "tag": tag, "unsubscribe": unsubscribe},
        headers=org.headers,
    )
    assert queued.status_code == 201, queued.text
    message_id = uuid.UUID(queued.json()["id"])
    assert smtp_server.inbox.to(to) == []  # nothing is sent by the request itself

    settings = _with(app, smtp_url=smtp_server.url, mail_from="Acme CRM <crm@acme.example>")
    await _send(app, settings, _now())

    [received] = smtp_server.inbox.to(to)
    assert received["From"] == "Acme CRM <crm@acme.example>"
    assert received["Subject"] == f"You are invited to Org {tag} on crm-service"
    assert received["Message-ID"] == f"<{message_id}@acme.example>"
    assert received["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["Date"]
    assert received.get_content_type() == "multipart/alternative"
    text = received.get_body(("plain",))
    html = received.get_body(("html",))
    assert text is not None and html is not None
    assert f"https://crm.example.com/accept/{tag}" in text.get_content()
    assert f'href="https://crm.example.com/accept/{tag}"' in html.get_content()

    row = await _row(app, message_id)
    assert (row.status, row.attempts, row.last_error) == (MailStatus.SENT, 1, None)
    assert row.sent_at is not None
    # Sent once: later runs do not send it again.
    await _send(app, settings, _now() + timedelta(hours=2))
    assert len(smtp_server.inbox.to(to)) == 1


async def test_a_rolled_back_request_sends_nothing(
    org: Org, app: Any, mail_client: httpx.AsyncClient, smtp_server: SmtpServer
) -> None:
    to = _address()
    before = await count_rows(app, "mail_outbox", org.id)
    refused = await mail_client.post(
        "/v1/test-mail", json={"to": to, "tag": "x", "fail": True}, headers=org.headers
    )
    assert_problem(refused, 409)
    assert await count_rows(app, "mail_outbox", org.id) == before
    await _send(app, _with(app, smtp_url=smtp_server.url), _now() + timedelta(hours=2))
    assert smtp_server.inbox.to(to) == []


async def test_without_an_smtp_url_mail_stays_queued(org: Org, app: Any) -> None:
    message_id = await _queue(app, org, _address())
    assert await _send(app, _with(app, smtp_url=None), _now()) == {"send_mail": 0}
    row = await _row(app, message_id)
    assert (row.status, row.attempts) == (MailStatus.QUEUED, 0)


async def test_smtp_down_is_retried_with_backoff_then_delivered(
    org: Org, app: Any, client: httpx.AsyncClient
) -> None:
    port = free_port()  # nothing listens there yet
    settings = _with(app, smtp_url=f"smtp://127.0.0.1:{port}", mail_retry_base_seconds=60)
    to = _address()
    message_id = await _queue(app, org, to)
    start = _now()

    await _send(app, settings, start)
    row = await _row(app, message_id)
    assert (row.status, row.attempts) == (MailStatus.QUEUED, 1)
    assert row.next_attempt_at == start + timedelta(seconds=60)
    assert row.last_error is not None and row.last_error.startswith("connect: ")

    # Not due before its backoff has passed.
    await _send(app, settings, start + timedelta(seconds=59))
    assert (await _row(app, message_id)).attempts == 1

    second = start + timedelta(seconds=60)
    await _send(app, settings, second)
    row = await _row(app, message_id)
    assert (row.status, row.attempts) == (MailStatus.QUEUED, 2)
    assert row.next_attempt_at == second + timedelta(seconds=120)  # the wait doubles

    server = SmtpServer(port=port).start()
    try:
        await _send(app, settings, second + timedelta(seconds=119))
        assert server.inbox.to(to) == []
        await _send(app, settings, second + timedelta(seconds=120))
        assert len(server.inbox.to(to)) == 1
    finally:
        server.stop()
    row = await _row(app, message_id)
    assert (row.status, row.attempts, row.last_error) == (MailStatus.SENT, 3, None)

    metrics = (await client.get("/metrics")).text
    assert 'crm_mail_messages_total{outcome="retried"}' in metrics
    assert 'crm_mail_messages_total{outcome="sent"}' in metrics


def test_the_backoff_doubles_up_to_an_hour() -> None:
    waits = [backoff(attempt, 60).total_seconds() for attempt in range(1, 10)]
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]


async def test_used_up_attempts_and_a_permanent_refusal_end_as_failed(
    org: Org, app: Any, smtp_server: SmtpServer
) -> None:
    down = _with(app, smtp_url=f"smtp://127.0.0.1:{free_port()}", mail_max_attempts=2)
    tired = await _queue(app, org, _address())
    start = _now()
    await _send(app, down, start)
    await _send(app, down, start + timedelta(hours=1))
    row = await _row(app, tired)
    assert (row.status, row.attempts) == (MailStatus.FAILED, 2)
    # Failed is final: it is not tried again.
    await _send(app, _with(app, smtp_url=smtp_server.url), start + timedelta(hours=3))
    assert (await _row(app, tired)).status == MailStatus.FAILED

    refused = await _queue(app, org, _address("refused"))
    await _send(app, _with(app, smtp_url=smtp_server.url), _now())
    row = await _row(app, refused)
    assert (row.status, row.attempts) == (MailStatus.FAILED, 1)
    assert row.last_error == "SMTPRecipientsRefused 550"


async def test_starttls_with_auth_delivers_and_an_unverified_certificate_does_not(
    org: Org, app: Any, starttls_server: SmtpServer, certificate: Any
) -> None:
    url = (
        f"smtp+starttls://{quote(SMTP_USER, safe='')}:{quote(SMTP_PASSWORD, safe='')}"
        f"@127.0.0.1:{starttls_server.port}"
    )
    to = _address()
    message_id = await _queue(app, org, to)
    # The relay's certificate is not one the system trusts: refused, and retried later.
    await _send(app, _with(app, smtp_url=url), _now())
    row = await _row(app, message_id)
    assert (row.status, row.attempts) == (MailStatus.QUEUED, 1)
    assert starttls_server.inbox.to(to) == []

    trusted = _with(app, smtp_url=url, smtp_ca_file=certificate[0])
    await _send(app, trusted, _now() + timedelta(hours=1))
    assert len(starttls_server.inbox.to(to)) == 1
    assert SMTP_USER in starttls_server.inbox.authenticated
    assert (await _row(app, message_id)).status == MailStatus.SENT

    # Plain SMTP to a relay that requires STARTTLS and AUTH is refused, never sent.
    other = await _queue(app, org, _address())
    await _send(app, _with(app, smtp_url=f"smtp://127.0.0.1:{starttls_server.port}"), _now())
    assert (await _row(app, other)).status == MailStatus.QUEUED


async def test_an_erased_subjects_queued_mail_is_never_sent(
    org: Org, app: Any, smtp_server: SmtpServer
) -> None:
    subject_id, to = uuid.uuid4(), _address()
    message_id = await _queue(app, org, to, subject_id=subject_id)
    async with app.state.sessionmaker() as session:
        await keyring_for(session, org.id).destroy_subject_keys(subject_id)
        await commit(session)
    await _send(app, _with(app, smtp_url=smtp_server.url), _now())
    assert smtp_server.inbox.to(to) == []
    row = await _row(app, message_id)
    assert (row.status, row.last_error) == (MailStatus.CANCELLED, "erased")


async def test_two_workers_send_each_message_once(
    org: Org, app: Any, database_url: str, smtp_server: SmtpServer
) -> None:
    addresses = [_address("many") for _ in range(40)]
    ids = [await _queue(app, org, to) for to in addresses]
    settings = _with(app, smtp_url=smtp_server.url)
    # Two workers: each its own engine and connections, as two processes would have.
    workers = []
    for _ in range(2):
        engine = make_engine(database_url)
        info = session_info(key_provider_from_settings(settings), phone_region=None)
        workers.append((engine, make_sessionmaker(engine, info=info)))
    try:
        now = _now()
        for _ in range(3):  # a batch is 50, and other tests' mail may be due too
            await asyncio.gather(
                *(send_due_mail(sessionmaker, settings, now) for _, sessionmaker in workers)
            )
    finally:
        for engine, _ in workers:
            await engine.dispose()
    for to in addresses:
        assert len(smtp_server.inbox.to(to)) == 1, to
    async with app.state.sessionmaker() as session:
        rows = (
            await session.execute(select(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        ).scalars()
        assert {(row.status, row.attempts) for row in rows} == {(MailStatus.SENT, 1)}


async def test_a_message_claimed_by_a_worker_that_died_is_sent_after_its_lease(
    org: Org, app: Any, smtp_server: SmtpServer
) -> None:
    from crm_service.mail.dispatcher import LEASE, _claim

    to = _address()
    message_id = await _queue(app, org, to)
    start = _now()
    # A worker claims the due mail and dies before sending anything.
    async with app.state.sessionmaker() as session:
        claimed = await _claim(session, start, 10_000)
        await commit(session)
    assert message_id in {item.id for item in claimed}
    settings = _with(app, smtp_url=smtp_server.url)
    await _send(app, settings, start + LEASE - timedelta(seconds=1))
    assert smtp_server.inbox.to(to) == []
    assert (await _row(app, message_id)).status == MailStatus.SENDING
    await _send(app, settings, start + LEASE)
    assert len(smtp_server.inbox.to(to)) == 1
    row = await _row(app, message_id)
    assert (row.status, row.attempts) == (MailStatus.SENT, 2)


async def test_settled_mail_is_purged_after_its_keep_days(
    org: Org, app: Any, smtp_server: SmtpServer
) -> None:
    sent = await _queue(app, org, _address())
    waiting = await _queue(app, org, _address())
    async with app.state.sessionmaker() as session:
        await session.execute(
            OutboxMessage.__table__.update()
            .where(OutboxMessage.id == waiting)
            .values(next_attempt_at=_now() + timedelta(days=400))
        )
        await commit(session)
    await _send(app, _with(app, smtp_url=smtp_server.url), _now())
    assert (await _row(app, sent)).status == MailStatus.SENT
    later = _now() + timedelta(days=31)
    done = await run_due_jobs(
        app.state.sessionmaker, app.state.settings, later, only={"purge_settled_mail"}
    )
    assert done["purge_settled_mail"] >= 1
    async with app.state.sessionmaker() as session:
        assert await session.get(OutboxMessage, sent) is None
        # Mail still waiting to go out is never purged.
        assert await session.get(OutboxMessage, waiting) is not None
