"""Web forms: definitions, public submissions (form-encoded and JSON), the honeypot, the
throttles, double opt-in through a real SMTP server, expiry and purge, no downgrade of a
confirmed person, and a database that holds none of the submitter's values afterwards."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from crm_service.clock import FixedClock
from crm_service.consent.models import WebformSubmission
from crm_service.crypto.models import DataKeyRecord
from crm_service.main import create_app
from tests.access.conftest import audit_events, create_profile
from tests.conftest import (
    PASSWORD,
    Org,
    assert_problem,
    create_user,
    database_bytes,
    make_settings,
    new_org,
    unique_email,
)
from tests.consent.conftest import VISITOR_IP, create_purpose, link_in, mails, run_job
from tests.mail.conftest import SmtpServer, send_all_due_mail

FORM = {"content-type": "application/x-www-form-urlencoded"}


async def create_form(org: Org, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Newsletter sign-up",
        "module": "leads",
        "fields": [
            {"name": "first_name"},
            {"name": "last_name", "required": True},
            {"name": "email", "required": True},
            {"name": "company"},
        ],
        "purposes": ["newsletter"],
        "double_opt_in": True,
        "redirect_url": "https://example.com/thanks",
        **overrides,
    }
    response = await org.client.post("/v1/webforms", json=body, headers=org.headers)
    assert response.status_code == 201, response.text
    return response.json()


def person() -> dict[str, str]:
    tag = secrets.token_hex(4)
    return {
        "first_name": f"Grace{tag}",
        "last_name": f"Hopper{tag}",
        "email": unique_email(f"grace{tag}"),
        "company": f"Compilers{tag} Ltd",
    }


async def leads_with(org: Org, email: str) -> list[dict[str, Any]]:
    response = await org.client.get("/v1/leads", params={"email": email}, headers=org.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def deliver(app: Any, server: SmtpServer) -> int:
    """The worker's mail job against the test's SMTP server."""
    settings = app.state.settings.model_copy(update={"smtp_url": server.url})
    return await send_all_due_mail(
        app.state.sessionmaker, settings, datetime.now(UTC) + timedelta(seconds=1)
    )


def mailed_link(server: SmtpServer, to: str, path: str) -> str:
    [message] = server.inbox.to(to)
    text = message.get_body(preferencelist=("plain",)).get_content()
    return link_in(text, path)


# --- definitions ---------------------------------------------------------------------------


async def test_a_form_is_versioned_and_checked(org: Org) -> None:
    await create_purpose(org, "newsletter")
    form = await create_form(org)
    assert form["version"] == 1 and form["submit_url"].endswith(f"/forms/{form['id']}")
    changed = await org.client.patch(
        f"/v1/webforms/{form['id']}", json={"name": "Spring newsletter"}, headers=org.headers
    )
    assert changed.status_code == 200 and changed.json()["version"] == 2
    listed = await org.client.get("/v1/webforms", headers=org.headers)
    assert [f["id"] for f in listed.json()["data"]] == [form["id"]]

    fields = [{"name": "last_name", "required": True}, {"name": "email", "required": True}]
    bad = [
        {"fields": [{"name": "email", "required": True}]},  # no last name
        {"fields": [*fields, {"name": "owner_id"}]},  # not the public's to set
        {"fields": [{"name": "last_name", "required": True}], "double_opt_in": True},
        {"fields": fields, "purposes": ["nothing-such"]},
        {"fields": fields, "module": "accounts"},
    ]
    for change in bad:
        response = await org.client.post(
            "/v1/webforms",
            json={"name": "Bad", "module": "leads", "purposes": [], **change},
            headers=org.headers,
        )
        assert_problem(response, 422)
    assert len((await org.client.get("/v1/webforms", headers=org.headers)).json()["data"]) == 1

    profile = await create_profile(org, {"leads": ["create", "read"]})
    email = unique_email("staff")
    await create_user(org, {"email": email, "password": PASSWORD, "profile_id": profile})
    staff = await org.login(email)
    assert_problem(await org.client.get("/v1/webforms", headers=staff), 403)


# --- without double opt-in ----------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["form", "json"])
async def test_without_double_opt_in_the_lead_is_made_at_once_with_source_and_evidence(
    org: Org, visitor: httpx.AsyncClient, encoding: str
) -> None:
    await create_purpose(org, "newsletter")
    await create_purpose(org, "events", name="Event invitations")
    form = await create_form(org, double_opt_in=False, purposes=["newsletter", "events"])
    who = person()
    if encoding == "form":
        body = httpx.QueryParams({**who, "purposes": "newsletter"})
        response = await visitor.post(
            f"/forms/{form['id']}", content=str(body), headers={**FORM, "user-agent": "UA/1"}
        )
    else:
        response = await visitor.post(
            f"/forms/{form['id']}",
            json={**who, "purposes": ["newsletter"]},
            headers={"user-agent": "UA/1"},
        )
    assert response.status_code == 202, response.text

    [lead] = await leads_with(org, who["email"])
    assert lead["source"] == {
        "channel": "webform",
        "client_id": None,
        "batch_id": None,
        "form": "Newsletter sign-up",
        "ip": VISITOR_IP,
    }
    assert (lead["first_name"], lead["company"]) == (who["first_name"], who["company"])
    ledger = await org.client.get(f"/v1/leads/{lead['id']}/consents", headers=org.headers)
    [event] = ledger.json()["events"]
    assert (event["purpose"], event["status"], event["channel"]) == ("newsletter", "granted", "web")
    assert event["form_id"] == form["id"]
    assert event["evidence"]["submitted_ip"] == VISITOR_IP
    assert event["evidence"]["submitted_user_agent"] == "UA/1"
    assert event["evidence"]["form_version"] == 1


async def test_the_answer_never_tells_a_known_address_and_a_bot_is_dropped(
    org: Org, visitor: httpx.AsyncClient
) -> None:
    await create_purpose(org, "newsletter")
    form = await create_form(org, double_opt_in=False)
    known = person()
    first = await visitor.post(f"/forms/{form['id']}", json=known)
    again = await visitor.post(f"/forms/{form['id']}", json=known)
    new = await visitor.post(f"/forms/{form['id']}", json=person())
    assert first.status_code == again.status_code == new.status_code == 202
    assert first.json() == again.json() == new.json()

    bot = person()
    trapped = await visitor.post(f"/forms/{form['id']}", json={**bot, "crm_hp": "http://spam"})
    assert trapped.status_code == 202 and trapped.json() == new.json()
    assert await leads_with(org, bot["email"]) == []

    bad = await visitor.post(f"/forms/{form['id']}", json={"email": "x@example.com"})
    assert_problem(bad, 422)
    assert_problem(await visitor.post(f"/forms/{uuid.uuid4()}", json=person()), 404)
    assert_problem(
        await visitor.post(
            f"/forms/{form['id']}", content="<x/>", headers={"content-type": "text/xml"}
        ),
        400,
    )


async def test_submissions_are_throttled_per_address_and_per_email(database_url: str) -> None:
    settings = make_settings(
        database_url, webform_address_hourly_limit=3, webform_email_daily_limit=1
    )
    application = create_app(settings)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("192.0.2.99", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            org = await new_org(application, http)
            await create_purpose(org, "newsletter")
            form = await create_form(org, double_opt_in=False)
            who = person()
            first = await http.post(f"/forms/{form['id']}", json=who)
            # The same address again: dropped, answered alike (a 429 would tell).
            second = await http.post(f"/forms/{form['id']}", json=who)
            assert first.status_code == second.status_code == 202
            assert len(await leads_with(org, who["email"])) == 1
            assert (await http.post(f"/forms/{form['id']}", json=person())).status_code == 202
            flooded = await http.post(f"/forms/{form['id']}", json=person())
            problem = assert_problem(flooded, 429)
            assert int(flooded.headers["Retry-After"]) > 0 and "submissions" in problem["detail"]


# --- double opt-in ------------------------------------------------------------------------


async def test_double_opt_in_end_to_end_through_a_real_smtp_server(
    org: Org, visitor: httpx.AsyncClient, clock: FixedClock, smtp_server: SmtpServer
) -> None:
    await create_purpose(org, "newsletter")
    form = await create_form(org)
    who = person()
    submitted = await visitor.post(
        f"/forms/{form['id']}",
        content=str(httpx.QueryParams({**who, "purposes": "newsletter"})),
        headers={**FORM, "user-agent": "Browser/submit"},
    )
    assert submitted.status_code == 202
    assert await leads_with(org, who["email"]) == [], "nothing until confirmed"

    assert await deliver(org.app, smtp_server) >= 1
    [message] = smtp_server.inbox.to(who["email"])
    assert "confirm" in message["Subject"].lower()
    path = mailed_link(smtp_server, who["email"], "/forms/confirm/")

    # A mail scanner's GET shows the page and confirms nothing, however often.
    for _ in range(2):
        page = await visitor.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert f'action="{path}"' in page.text and 'method="post"' in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
    assert await leads_with(org, who["email"]) == []

    clock.advance(minutes=5)
    confirmed = await visitor.post(path, headers={"user-agent": "Browser/confirm"})
    assert confirmed.status_code == 200 and "confirmed" in confirmed.text
    [lead] = await leads_with(org, who["email"])
    assert lead["source"]["channel"] == "webform" and lead["source"]["ip"] == VISITOR_IP
    assert lead["source"]["form"] == "Newsletter sign-up"
    ledger = await org.client.get(f"/v1/leads/{lead['id']}/consents", headers=org.headers)
    [event] = ledger.json()["events"]
    evidence = event["evidence"]
    assert evidence["submitted_ip"] == evidence["confirmed_ip"] == VISITOR_IP
    assert evidence["submitted_user_agent"] == "Browser/submit"
    assert evidence["confirmed_user_agent"] == "Browser/confirm"
    assert evidence["confirmed_at"] > evidence["submitted_at"]

    # A second POST does nothing.
    again = await visitor.post(path)
    assert again.status_code == 200 and "confirmed" in again.text
    assert len(await leads_with(org, who["email"])) == 1
    assert (
        len(
            (await org.client.get(f"/v1/leads/{lead['id']}/consents", headers=org.headers)).json()[
                "events"
            ]
        )
        == 1
    )
    actions = [e["action"] for e in await audit_events(org)]
    assert actions.count("webform.confirmed") == 1 and "webform.submitted" in actions


async def test_submitting_again_never_downgrades_a_confirmed_person(
    org: Org, visitor: httpx.AsyncClient, smtp_server: SmtpServer
) -> None:
    await create_purpose(org, "newsletter")
    await create_purpose(org, "events", name="Event invitations")
    form = await create_form(org, purposes=["newsletter", "events"])
    who = person()
    await visitor.post(f"/forms/{form['id']}", json={**who, "purposes": ["newsletter"]})
    await deliver(org.app, smtp_server)
    first = mailed_link(smtp_server, who["email"], "/forms/confirm/")
    await visitor.post(first)
    [lead] = await leads_with(org, who["email"])

    # Again, without ticking anything: the confirmed person stays as they are ...
    await visitor.post(f"/forms/{form['id']}", json={**who, "purposes": []})
    ledger = await org.client.get(f"/v1/leads/{lead['id']}/consents", headers=org.headers)
    assert [s["status"] for s in ledger.json()["state"]] == ["granted"]
    # ... and a later confirmation with another purpose adds to their record, no new lead.
    await visitor.post(
        f"/forms/{form['id']}", json={**{**who, "first_name": "G"}, "purposes": ["events"]}
    )
    smtp_server.inbox.envelopes.clear()
    await deliver(org.app, smtp_server)
    bodies = [
        m.get_body(preferencelist=("plain",)).get_content()
        for m in smtp_server.inbox.to(who["email"])
    ]
    [second] = [body for body in bodies if "Event invitations" in body]
    await visitor.post(link_in(second, "/forms/confirm/"))
    [same] = await leads_with(org, who["email"])
    assert same["id"] == lead["id"] and same["first_name"] == who["first_name"]
    ledger = await org.client.get(f"/v1/leads/{lead['id']}/consents", headers=org.headers)
    assert {s["purpose"]: s["status"] for s in ledger.json()["state"]} == {
        "events": "granted",
        "newsletter": "granted",
    }


async def test_an_expired_link_says_so_offers_the_form_and_the_worker_purges_the_data(
    org: Org, visitor: httpx.AsyncClient, clock: FixedClock
) -> None:
    await create_purpose(org, "newsletter")
    form = await create_form(org)
    who = person()
    await visitor.post(f"/forms/{form['id']}", json={**who, "purposes": ["newsletter"]})
    [mail] = [m for m in await _outbox(org) if m.to == who["email"]]
    path = link_in(mail.text, "/forms/confirm/")
    async with org.app.state.sessionmaker() as session:
        submission = (
            await session.execute(
                select(WebformSubmission).where(WebformSubmission.form_id == uuid.UUID(form["id"]))
            )
        ).scalar_one()
    assert submission.data_sealed is not None
    assert submission.expires_at - submission.submitted_at == timedelta(hours=48)

    start = clock.now()
    clock.advance(hours=48, seconds=1)
    later = clock.now()
    page = await visitor.get(path)
    assert page.status_code == 200 and "expired" in page.text
    assert f'action="/forms/{form["id"]}"' in page.text, "offers the form again"
    refused = await visitor.post(path)
    assert "expired" in refused.text
    clock.at = start  # the staff's session lives in real time
    assert await leads_with(org, who["email"]) == []

    assert await run_job(org.app, "purge_webform_submissions", later) >= 1
    async with org.app.state.sessionmaker() as session:
        purged = await session.get(WebformSubmission, submission.id)
        keys = (
            (
                await session.execute(
                    select(DataKeyRecord).where(DataKeyRecord.subject_id == submission.subject_id)
                )
            )
            .scalars()
            .all()
        )
    assert purged is not None and purged.data_sealed is None
    assert keys and all(key.wrapped is None and key.status == "destroyed" for key in keys)
    # The queued mail went with the key.
    assert [m for m in await _outbox(org) if m.to == who["email"]] == []
    clock.at = later
    assert "expired" in (await visitor.get(path)).text
    # Resending is submitting again: a new link that works.
    assert (await visitor.post(f"/forms/{form['id']}", json=who)).status_code == 202
    [fresh] = [m for m in await _outbox(org) if m.to == who["email"]]
    assert "Confirm" in (await visitor.get(link_in(fresh.text, "/forms/confirm/"))).text


async def _outbox(org: Org) -> list[Any]:
    return await mails(org.app, org.id, "optin_confirm")


# --- at rest ---------------------------------------------------------------------------------


async def test_after_a_confirmed_submission_the_database_holds_none_of_the_values(
    org: Org, database_url: str, smtp_server: SmtpServer
) -> None:
    await create_purpose(org, "newsletter")
    form = await create_form(org)
    who = person()
    submitter_ip = f"198.51.100.{secrets.randbelow(200) + 30}"
    user_agent = f"Browser/{secrets.token_hex(8)}"
    transport = httpx.ASGITransport(app=org.app, client=(submitter_ip, 50002))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as visitor:
        headers = {"user-agent": user_agent}
        await visitor.post(
            f"/forms/{form['id']}", json={**who, "purposes": ["newsletter"]}, headers=headers
        )
        await deliver(org.app, smtp_server)
        await visitor.post(
            mailed_link(smtp_server, who["email"], "/forms/confirm/"), headers=headers
        )
    [lead] = await leads_with(org, who["email"])
    assert lead["source"]["ip"] == submitter_ip

    dump = await database_bytes(database_url)
    # The company is classified `none` (no personal data) and so stored as it is.
    personal = [who["first_name"], who["last_name"], who["email"], submitter_ip, user_agent]
    for value in personal:
        for needle in (value.encode(), value.lower().encode(), value.encode().hex().encode()):
            assert needle not in dump, "a submitter's value is stored readable"


# --- an erased person ------------------------------------------------------------------------


@pytest.mark.parametrize("double_opt_in", [True, False])
async def test_a_blocklisted_address_is_dropped_while_answering_as_usual(
    org: Org, visitor: httpx.AsyncClient, double_opt_in: bool
) -> None:
    await create_purpose(org, "newsletter")
    form = await create_form(org, double_opt_in=double_opt_in)
    erased = person()
    created = await org.client.post(
        "/v1/leads",
        json={k: erased[k] for k in ("first_name", "last_name", "email", "company")},
        headers=org.headers,
    )
    assert created.status_code == 201, created.text
    erasure = await org.client.post(
        "/v1/privacy/erasures",
        json={"module": "leads", "record_id": created.json()["id"]},
        headers=org.headers,
    )
    assert erasure.status_code == 201, erasure.text
    mails_before = len(await _outbox(org))

    dropped = await visitor.post(f"/forms/{form['id']}", json=erased)
    welcome = await visitor.post(f"/forms/{form['id']}", json=person())

    assert dropped.status_code == welcome.status_code == 202
    assert dropped.json() == welcome.json()
    assert await leads_with(org, erased["email"]) == []
    # Only the welcome visitor got an opt-in mail; the erased address none.
    assert len(await _outbox(org)) == mails_before + (1 if double_opt_in else 0)


async def test_erasing_a_person_drops_their_submission_waiting_for_its_opt_in(
    org: Org, visitor: httpx.AsyncClient, database_url: str
) -> None:
    """A submission waiting for its double opt-in is sealed under a key of its own; erasing
    the person with that address (a contact of theirs) drops it at once, not when its link
    expires: the link then confirms nothing, and no byte of the database holds it."""
    await create_purpose(org, "newsletter")
    form = await create_form(org)
    who = person()
    contact = await org.client.post(
        "/v1/contacts", json={"last_name": "Hopper", "email": who["email"]}, headers=org.headers
    )
    assert contact.status_code == 201, contact.text
    submitted = await visitor.post(
        f"/forms/{form['id']}",
        content=str(httpx.QueryParams({**who, "purposes": "newsletter"})),
        headers=FORM,
    )
    assert submitted.status_code == 202
    [mailed] = await mails(org.app, org.id, "optin_confirm")
    path = link_in(mailed.text, "/forms/confirm/")

    erasure = await org.client.post(
        "/v1/privacy/erasures",
        json={"module": "contacts", "record_id": contact.json()["id"]},
        headers=org.headers,
    )
    assert erasure.status_code == 201, erasure.text
    receipt = await org.client.get(
        f"/v1/privacy/erasures/{erasure.json()['receipt_ids'][0]}", headers=org.headers
    )
    assert receipt.json()["counts"]["pending_webform_submissions"] == 1, receipt.text

    confirmed = await visitor.post(path)
    assert confirmed.status_code in (200, 410) and "confirmed" not in confirmed.text.lower()
    assert await leads_with(org, who["email"]) == []
    assert await mails(org.app, org.id, "optin_confirm") == []
    values = [who["email"], who["first_name"], who["company"]]
    assert [v for v in values if v.encode() in await database_bytes(database_url)] == []
