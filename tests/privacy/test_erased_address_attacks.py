"""Attacks on "once an erasure is carried out and its confirmation sent, nothing in the
database opens to the requester's address": whatever the service still holds sealed under a
key it keeps (the organization's) must not be the address, and the confirmation's own key
lives exactly until the message settles: kept while it is retried, gone once sent, failed
for good (a permanent refusal, or attempts used up) or taken over by a second worker."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm_service.crypto.codec import FieldContext
from crm_service.crypto.models import DataKeyRecord
from crm_service.crypto.service import open_organization_secret
from crm_service.db.session import commit
from crm_service.mail.dispatcher import LEASE, _claim, send_due_mail
from crm_service.mail.models import MailStatus, OutboxMessage
from crm_service.mail.outbox import open_content
from crm_service.portal.models import PortalSession
from tests.conftest import Org, database_bytes, unique_email
from tests.mail.conftest import SmtpServer, free_port, send_all_due_mail, send_through_a_server
from tests.portal.conftest import hidden, sign_in, visitor_client
from tests.privacy.conftest import completed, completion_mail, make_contact, verified


async def addresses_the_database_opens_to(org: Org) -> set[str]:
    """Every address the organization's outbox and portal sessions still open to."""
    found: set[str] = set()
    async with org.app.state.sessionmaker() as session:
        for message in (
            await session.execute(
                select(OutboxMessage).where(OutboxMessage.organization_id == org.id)
            )
        ).scalars():
            content = await open_content(session, message)
            if content is not None:
                found.add(content.to.casefold())
        for visit in (
            await session.execute(
                select(PortalSession).where(PortalSession.organization_id == org.id)
            )
        ).scalars():
            context = FieldContext(org.id, "portal_sessions", "email_sealed", visit.id)
            email = await open_organization_secret(session, org.id, visit.email_sealed, context)
            if email is not None:
                found.add(email.casefold())
    return found


async def confirmation(org: Org) -> tuple[OutboxMessage, bool]:
    """The erasure confirmation, and whether its content still opens."""
    message, content = await completion_mail(org)
    return message, content is not None


async def erased_by_request(org: Org, email: str) -> None:
    await make_contact(org, email, first_name="Euphrosyne")
    request = await verified(org, {"type": "erasure", "email": email})
    await completed(org, request["id"])


async def test_an_erasure_filed_from_the_portal_leaves_no_session_that_opens_to_the_address(
    org: Org, app: Any
) -> None:
    email = unique_email("portalerased")
    await make_contact(org, email, first_name="Euphrosyne")
    async with visitor_client(app) as browser:
        await sign_in(browser, org, email)
        page = await browser.get(f"/portal/{org.id}/requests")
        filed = await browser.post(
            f"/portal/{org.id}/requests",
            data={"csrf": hidden(page.text, "csrf"), "type": "erasure", "details": ""},
        )
        assert filed.status_code == 303, filed.text
        staff = await org.client.get("/v1/privacy/requests", headers=org.headers)
        [request] = staff.json()["data"]
        await completed(org, request["id"])

        server = SmtpServer().start()
        try:
            settings = app.state.settings.model_copy(update={"smtp_url": server.url})
            await send_all_due_mail(app.state.sessionmaker, settings, app.state.clock.now())
            assert len(server.inbox.to(email)) == 1
        finally:
            server.stop()
        assert email.casefold() not in await addresses_the_database_opens_to(org)
        # The erased person's visit is over too.
        assert (await browser.get(f"/portal/{org.id}/data")).status_code == 303


def holds(dump: bytes, value: bytes) -> bool:
    """The database's bytes hold `value` (raw in SQLite's files, hex in a pg_dump)."""
    return value in dump or value.hex().encode() in dump


async def test_once_sent_the_confirmations_key_material_is_nowhere_in_the_database(
    org: Org, app: Any, database_url: str
) -> None:
    """Destroying the key in a row is not enough if the page it was in stays in SQLite's
    file or -wal: with the master key, the old material would open the message again."""
    await erased_by_request(org, unique_email("keymaterial"))
    message, _ = await confirmation(org)
    async with app.state.sessionmaker() as session:
        wrapped = (
            await session.execute(
                select(DataKeyRecord.wrapped).where(DataKeyRecord.subject_id == message.id)
            )
        ).scalar_one()
    assert wrapped is not None and holds(await database_bytes(database_url), wrapped)
    await send_through_a_server(app)
    _, opens = await confirmation(org)
    assert not opens
    assert not holds(await database_bytes(database_url), wrapped)


async def test_the_confirmations_key_stays_while_it_is_retried_and_goes_when_it_fails(
    org: Org, app: Any
) -> None:
    email = unique_email("retriedthenfailed")
    await erased_by_request(org, email)
    down = app.state.settings.model_copy(
        update={"smtp_url": f"smtp://127.0.0.1:{free_port()}", "mail_max_attempts": 2}
    )
    now = app.state.clock.now()
    await send_due_mail(app.state.sessionmaker, down, now)
    message, opens = await confirmation(org)
    assert (message.status, message.attempts, opens) == (MailStatus.QUEUED.value, 1, True)
    await send_due_mail(app.state.sessionmaker, down, message.next_attempt_at)
    message, opens = await confirmation(org)
    assert (message.status, opens) == (MailStatus.FAILED.value, False)
    assert email.casefold() not in await addresses_the_database_opens_to(org)


async def test_a_permanent_refusal_takes_the_confirmations_key(org: Org, app: Any) -> None:
    email = unique_email("refused")  # the test server refuses every refused* mailbox
    await erased_by_request(org, email)
    await send_through_a_server(app)
    message, opens = await confirmation(org)
    assert (message.status, opens) == (MailStatus.FAILED.value, False)


async def test_a_second_worker_that_takes_over_after_the_lease_settles_it_and_its_key(
    org: Org, app: Any
) -> None:
    email = unique_email("takenover")
    await erased_by_request(org, email)
    now = app.state.clock.now()
    # The first worker claims it and dies before sending.
    async with app.state.sessionmaker() as session:
        claimed = await _claim(session, now, 500)
        await commit(session)
    message, _ = await confirmation(org)
    assert message.id in {item.id for item in claimed}
    server = SmtpServer().start()
    try:
        settings = app.state.settings.model_copy(update={"smtp_url": server.url})
        # Within the lease, no one sends it; after it, another worker does, once.
        await send_all_due_mail(app.state.sessionmaker, settings, now)
        assert server.inbox.to(email) == []
        await send_all_due_mail(app.state.sessionmaker, settings, now + LEASE)
        assert len(server.inbox.to(email)) == 1
    finally:
        server.stop()
    message, opens = await confirmation(org)
    assert (message.status, opens) == (MailStatus.SENT.value, False)
