"""Purposes and the consent ledger: versioned purposes, staff-recorded consent, the current
state per purpose, append-only events (the database refuses changes too), evidence that dies
with the subject's key, the ledger following a lead into its contact, and signed receipts a
third party verifies with the published key alone."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jws
from joserfc.jwk import OKPKey
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from crm_service.consent.ledger import read_events
from crm_service.consent.repository import ConsentEventRepository
from crm_service.crypto.service import keyring_for
from crm_service.db.session import commit
from tests.access.conftest import PERSON_MODULES, audit_events, create_profile, create_record
from tests.conftest import Org, assert_problem, create_user
from tests.consent.conftest import create_purpose


async def record_consent(org: Org, module: str, record_id: str, **body: Any) -> dict[str, Any]:
    response = await org.client.post(
        f"/v1/{module}/{record_id}/consents", json=body, headers=org.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def ledger_of(org: Org, module: str, record_id: str) -> dict[str, Any]:
    response = await org.client.get(f"/v1/{module}/{record_id}/consents", headers=org.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_new_notice_version_is_a_new_version_and_old_events_keep_theirs(
    org: Org,
) -> None:
    first = await create_purpose(org, "newsletter")
    assert first["version"] == 1 and first["superseded_at"] is None
    contact = await create_record(org, "contacts")
    old = await record_consent(
        org, "contacts", contact["id"], purpose="newsletter", status="granted", channel="phone"
    )

    again = await org.client.post(
        "/v1/consent/purposes",
        json={
            **{k: first[k] for k in ("key", "name", "description", "notice_version")},
            "notice_url": first["notice_url"],
        },
        headers=org.headers,
    )
    assert_problem(again, 409)
    second = await create_purpose(
        org, "newsletter", notice_version="2026-06", notice_url="https://example.com/p/2026-06"
    )
    assert second["version"] == 2

    listed = await org.client.get("/v1/consent/purposes", headers=org.headers)
    assert [(p["key"], p["version"]) for p in listed.json()["data"]] == [("newsletter", 2)]
    versions = await org.client.get("/v1/consent/purposes/newsletter", headers=org.headers)
    assert [p["version"] for p in versions.json()["data"]] == [2, 1]
    assert versions.json()["data"][1]["superseded_at"] is not None

    new = await record_consent(
        org, "contacts", contact["id"], purpose="newsletter", status="withdrawn"
    )
    shown = await ledger_of(org, "contacts", contact["id"])
    assert [(e["id"], e["purpose_version"], e["notice_version"]) for e in shown["events"]] == [
        (old["id"], 1, "2026-01"),
        (new["id"], 2, "2026-06"),
    ]
    # Staff may name the older notice the person was actually shown.
    older = await record_consent(
        org,
        "contacts",
        contact["id"],
        purpose="newsletter",
        status="granted",
        notice_version="2026-01",
    )
    assert older["purpose_version"] == 1
    unknown = await org.client.post(
        f"/v1/contacts/{contact['id']}/consents",
        json={"purpose": "newsletter", "status": "granted", "notice_version": "1999"},
        headers=org.headers,
    )
    assert_problem(unknown, 422)


async def test_managing_purposes_needs_manage_privacy(org: Org) -> None:
    profile = await create_profile(org, {"contacts": ["create", "read", "update"]})
    email = f"staff.{uuid.uuid4().hex[:8]}@example.com"
    created = await create_user(
        org, {"email": email, "password": "correct horse battery staple", "profile_id": profile}
    )
    assert created.status_code == 201, created.text
    staff = await org.login(email)
    refused = await org.client.post(
        "/v1/consent/purposes",
        json={
            "key": "calls",
            "name": "Calls",
            "description": "d",
            "notice_version": "1",
            "notice_url": "https://example.com/n",
        },
        headers=staff,
    )
    assert_problem(refused, 403)
    # Reading the purposes (to record consent) is the consent scope's.
    assert (await org.client.get("/v1/consent/purposes", headers=staff)).status_code == 200


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_staff_record_consent_and_the_state_per_purpose_is_the_latest_event(
    org: Org, module: str
) -> None:
    await create_purpose(org, "newsletter")
    await create_purpose(org, "profiling", name="Profiling")
    record = await create_record(org, module)

    await record_consent(
        org,
        module,
        record["id"],
        purpose="newsletter",
        status="granted",
        channel="phone",
        note="Said yes on the phone",
    )
    await record_consent(org, module, record["id"], purpose="profiling", status="refused")
    await record_consent(org, module, record["id"], purpose="newsletter", status="withdrawn")

    shown = await ledger_of(org, module, record["id"])
    assert {s["purpose"]: s["status"] for s in shown["state"]} == {
        "newsletter": "withdrawn",
        "profiling": "refused",
    }
    events = shown["events"]
    assert [(e["purpose"], e["status"], e["channel"]) for e in events] == [
        ("newsletter", "granted", "phone"),
        ("profiling", "refused", "staff"),
        ("newsletter", "withdrawn", "staff"),
    ]
    assert all(e["recorded_by_id"] == str(org.admin_id) for e in events)
    assert events[0]["evidence"]["note"] == "Said yes on the phone"
    recorded = [e for e in await audit_events(org) if e["action"] == "consent.recorded"]
    assert len(recorded) == 3 and all(e["target_id"] == record["id"] for e in recorded)

    unknown = await org.client.post(
        f"/v1/{module}/{record['id']}/consents",
        json={"purpose": "nothing-such", "status": "granted"},
        headers=org.headers,
    )
    assert_problem(unknown, 422)


async def test_another_organization_sees_no_ledger(org: Org, other_org: Org) -> None:
    await create_purpose(org, "newsletter")
    contact = await create_record(org, "contacts")
    await record_consent(org, "contacts", contact["id"], purpose="newsletter", status="granted")
    for method in ("GET", "POST"):
        response = await other_org.client.request(
            method,
            f"/v1/contacts/{contact['id']}/consents",
            json={"purpose": "newsletter", "status": "withdrawn"} if method == "POST" else None,
            headers=other_org.headers,
        )
        assert_problem(response, 404)


async def test_the_ledger_is_append_only_even_in_the_database(org: Org) -> None:
    await create_purpose(org, "newsletter")
    contact = await create_record(org, "contacts")
    event = await record_consent(
        org, "contacts", contact["id"], purpose="newsletter", status="granted"
    )
    engine = org.app.state.engine
    event_id = event["id"] if engine.dialect.name == "postgresql" else uuid.UUID(event["id"]).hex
    for statement in (
        "UPDATE consent_events SET status = 'refused' WHERE id = :id",
        "DELETE FROM consent_events WHERE id = :id",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as connection:
                await connection.execute(text(statement), {"id": event_id})
    shown = await ledger_of(org, "contacts", contact["id"])
    assert [(e["id"], e["status"]) for e in shown["events"]] == [(event["id"], "granted")]
    # And the API offers no way to change one.
    for method in ("PUT", "PATCH", "DELETE"):
        response = await org.client.request(
            method, f"/v1/contacts/{contact['id']}/consents", headers=org.headers
        )
        assert response.status_code == 405, method


async def test_conversion_carries_the_ledger_to_the_contact(org: Org) -> None:
    await create_purpose(org, "newsletter")
    lead = await create_record(org, "leads")
    event = await record_consent(org, "leads", lead["id"], purpose="newsletter", status="granted")
    converted = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json={}, headers=org.headers
    )
    assert converted.status_code == 201, converted.text
    contact = converted.json()["contact"]

    shown = await ledger_of(org, "contacts", contact["id"])
    assert [(e["id"], e["module"], e["record_id"]) for e in shown["events"]] == [
        (event["id"], "leads", lead["id"])
    ]
    assert shown["state"][0]["status"] == "granted"
    later = await record_consent(
        org, "contacts", contact["id"], purpose="newsletter", status="withdrawn"
    )
    assert [e["id"] for e in (await ledger_of(org, "contacts", contact["id"]))["events"]] == [
        event["id"],
        later["id"],
    ]


async def test_erasing_the_subject_destroys_the_evidence_and_keeps_the_events(org: Org) -> None:
    await create_purpose(org, "newsletter")
    contact = await create_record(org, "contacts")
    await record_consent(
        org, "contacts", contact["id"], purpose="newsletter", status="granted", note="On paper"
    )
    subject_id = uuid.UUID((await ledger_of(org, "contacts", contact["id"]))["subject_id"])
    # What the erasure of the privacy feature does: destroy the subject's keys.
    async with org.app.state.sessionmaker() as session:
        await keyring_for(session, org.id).destroy_subject_keys(subject_id)
        await commit(session)
    # The record now answers 410; the ledger's events are still there, their evidence gone.
    async with org.app.state.sessionmaker() as session:
        events = await ConsentEventRepository(session, org.id).of_subject(subject_id)
        shown = await read_events(session, org.id, events)
    assert [(e.status, e.evidence, e.evidence_erased) for e in shown] == [("granted", None, True)]


def _b64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


async def test_a_receipt_verifies_with_the_published_key_and_a_tampered_one_does_not(
    org: Org,
) -> None:
    await create_purpose(org, "newsletter")
    contact = await create_record(org, "contacts")
    event = await record_consent(
        org, "contacts", contact["id"], purpose="newsletter", status="granted", channel="phone"
    )
    response = await org.client.get(
        f"/v1/contacts/{contact['id']}/consents/{event['id']}/receipt", headers=org.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    receipt = body["receipt"]
    assert receipt["record_id"] == event["id"]
    assert receipt["controller"]["id"] == str(org.id)
    assert receipt["purpose"]["key"] == "newsletter"
    assert receipt["notice"] == {"version": "2026-01", "url": "https://example.com/privacy/2026-01"}
    assert receipt["event"]["state"] == "granted" and receipt["event"]["channel"] == "phone"
    assert contact["email"] not in json.dumps(body) and contact["last_name"] not in json.dumps(body)

    # A third party: the public key set, no credentials.
    keys_path = body["keys_url"].split("://", 1)[1].split("/", 1)[1]
    keys = await org.client.get("/" + keys_path)
    assert keys.status_code == 200
    jwk = next(k for k in keys.json()["keys"] if k["kid"] == body["kid"])
    # With a JOSE library ...
    verified = jws.deserialize_compact(body["jws"], OKPKey.import_key(jwk), algorithms=["Ed25519"])
    assert json.loads(verified.payload) == receipt
    # ... and by hand: Ed25519 over "header.payload".
    header, payload, signature = body["jws"].split(".")
    public = Ed25519PublicKey.from_public_bytes(_b64(jwk["x"]))
    public.verify(_b64(signature), f"{header}.{payload}".encode())
    forged = json.loads(_b64(payload))
    forged["event"]["state"] = "refused"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidSignature):
        public.verify(_b64(signature), f"{header}.{forged_payload}".encode())
    assert any(e["action"] == "consent.receipt_issued" for e in await audit_events(org))

    other = await create_record(org, "contacts")
    assert_problem(
        await org.client.get(
            f"/v1/contacts/{other['id']}/consents/{event['id']}/receipt", headers=org.headers
        ),
        404,
    )
