"""Webhooks: endpoints managed over HTTP, an outbox written with the change, deliveries to a
real receiver on loopback signed as Standard Webhooks specifies (verified with the
`standardwebhooks` package), retried on a controllable clock, guarded against SSRF."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from crm_service.config import Environment
from crm_service.db.session import commit, rollback
from crm_service.integrations import delivery as delivery_module
from crm_service.integrations import targets
from crm_service.integrations.delivery import MAX_ATTEMPTS, deliver_due
from crm_service.integrations.models import WebhookEvent
from crm_service.integrations.webhooks import purge_subject_webhook_events
from crm_service.main import create_app
from crm_service.records.contacts.schemas import ContactCreate
from crm_service.records.contacts.service import contacts
from crm_service.records.models import ProcessingLockKind
from crm_service.records.repository import ProcessingLockRepository
from crm_service.security.principal import Principal
from crm_service.security.scopes import ALL_SCOPES
from tests.access.conftest import add_member, audit_events, create_profile, create_record
from tests.conftest import MASTER_KEY, Org, assert_problem, make_settings, unique_email
from tests.integrations.conftest import (
    Receiver,
    attempts_of,
    create_webhook,
    deliver,
    deliveries,
    loopback_settings,
    soon,
)
from tests.records.test_processing_lock import subject_of
from tests.test_cli import run


def verify(secret: str, received: Any) -> dict[str, Any]:
    """The Standard Webhooks reference implementation checks the signature (and the time)."""
    return Webhook(secret).verify(received.body, received.headers)


# --- endpoints -------------------------------------------------------------------------------


async def test_an_endpoint_is_registered_with_a_secret_shown_once(org: Org) -> None:
    created = await create_webhook(org, "https://hooks.example.com/crm", ["contact.created"])
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
    assert created["enabled"] is True and created["events"] == ["contact.created"]

    found = await org.client.get(f"/v1/webhooks/{created['id']}", headers=org.headers)
    assert found.status_code == 200 and "secret" not in found.json()
    listed = await org.client.get("/v1/webhooks", headers=org.headers)
    assert [w["id"] for w in listed.json()["data"]] == [created["id"]]
    assert secret not in listed.text

    changed = await org.client.patch(
        f"/v1/webhooks/{created['id']}",
        json={"events": ["lead.converted", "contact.updated"], "enabled": False},
        headers=org.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["contact.updated", "lead.converted"]
    assert changed.json()["enabled"] is False

    gone = await org.client.delete(f"/v1/webhooks/{created['id']}", headers=org.headers)
    assert gone.status_code == 204
    assert_problem(await org.client.get(f"/v1/webhooks/{created['id']}", headers=org.headers), 404)
    actions = [e["action"] for e in await audit_events(org, target_id=created["id"])]
    assert actions == ["webhook.deleted", "webhook.updated", "webhook.created"]


async def test_the_secret_is_sealed_at_rest(org: Org) -> None:
    created = await create_webhook(org, "https://hooks.example.com/crm", ["lead.created"])
    key = base64.b64decode(created["secret"].removeprefix("whsec_"))
    async with org.app.state.engine.connect() as connection:
        rows = (await connection.exec_driver_sql("SELECT * FROM webhook_endpoints")).all()
    dumped = repr(rows).encode()
    assert created["secret"].encode() not in dumped and key not in b"".join(
        value for row in rows for value in row if isinstance(value, bytes)
    )


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://hooks.example.com/", "events": ["lead.created"]},
        {"url": "https://user:pw@hooks.example.com/", "events": ["lead.created"]},
        {"url": "https://hooks.example.com/", "events": ["lead.exploded"]},
        {"url": "https://hooks.example.com/", "events": []},
        {"url": "https://hooks.example.com/", "events": ["contact.converted"]},
    ],
)
async def test_bad_endpoints_are_refused(org: Org, body: dict[str, Any]) -> None:
    assert_problem(await org.client.post("/v1/webhooks", json=body, headers=org.headers), 422)
    assert (await org.client.get("/v1/webhooks", headers=org.headers)).json()["data"] == []


async def test_only_manage_integrations_manages_webhooks(org: Org, other_org: Org) -> None:
    profile = await create_profile(org, {"contacts": ["read"]}, rights=["manage_settings"])
    member = await add_member(org, profile_id=profile)
    body = {"url": "https://hooks.example.com/", "events": ["lead.created"]}
    assert_problem(await org.client.post("/v1/webhooks", json=body, headers=member.headers), 403)
    created = await create_webhook(org, "https://hooks.example.com/", ["lead.created"])
    # Another organization's administrator: as if it did not exist.
    assert_problem(
        await org.client.get(f"/v1/webhooks/{created['id']}", headers=other_org.headers), 404
    )
    assert_problem(
        await org.client.get(f"/v1/webhooks/{created['id']}/deliveries", headers=other_org.headers),
        404,
    )


def test_https_is_required_in_production() -> None:
    production = make_settings("sqlite+aiosqlite:///:memory:").model_copy(
        update={"env": Environment.PRODUCTION}
    )
    with pytest.raises(targets.TargetRefused) as refused:
        targets.check_url("http://hooks.example.com/", production)
    assert refused.value.reason == "https_required"
    assert targets.check_url("https://hooks.example.com/x?y=1", production)[1:] == (
        "hooks.example.com",
        443,
        "/x?y=1",
    )


# --- delivery ---------------------------------------------------------------------------------


async def test_a_change_is_delivered_signed_with_its_record(org: Org, receiver: Receiver) -> None:
    hook = await create_webhook(org, receiver.url, ["contact.created", "contact.updated"])
    contact = await create_record(org, "contacts", title="Engineer", national_id="AB 12")
    assert await deliver(org) == 1
    (got,) = receiver.received
    payload = verify(hook["secret"], got)
    assert payload["type"] == "contact.created"
    assert got.headers["webhook-id"].startswith("msg_")
    data = payload["data"]
    assert data["id"] == contact["id"] and data["module"] == "contacts" and data["version"] == 1
    assert data["record"]["email"] == contact["email"]
    assert data["record"]["title"] == "Engineer"
    # Another system has no profile: sensitive values never go out (masked, named).
    assert data["record"]["national_id"] is None and data["masked_fields"] == ["national_id"]
    assert b"AB 12" not in got.body
    assert data["withheld_fields"] == []
    # A forged signature does not verify.
    tampered = dict(
        got.headers, **{"webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(hook["secret"]).verify(got.body, tampered)

    attempts = await org.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=org.headers)
    (attempt,) = attempts.json()["data"]
    assert attempt["outcome"] == "delivered" and attempt["response_code"] == 200
    assert attempt["event_type"] == "contact.created"
    assert contact["email"] not in attempts.text  # no payloads after the fact
    # Nothing is due any more: a second run sends nothing.
    assert await deliver(org) == 0 and len(receiver.received) == 1


@pytest.mark.parametrize(
    ("withhold", "absent"),
    [
        ([], set()),
        (["personal"], {"email", "last_name", "phone"}),
        (["sensitive"], {"national_id"}),
    ],
)
async def test_the_integrations_channel_withholds_what_the_settings_say(
    org: Org, receiver: Receiver, withhold: list[str], absent: set[str]
) -> None:
    hook = await create_webhook(org, receiver.url, ["contact.created"])
    await create_record(org, "contacts", national_id="AB 12")
    # Settings changed after the change but before delivery apply: payloads are built late.
    response = await org.client.put(
        "/v1/settings/compliance",
        json={"withhold": {"integrations": withhold}},
        headers=org.headers,
    )
    assert response.status_code == 200
    await deliver(org)
    data = verify(hook["secret"], receiver.received[0])["data"]
    assert absent <= set(data["withheld_fields"])
    assert set(data["withheld_fields"]) == set(data["record"]["withheld_fields"])
    for name in data["withheld_fields"]:
        assert name not in data["record"]  # absent, not null
    assert ("email" in data["record"]) == ("personal" not in withhold)


async def test_every_kind_of_change_is_an_event_in_order_with_versions(
    org: Org, receiver: Receiver
) -> None:
    hook = await create_webhook(
        org,
        receiver.url,
        ["lead.created", "lead.updated", "lead.converted", "lead.deleted", "contact.created"],
    )
    lead = await create_record(org, "leads", company="Initech")
    await org.client.patch(f"/v1/leads/{lead['id']}", json={"title": "CTO"}, headers=org.headers)
    converted = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json={"create_account": False}, headers=org.headers
    )
    assert converted.status_code == 201, converted.text
    assert (
        await org.client.delete(f"/v1/leads/{lead['id']}", headers=org.headers)
    ).status_code == 204
    await deliver(org)
    payloads = [verify(hook["secret"], got) for got in receiver.received]
    assert sorted(
        (p["type"], p["data"]["version"]) for p in payloads if p["type"].startswith("lead.")
    ) == [("lead.converted", 3), ("lead.created", 1), ("lead.deleted", 4), ("lead.updated", 2)]
    assert "contact.created" in {p["type"] for p in payloads}
    deleted = next(p for p in payloads if p["type"] == "lead.deleted")
    assert deleted["data"]["record"] is None  # gone by delivery time: ids only
    assert len({got.headers["webhook-id"] for got in receiver.received}) == len(payloads)


async def test_a_rolled_back_change_sends_nothing(org: Org, receiver: Receiver) -> None:
    await create_webhook(org, receiver.url, ["contact.created"])
    async with org.app.state.sessionmaker() as session:
        principal = Principal(organization_id=org.id, user_id=org.admin_id, scopes=ALL_SCOPES)
        await contacts.create(
            session=session,
            principal=principal,
            payload=ContactCreate(last_name="Rollback", email=unique_email()),
        )
        assert await session.scalar(select(func.count()).select_from(WebhookEvent)) >= 1
        await rollback(session)
    async with org.app.state.sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(WebhookEvent)
            .where(WebhookEvent.organization_id == org.id)
        )
    assert count == 0
    assert await deliver(org) == 0 and receiver.received == []


async def test_failures_are_retried_with_backoff_on_the_same_webhook_id(
    org: Org, receiver: Receiver
) -> None:
    hook = await create_webhook(org, receiver.url, ["account.created"])
    await create_record(org, "accounts")
    receiver.answer(500)
    receiver.answer(302, location="http://127.0.0.1:1/elsewhere")
    start = soon()
    assert await deliver(org, start) == 1
    (row,) = await deliveries(org, hook["id"])
    first_wait = row.next_attempt_at - start
    assert timedelta(seconds=9) <= first_wait <= timedelta(seconds=11)
    assert await deliver(org, start + timedelta(seconds=8)) == 0  # not due yet
    second = start + first_wait
    assert await deliver(org, second) == 1  # a redirect is a failure, not followed
    (row,) = await deliveries(org, hook["id"])
    assert row.status == "pending" and row.attempts == 2 and row.last_error == "redirect"
    assert timedelta(seconds=27) <= row.next_attempt_at - second <= timedelta(seconds=33)
    assert await deliver(org, row.next_attempt_at) == 1
    (row,) = await deliveries(org, hook["id"])
    assert row.status == "delivered" and row.attempts == 3
    assert [got.path for got in receiver.received] == ["/hook"] * 3
    assert len({got.headers["webhook-id"] for got in receiver.received}) == 1
    attempts = await org.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=org.headers)
    assert [(a["outcome"], a["response_code"]) for a in attempts.json()["data"]] == [
        ("delivered", 200),
        ("failed", 302),
        ("failed", 500),
    ]


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(org: Org, receiver: Receiver, status: int) -> None:
    hook = await create_webhook(org, receiver.url, ["account.created"])
    await create_record(org, "accounts")
    receiver.answer(status, **{"retry-after": "600"})
    start = soon()
    await deliver(org, start)
    (row,) = await deliveries(org, hook["id"])
    assert row.next_attempt_at - start >= timedelta(seconds=600)
    assert await deliver(org, start + timedelta(seconds=590)) == 0


async def test_410_disables_the_endpoint_and_says_why(org: Org, receiver: Receiver) -> None:
    hook = await create_webhook(org, receiver.url, ["account.created"])
    await create_record(org, "accounts")
    receiver.answer(410)
    await deliver(org)
    found = (await org.client.get(f"/v1/webhooks/{hook['id']}", headers=org.headers)).json()
    assert found["enabled"] is False and found["disabled_reason"] == "gone"
    await create_record(org, "accounts")
    assert await deliver(org, soon(3600)) == 0 and len(receiver.received) == 1
    assert [e["reason"] for e in await audit_events(org, action="webhook.disabled")] == ["gone"]
    # A disabled endpoint is sent nothing new; switched on again, it gets the next change.
    response = await org.client.patch(
        f"/v1/webhooks/{hook['id']}", json={"enabled": True}, headers=org.headers
    )
    assert response.json()["disabled_reason"] is None
    await create_record(org, "accounts")
    assert await deliver(org, soon(3600)) == 1 and len(receiver.received) == 2


async def test_sustained_failure_gives_up_after_about_three_days_and_disables(
    org: Org, receiver: Receiver
) -> None:
    hook = await create_webhook(org, receiver.url, ["account.created"])
    await create_record(org, "accounts")
    receiver.answer(500, times=MAX_ATTEMPTS)
    now = soon()
    first = now
    for _ in range(MAX_ATTEMPTS):
        assert await deliver(org, now) == 1
        (row,) = await deliveries(org, hook["id"])
        now = row.next_attempt_at
    assert row.status == "failed" and row.attempts == MAX_ATTEMPTS
    span = row.last_attempt_at - first
    assert timedelta(days=2.5) <= span <= timedelta(days=3.5)
    found = (await org.client.get(f"/v1/webhooks/{hook['id']}", headers=org.headers)).json()
    assert found["enabled"] is False and found["disabled_reason"] == "failing"


async def test_two_workers_deliver_each_event_once(
    org: Org, receiver: Receiver, database_url: str
) -> None:
    await create_webhook(org, receiver.url, ["contact.created"])
    await create_webhook(org, receiver.url, ["contact.created"])
    for _ in range(12):
        await create_record(org, "contacts")
    other = create_app(make_settings(database_url))
    async with LifespanManager(other):
        now = soon()
        settings = loopback_settings(org)
        before = await attempts_of(org)
        await asyncio.gather(
            deliver_due(org.app.state.sessionmaker, settings, now, limit=500),
            deliver_due(other.state.sessionmaker, settings, now, limit=500),
            deliver_due(org.app.state.sessionmaker, settings, now, limit=500),
        )
    assert await attempts_of(org) - before == 24
    seen = [
        (got.headers["webhook-id"], got.headers["webhook-signature"]) for got in receiver.received
    ]
    assert len(seen) == 24 and len(set(seen)) == 24  # each event once per endpoint
    assert len({webhook_id for webhook_id, _ in seen}) == 12


async def test_a_rotated_secret_keeps_signing_during_the_overlap(
    org: Org, receiver: Receiver
) -> None:
    hook = await create_webhook(org, receiver.url, ["account.created"])
    rotated = await org.client.post(f"/v1/webhooks/{hook['id']}/secret", headers=org.headers)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != hook["secret"] and rotated.json()["previous_secret_until"] is not None
    await create_record(org, "accounts")
    await deliver(org)
    (got,) = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verify(new, got) == verify(hook["secret"], got)
    # After the overlap only the new secret signs.
    await create_record(org, "accounts")
    await deliver(org, datetime.now(UTC) + timedelta(days=2))
    last = receiver.received[-1]
    assert len(last.headers["webhook-signature"].split(" ")) == 1


async def test_a_restricted_subjects_events_are_held_and_erasure_purges_them(
    org: Org, receiver: Receiver
) -> None:
    hook = await create_webhook(org, receiver.url, ["contact.created"])
    held = await create_record(org, "contacts")
    subject = await subject_of(org, "contacts", held["id"])
    async with org.app.state.sessionmaker() as session:
        await ProcessingLockRepository(session, org.id).set(
            subject, ProcessingLockKind.RESTRICTED, reason="art18", since=datetime.now(UTC)
        )
        await commit(session)
    assert await deliver(org) == 0 and receiver.received == []
    async with org.app.state.sessionmaker() as session:
        assert await ProcessingLockRepository(session, org.id).lift(
            subject, ProcessingLockKind.RESTRICTED
        )
        await commit(session)
    assert await deliver(org) == 1

    erased = await create_record(org, "contacts")
    async with org.app.state.sessionmaker() as session:
        purged = await purge_subject_webhook_events(
            session, org.id, await subject_of(org, "contacts", erased["id"])
        )
        await commit(session)
    assert purged == 1
    assert await deliver(org) == 0
    assert [d.status for d in await deliveries(org, hook["id"])] == ["delivered"]


# --- the SSRF guard ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/hook",
        "http://127.0.0.1:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_private_targets_are_refused_unless_allowed(
    org: Org, receiver: Receiver, url: str
) -> None:
    hook = await create_webhook(org, url.format(port=receiver.port), ["account.created"])
    await create_record(org, "accounts")
    assert await deliver(org, webhook_allow_private_targets=False) == 1
    assert receiver.received == []
    attempts = await org.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=org.headers)
    (attempt,) = attempts.json()["data"]
    assert attempt["outcome"] == "refused" and attempt["error"] == "private_address"


async def test_a_name_resolving_to_the_metadata_service_is_refused(
    org: Org, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = targets.resolve

    async def rebinding(host: str, port: int) -> list[str]:
        # A public-looking name whose DNS now answers the cloud metadata address.
        if host == "hooks.partner.example":
            return ["169.254.169.254"]
        return await original(host, port)

    monkeypatch.setattr(targets, "resolve", rebinding)
    hook = await create_webhook(org, "http://hooks.partner.example/hook", ["account.created"])
    await create_record(org, "accounts")
    await deliver(org, webhook_allow_private_targets=False)
    attempts = await org.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=org.headers)
    assert attempts.json()["data"][0]["error"] == "private_address"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1::", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert targets.is_public(address) is public


# --- operations -------------------------------------------------------------------------------


async def test_metrics_count_deliveries_and_exported_rows(org: Org, receiver: Receiver) -> None:
    await create_webhook(org, receiver.url, ["contact.created"])
    await create_record(org, "contacts")
    await deliver(org)
    export = await org.client.get("/v1/contacts/export?format=csv", headers=org.headers)
    assert export.status_code == 200
    text = (await org.client.get("/metrics")).text
    assert 'crm_webhook_deliveries_total{outcome="delivered"}' in text
    assert 'crm_exported_rows_total{module="contacts"}' in text


async def test_an_operator_redelivers_a_delivery(org: Org, receiver: Receiver) -> None:
    hook = await create_webhook(org, receiver.url, ["contact.created"])
    await create_record(org, "contacts")
    await deliver(org)
    (row,) = await deliveries(org, hook["id"])
    assert row.status == "delivered"
    done = await delivery_module.redeliver(org.app.state.sessionmaker, row.id, soon())
    assert done
    assert await deliver(org, soon(2)) == 1
    assert len(receiver.received) == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    assert not await delivery_module.redeliver(org.app.state.sessionmaker, uuid.uuid4(), soon())
    assert [e["action"] for e in await audit_events(org, action="webhook.redelivered")]


async def test_the_redeliver_command(
    org: Org, receiver: Receiver, database_url: str, tmp_path: Path
) -> None:
    hook = await create_webhook(org, receiver.url, ["contact.created"])
    await create_record(org, "contacts")
    await deliver(org)
    (row,) = await deliveries(org, hook["id"])
    env = {"CRM_DATABASE_URL": database_url, "CRM_MASTER_KEY": MASTER_KEY}
    done = await asyncio.to_thread(run, tmp_path, "webhooks", "redeliver", str(row.id), **env)
    assert done.returncode == 0, done.stderr
    assert await deliver(org, soon(5)) == 1 and len(receiver.received) == 2
    missing = await asyncio.to_thread(
        run, tmp_path, "webhooks", "redeliver", str(uuid.uuid4()), **env
    )
    assert missing.returncode != 0 and "No delivery" in missing.stderr
    bad = await asyncio.to_thread(run, tmp_path, "webhooks", "redeliver", "nope", **env)
    assert bad.returncode != 0 and "not a delivery id" in bad.stderr
