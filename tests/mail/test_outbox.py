"""The outbox: mail is queued in the caller's transaction, rendered from the bundled
templates, and sealed (under the data subject's key when it concerns one)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from crm_service.crypto.service import keyring_for
from crm_service.db.session import commit, rollback
from crm_service.mail.models import MailStatus, OutboxMessage
from crm_service.mail.outbox import enqueue, open_content, purge_subject_mail
from crm_service.mail.templates import UnknownTemplate
from tests.conftest import Org, database_bytes
from tests.crypto.test_at_rest import _encodings


def _invitation(tag: str) -> dict[str, object]:
    return {
        "organization_name": f"Org <b>{tag}</b>",
        "accept_url": f"https://crm.example.com/invitations/{tag}",
        "valid_hours": 72,
    }


async def _message(app: Any, message_id: uuid.UUID) -> OutboxMessage | None:
    async with app.state.sessionmaker() as session:
        return await session.get(OutboxMessage, message_id)


async def test_queued_mail_is_rendered_now_and_opens_to_what_was_rendered(
    org: Org, app: Any
) -> None:
    tag = secrets.token_hex(4)
    async with app.state.sessionmaker() as session:
        message_id = await enqueue(
            session,
            organization_id=org.id,
            to=f"Invitee.{tag}@Example.COM",
            template="user_invitation",
            context=_invitation(tag),
        )
        await commit(session)
    async with app.state.sessionmaker() as session:
        message = await session.get(OutboxMessage, message_id)
        assert message is not None
        assert (message.status, message.attempts, message.template, message.language) == (
            MailStatus.QUEUED,
            0,
            "user_invitation",
            "en",
        )
        content = await open_content(session, message)
    assert content is not None
    # The domain is normalized, the local part kept as given.
    assert content.to == f"Invitee.{tag}@example.com"
    assert content.subject == f"You are invited to Org <b>{tag}</b> on crm-service"
    assert f"Org <b>{tag}</b>" in content.text
    assert f"https://crm.example.com/invitations/{tag}" in content.text
    # HTML is escaped, text is not.
    assert f"Org &lt;b&gt;{tag}&lt;/b&gt;" in content.html
    assert f"<b>{tag}</b>" not in content.html
    assert content.list_unsubscribe is None


async def test_japanese_is_bundled_and_an_unknown_language_falls_back_to_english(
    org: Org, app: Any
) -> None:
    async with app.state.sessionmaker() as session:
        japanese = await enqueue(
            session,
            organization_id=org.id,
            to="ja@example.com",
            template="user_invitation",
            context=_invitation("x"),
            language="ja",
        )
        other = await enqueue(
            session,
            organization_id=org.id,
            to="fr@example.com",
            template="user_invitation",
            context=_invitation("x"),
            language="fr",
        )
        await commit(session)
        first = await session.get(OutboxMessage, japanese)
        second = await session.get(OutboxMessage, other)
        assert first is not None and second is not None
        assert (first.language, second.language) == ("ja", "en")
        opened = await open_content(session, first)
        assert opened is not None and "招待" in opened.subject


async def test_a_rolled_back_transaction_queues_nothing(org: Org, app: Any) -> None:
    async with app.state.sessionmaker() as session:
        message_id = await enqueue(
            session,
            organization_id=org.id,
            to="nobody@example.com",
            template="user_invitation",
            context=_invitation("x"),
        )
        await rollback(session)
    assert await _message(app, message_id) is None


async def test_bad_input_to_enqueue_is_refused_without_quoting_the_address(
    org: Org, app: Any
) -> None:
    async with app.state.sessionmaker() as session:
        with pytest.raises(ValueError) as refused:
            await enqueue(
                session,
                organization_id=org.id,
                to="secret-person@example.com\r\nBcc: victim@example.com",
                template="user_invitation",
                context=_invitation("x"),
            )
        assert "secret-person" not in str(refused.value)
        with pytest.raises(UnknownTemplate):
            await enqueue(
                session,
                organization_id=org.id,
                to="a@example.com",
                template="../../etc/passwd",
                context={},
            )
        with pytest.raises(UnknownTemplate):
            await enqueue(
                session, organization_id=org.id, to="a@example.com", template="nope", context={}
            )
        await rollback(session)


async def test_a_subjects_mail_is_not_in_the_database_and_dies_with_their_keys(
    org: Org, app: Any, database_url: str
) -> None:
    tag = secrets.token_hex(6)
    subject_id = uuid.uuid4()
    address = f"subject.{tag}@example.com"
    unsubscribe = f"https://crm.example.com/unsubscribe/{tag}"
    async with app.state.sessionmaker() as session:
        message_id = await enqueue(
            session,
            organization_id=org.id,
            to=address,
            template="user_invitation",
            context=_invitation(tag),
            subject_id=subject_id,
            list_unsubscribe=unsubscribe,
        )
        await commit(session)

    dump = await database_bytes(database_url)
    for value in (address, tag, unsubscribe):
        for needle in _encodings(value):
            assert needle not in dump

    async with app.state.sessionmaker() as session:
        await keyring_for(session, org.id).destroy_subject_keys(subject_id)
        await commit(session)
    async with app.state.sessionmaker() as session:
        message = await session.get(OutboxMessage, message_id)
        assert message is not None
        assert await open_content(session, message) is None
        assert await purge_subject_mail(session, org.id, subject_id) == 1
        await commit(session)
    async with app.state.sessionmaker() as session:
        left = await session.execute(
            select(OutboxMessage).where(OutboxMessage.subject_id == subject_id)
        )
        assert left.scalars().all() == []


async def test_a_subject_line_never_carries_a_line_break(org: Org, app: Any) -> None:
    context = {**_invitation("x"), "organization_name": "Acme\r\nBcc: victim@example.com"}
    async with app.state.sessionmaker() as session:
        message_id = await enqueue(
            session,
            organization_id=org.id,
            to="a@example.com",
            template="user_invitation",
            context=context,
        )
        await commit(session)
        message = await session.get(OutboxMessage, message_id)
        assert message is not None
        content = await open_content(session, message)
    assert content is not None
    assert "\r" not in content.subject and "\n" not in content.subject
    assert content.subject == "You are invited to Acme Bcc: victim@example.com on crm-service"
