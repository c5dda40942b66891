"""Consent requests: by phone, portal and email, with a deadline the worker enforces.

Unanswered at the deadline, a request becomes `no_response` and its data subject is locked
through the one processing lock: update, delete, convert, legal basis (by anyone but an
administrator recording another basis) and shares answer 423 `processing-locked`, until
consent is recorded in the ledger or an administrator records another legal basis. The
worker's clock is the test's: no waiting. The email channel mails a single-use link to the
public consent page; reminders go out before the deadline.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_service.clock import FixedClock
from tests.access.conftest import (
    PERSON_MODULES,
    audit_events,
    create_group,
    create_profile,
    create_record,
)
from tests.conftest import PASSWORD, Org, assert_problem, create_user, unique_email
from tests.consent.conftest import create_purpose, link_in, mails, run_job
from tests.mail.conftest import SmtpServer, send_all_due_mail

LOCKED = "tag:crm-service,2026:problems/processing-locked"


async def ask(
    org: Org, module: str, record_id: str, deadline: datetime, channel: str = "phone", **extra: Any
) -> dict[str, Any]:
    response = await org.client.post(
        "/v1/consent/requests",
        json={
            "module": module,
            "record_id": record_id,
            "purposes": ["newsletter"],
            "channel": channel,
            "deadline": deadline.isoformat(),
            **extra,
        },
        headers=org.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert response.headers["Location"] == f"/v1/consent/requests/{body['id']}"
    return body


async def request_status(org: Org, request_id: str) -> str:
    response = await org.client.get(f"/v1/consent/requests/{request_id}", headers=org.headers)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def standard_user(org: Org) -> tuple[str, dict[str, str]]:
    """A user who may change leads and contacts but holds no administration right."""
    profile = await create_profile(
        org,
        {
            "leads": ["create", "read", "update", "delete"],
            "contacts": ["create", "read", "update", "delete"],
            "accounts": ["create", "read"],
        },
    )
    email = unique_email("staff")
    created = await create_user(org, {"email": email, "password": PASSWORD, "profile_id": profile})
    assert created.status_code == 201, created.text
    return created.json()["id"], await org.login(email)


async def attempts(
    org: Org, module: str, record: dict[str, Any], headers: dict[str, str]
) -> dict[str, httpx.Response]:
    path = f"/v1/{module}/{record['id']}"
    group = await create_group(org, [])
    tried = {
        "update": await org.client.patch(path, json={"title": "CTO"}, headers=headers),
        "share": await org.client.put(
            f"{path}/shares/{group}", json={"access": "read_only"}, headers=headers
        ),
    }
    if module == "leads":
        tried["convert"] = await org.client.post(f"{path}/convert", json={}, headers=headers)
    tried["delete"] = await org.client.delete(path, headers=headers)
    # Last: an administrator's other basis ends the lock.
    tried["legal basis"] = await org.client.put(
        f"{path}/legal-basis", json={"basis": "contract"}, headers=headers
    )
    return tried


async def lock_by_deadline(
    org: Org, clock: FixedClock, module: str, owner_id: str | None = None
) -> tuple[dict, dict]:
    await create_purpose(org, "newsletter")
    extra = {"company": "Looms Ltd"} if module == "leads" else {}
    record = await create_record(org, module, owner_id=owner_id, **extra)
    deadline = clock.now() + timedelta(days=7)
    request = await ask(org, module, record["id"], deadline)

    # Before the deadline nothing happens.
    await run_job(org.app, "consent_deadlines", deadline - timedelta(minutes=1))
    assert await request_status(org, request["id"]) == "pending"
    assert (
        await org.client.patch(
            f"/v1/{module}/{record['id']}", json={"title": "Engineer"}, headers=org.headers
        )
    ).status_code == 200

    assert await run_job(org.app, "consent_deadlines", deadline + timedelta(minutes=1)) >= 1
    assert await request_status(org, request["id"]) == "no_response"
    return record, request


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_at_the_deadline_the_record_locks_until_another_legal_basis_is_recorded(
    org: Org, clock: FixedClock, module: str
) -> None:
    staff_id, staff = await standard_user(org)
    record, request = await lock_by_deadline(org, clock, module, owner_id=staff_id)

    for name, response in (await attempts(org, module, record, staff)).items():
        problem = assert_problem(response, 423)
        assert problem["type"] == LOCKED, name
        assert "consent_unanswered" in problem["detail"] and "ends when" in problem["detail"]
    # Consent as the basis is no way out, not even for an administrator.
    same = await org.client.put(
        f"/v1/{module}/{record['id']}/legal-basis", json={"basis": "consent"}, headers=org.headers
    )
    assert assert_problem(same, 423)["type"] == LOCKED
    # The administrator's other changes stay refused.
    admin_tries = await attempts(org, module, record, org.headers)
    for name in ("update", "share", "delete", *(["convert"] if module == "leads" else [])):
        assert assert_problem(admin_tries[name], 423)["type"] == LOCKED, name
    # The administrator's contract basis went through (it was among the attempts) and ended it.
    assert admin_tries["legal basis"].status_code == 200, admin_tries["legal basis"].text
    assert (
        await org.client.patch(f"/v1/{module}/{record['id']}", json={"title": "CTO"}, headers=staff)
    ).status_code == 200
    history = await org.client.get(f"/v1/{module}/{record['id']}/legal-basis", headers=org.headers)
    assert history.json()["history"][0]["basis"] == "contract"
    actions = [(e["action"], e.get("reason")) for e in await audit_events(org)]
    assert ("consent.request_no_response", None) in actions
    assert ("consent.processing_locked", "consent_unanswered") in actions
    assert ("consent.processing_unlocked", "legal_basis_recorded") in actions
    # The request itself stays as it was: nobody answered it.
    assert await request_status(org, request["id"]) == "no_response"


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_recording_consent_ends_the_lock_and_makes_consent_the_legal_basis(
    org: Org, clock: FixedClock, module: str
) -> None:
    record, request = await lock_by_deadline(org, clock, module)
    path = f"/v1/{module}/{record['id']}"
    assert assert_problem(await org.client.delete(path, headers=org.headers), 423)

    # Staff call the person and record the answer: recording consent is never locked.
    answered = await org.client.post(
        f"{path}/consents",
        json={"purpose": "newsletter", "status": "granted", "channel": "phone"},
        headers=org.headers,
    )
    assert answered.status_code == 201, answered.text
    assert await request_status(org, request["id"]) == "answered"
    assert (
        await org.client.patch(path, json={"title": "CTO"}, headers=org.headers)
    ).status_code == 200
    history = await org.client.get(f"{path}/legal-basis", headers=org.headers)
    assert history.json()["history"][0]["basis"] == "consent"
    assert ("consent.processing_unlocked", "consent_recorded") in [
        (e["action"], e.get("reason")) for e in await audit_events(org)
    ]
    assert (await org.client.delete(path, headers=org.headers)).status_code == 204


async def test_an_answer_before_the_deadline_answers_the_request_and_nothing_locks(
    org: Org, clock: FixedClock
) -> None:
    await create_purpose(org, "newsletter")
    contact = await create_record(org, "contacts")
    deadline = clock.now() + timedelta(days=3)
    request = await ask(org, "contacts", contact["id"], deadline, channel="portal")
    listed = await org.client.get(
        "/v1/consent/requests", params={"status": "pending"}, headers=org.headers
    )
    assert request["id"] in [r["id"] for r in listed.json()["data"]]
    await org.client.post(
        f"/v1/contacts/{contact['id']}/consents",
        json={"purpose": "newsletter", "status": "refused", "channel": "portal"},
        headers=org.headers,
    )
    assert await request_status(org, request["id"]) == "answered"
    await run_job(org.app, "consent_deadlines", deadline + timedelta(hours=1))
    assert await request_status(org, request["id"]) == "answered"
    assert (
        await org.client.patch(
            f"/v1/contacts/{contact['id']}", json={"title": "CTO"}, headers=org.headers
        )
    ).status_code == 200


async def test_bad_requests_change_nothing(org: Org, other_org: Org, clock: FixedClock) -> None:
    await create_purpose(org, "newsletter")
    contact = await create_record(org, "contacts")
    no_email = await create_record(org, "contacts", email=None)
    future = (clock.now() + timedelta(days=1)).isoformat()
    body = {
        "module": "contacts",
        "record_id": contact["id"],
        "purposes": ["newsletter"],
        "channel": "phone",
        "deadline": future,
    }
    cases = [
        ({"deadline": (clock.now() - timedelta(minutes=1)).isoformat()}, 422),
        ({"purposes": ["nothing-such"]}, 422),
        ({"channel": "email", "record_id": no_email["id"]}, 422),
        ({"record_id": str(uuid.uuid4())}, 404),
    ]
    for change, status in cases:
        assert_problem(
            await org.client.post(
                "/v1/consent/requests", json={**body, **change}, headers=org.headers
            ),
            status,
        )
    foreign = await other_org.client.post(
        "/v1/consent/requests", json=body, headers=other_org.headers
    )
    assert_problem(foreign, 404)
    listed = await org.client.get("/v1/consent/requests", headers=org.headers)
    assert listed.json()["data"] == []


async def test_the_email_channel_mails_a_single_use_link_to_the_consent_page(
    org: Org, clock: FixedClock, visitor: httpx.AsyncClient, smtp_server: SmtpServer
) -> None:
    await create_purpose(org, "newsletter")
    contact = await create_record(org, "contacts")
    request = await ask(
        org, "contacts", contact["id"], clock.now() + timedelta(days=5), channel="email"
    )
    # Through a real SMTP server, as the worker sends it.
    settings = org.app.state.settings.model_copy(update={"smtp_url": smtp_server.url})
    await send_all_due_mail(
        org.app.state.sessionmaker, settings, datetime.now(UTC) + timedelta(seconds=1)
    )
    [message] = smtp_server.inbox.to(contact["email"])
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Monthly newsletter" in text and message["List-Unsubscribe"]
    assert "asks for your consent" in message["Subject"]
    path = link_in(text, "/consent/")

    page = await visitor.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'name="purpose.newsletter"' in page.text and 'method="post"' in page.text
    assert await request_status(org, request["id"]) == "pending", "a GET records nothing"

    answered = await visitor.post(
        path,
        content="purpose.newsletter=granted",
        headers={"content-type": "application/x-www-form-urlencoded", "user-agent": "Mailer/1"},
    )
    assert answered.status_code == 200 and "recorded" in answered.text
    assert await request_status(org, request["id"]) == "answered"
    ledger = await org.client.get(f"/v1/contacts/{contact['id']}/consents", headers=org.headers)
    [event] = ledger.json()["events"]
    assert (event["status"], event["channel"], event["request_id"]) == (
        "granted",
        "email",
        request["id"],
    )
    assert event["evidence"]["ip"] == "198.51.100.23"
    assert event["evidence"]["user_agent"] == "Mailer/1"
    answered_events = [
        (e["action"], e["actor_type"])
        for e in await audit_events(org)
        if e["action"] in ("consent.recorded", "consent.request_answered")
    ]
    assert sorted(answered_events) == [
        ("consent.recorded", "system"),
        ("consent.request_answered", "system"),
    ]

    again = await visitor.post(
        path,
        content="purpose.newsletter=refused",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert again.status_code == 200 and "no longer works" in again.text, "single use"
    assert (
        len(
            (
                await org.client.get(f"/v1/contacts/{contact['id']}/consents", headers=org.headers)
            ).json()["events"]
        )
        == 1
    )
    assert "no longer works" in (await visitor.get(path)).text
    assert "no longer works" in (await visitor.get("/consent/" + "A" * 43)).text


async def test_an_answer_the_consent_form_does_not_have_is_refused_and_records_nothing(
    org: Org, clock: FixedClock, visitor: httpx.AsyncClient, smtp_server: SmtpServer
) -> None:
    await create_purpose(org, "newsletter")
    contact = await create_record(org, "contacts")
    request = await ask(
        org, "contacts", contact["id"], clock.now() + timedelta(days=5), channel="email"
    )
    settings = org.app.state.settings.model_copy(update={"smtp_url": smtp_server.url})
    await send_all_due_mail(
        org.app.state.sessionmaker, settings, datetime.now(UTC) + timedelta(seconds=1)
    )
    [message] = smtp_server.inbox.to(contact["email"])
    path = link_in(message.get_body(preferencelist=("plain",)).get_content(), "/consent/")
    form = {"content-type": "application/x-www-form-urlencoded"}
    for body, field in (
        ("purpose.newsletter=yes", "body.purpose.newsletter"),
        ("purpose.newsletter=granted&email=someone%40example.com", "body"),
        ("purposes=newsletter", "body"),
        ("&".join(f"purpose.p{n}=granted" for n in range(21)), "body"),
    ):
        refused = await visitor.post(path, content=body, headers=form)
        assert_problem(refused, 422)
        assert field in {error["field"] for error in refused.json()["errors"]}, body
    assert await request_status(org, request["id"]) == "pending"
    ledger = await org.client.get(f"/v1/contacts/{contact['id']}/consents", headers=org.headers)
    assert ledger.json()["events"] == []

    answered = await visitor.post(path, content="purpose.newsletter=granted", headers=form)
    assert answered.status_code == 200 and "recorded" in answered.text, "the link still works"
    assert await request_status(org, request["id"]) == "answered"


async def test_reminders_go_out_before_the_deadline_each_with_a_working_link(
    org: Org, clock: FixedClock, visitor: httpx.AsyncClient
) -> None:
    await create_purpose(org, "newsletter")
    contact = await create_record(org, "contacts")
    deadline = clock.now() + timedelta(days=5)
    request = await ask(org, "contacts", contact["id"], deadline, channel="email", language="ja")
    [first] = await mails(org.app, org.id, "consent_request")
    assert "同意" in first.subject

    await run_job(org.app, "consent_reminders", deadline - timedelta(hours=80))
    assert await mails(org.app, org.id, "consent_reminder") == []
    await run_job(org.app, "consent_reminders", deadline - timedelta(hours=71))
    await run_job(org.app, "consent_reminders", deadline - timedelta(hours=70))
    assert len(await mails(org.app, org.id, "consent_reminder")) == 1, "one per offset"
    await run_job(org.app, "consent_reminders", deadline - timedelta(hours=23))
    reminders = await mails(org.app, org.id, "consent_reminder")
    assert len(reminders) == 2
    shown = await org.client.get(f"/v1/consent/requests/{request['id']}", headers=org.headers)
    assert shown.json()["reminders_sent"] == 2

    # The reminder's link works (the page answers in the request's language).
    clock.at = deadline - timedelta(hours=20)
    page = await visitor.get(link_in(reminders[-1].text, "/consent/"))
    assert page.status_code == 200 and 'lang="ja"' in page.text
    # After the deadline no link works.
    clock.at = deadline + timedelta(seconds=1)
    assert "no longer works" in (await visitor.get(link_in(first.text, "/consent/"))).text
