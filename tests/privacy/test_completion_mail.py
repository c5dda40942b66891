"""GDPR Art. 12(3): the requester is told what was done. Completing a privacy request mails
them (in the request's language) the outcome and a link to the portal; the mail of an
erasure, or of a request on which nothing is held, is sealed under a key of its own, so it
outlives the subject's keys until it is sent, and is unreadable once it is."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from crm_service.mail.models import OutboxMessage
from crm_service.mail.outbox import list_outbox
from tests.conftest import Org, database_bytes, unique_email
from tests.mail.conftest import send_through_a_server
from tests.privacy.conftest import completed, completion_mail, file, make_contact, verified
from tests.privacy.probe import hits


async def sealed_under(org: Org, message_id: uuid.UUID) -> str:
    async with org.app.state.sessionmaker() as session:
        entries = await list_outbox(session, organization_id=org.id, limit=500)
    return next(entry.sealed_under for entry in entries if entry.id == message_id)


async def test_an_access_request_tells_the_requester_their_package_is_ready(org: Org) -> None:
    email = unique_email("told")
    await make_contact(org, email)
    request = await verified(org, {"type": "access", "email": email})
    done = await completed(org, request["id"])
    message, content = await completion_mail(org)
    assert content is not None and content.to == email
    assert "ready to download in our privacy portal until" in content.text
    assert f"/portal/{org.id}" in content.text and f"/portal/{org.id}" in content.html
    assert content.list_unsubscribe is None
    # Sealed under the subject's key: erasing them later makes it unreadable.
    assert await sealed_under(org, message.id) == "subject"
    assert [notice["kind"] for notice in done["notices"]] == ["completed"]
    assert done["notices"][0]["outbox_id"] == str(message.id)


async def test_the_mail_is_in_the_requests_language(org: Org) -> None:
    email = unique_email("kanji")
    await make_contact(org, email)
    request = await verified(org, {"type": "restriction", "email": email, "language": "ja"})
    await completed(org, request["id"])
    message, content = await completion_mail(org)
    assert message.language == "ja"
    assert content is not None and "対応が完了しました" in content.subject
    assert "お客様のデータの利用を制限しました" in content.text


async def test_a_request_filed_for_a_record_without_an_email_mails_no_one(org: Org) -> None:
    contact = await org.client.post(
        "/v1/contacts", json={"last_name": "Unmailed"}, headers=org.headers
    )
    assert contact.status_code == 201, contact.text
    request = await verified(
        org, {"type": "access", "module": "contacts", "record_id": contact.json()["id"]}
    )
    done = await completed(org, request["id"])
    assert done["notices"] == []
    async with org.app.state.sessionmaker() as session:
        assert not (
            await session.execute(
                select(OutboxMessage.id).where(OutboxMessage.organization_id == org.id)
            )
        ).all()


async def test_the_erasure_confirmation_outlives_the_erasure_until_it_is_sent(
    org: Org, app: Any, database_url: str
) -> None:
    email = unique_email("erasedtold")
    await make_contact(org, email, first_name="Persephone")
    request = await verified(org, {"type": "erasure", "email": email})
    await completed(org, request["id"])
    message, content = await completion_mail(org)
    # The subject's keys are gone, the confirmation's own key is not.
    assert content is not None and content.to == email
    assert "We have erased the data we held about you" in content.text
    assert await sealed_under(org, message.id) == "own"
    assert hits(await database_bytes(database_url), [email, "Persephone"]) == []

    (received,) = (await send_through_a_server(app)).to(email)
    assert (
        "We have erased the data we held about you" in received.get_body(("plain",)).get_content()
    )
    # Sent: its key went with it, so nothing in the database can say whom it was to.
    _, after = await completion_mail(org)
    assert after is None


async def test_a_request_on_which_nothing_is_held_is_answered_by_mail(org: Org) -> None:
    email = unique_email("nothingtold")
    filed = await file(org, {"type": "erasure", "email": email})
    assert filed.status_code == 201, filed.text
    verify = await org.client.post(
        f"/v1/privacy/requests/{filed.json()['id']}/verify", json={}, headers=org.headers
    )
    assert verify.status_code == 200, verify.text
    await completed(org, filed.json()["id"])
    message, content = await completion_mail(org)
    assert content is not None and content.to == email
    assert "We hold no data about you" in content.text
    assert await sealed_under(org, message.id) == "own"
