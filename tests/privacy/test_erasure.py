"""Erasure: a subject with a converted lead in the recycle bin, a contact of an account,
history and a former email is erased in one request; then nothing of them is anywhere —
not in the SQLite file or its WAL, a pg_dump, any table, the logs, the receipt or the
blocklist — and they cannot be entered again by email or by phone."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from crm_service.privacy.blocklist import is_blocklisted
from tests.conftest import Org, assert_problem, unique_email
from tests.privacy.probe import Subject, hits, storage_hits, table_hits


async def make_subject(org: Org, subject: Subject) -> dict[str, Any]:
    """A lead (in the recycle bin after conversion), its contact at an account, history."""
    client, headers = org.client, org.headers
    lead = await client.post(
        "/v1/leads",
        json={
            "first_name": subject.first_name,
            "last_name": subject.last_name,
            "email": subject.former_email,
            "phone": subject.phone,
            "company": subject.company,
            "title": subject.title,
            "description": subject.description,
            "legal_basis": {"basis": "legitimate_interests", "assessment": subject.description},
        },
        headers=headers,
    )
    assert lead.status_code == 201, lead.text
    lead_id = lead.json()["id"]
    changed = await client.patch(
        f"/v1/leads/{lead_id}", json={"email": subject.email, "mobile": subject.mobile},
        headers=headers,
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    # Into an existing account (a company the organization keeps, named by itself).
    account = await client.post("/v1/accounts", json={"name": "Northwind"}, headers=headers)
    converted = await client.post(
        f"/v1/leads/{lead_id}/convert", json={"account_id": account.json()["id"]}, headers=headers
    )
    assert converted.status_code == 201, converted.text
    contact_id = converted.json()["contact"]["id"]
    account_id = converted.json()["account"]["id"]
    deleted = await client.delete(f"/v1/leads/{lead_id}", headers=headers)
    assert deleted.status_code == 204, deleted.text
    return {"lead": lead_id, "contact": contact_id, "account": account_id}


async def erase(org: Org, body: dict[str, Any]) -> list[str]:
    response = await org.client.post("/v1/privacy/erasures", json=body, headers=org.headers)
    assert response.status_code == 201, response.text
    receipt_ids = response.json()["receipt_ids"]
    assert response.headers["Location"] == f"/v1/privacy/erasures/{receipt_ids[0]}"
    return receipt_ids


@pytest.mark.parametrize("by", ["record", "email"])
async def test_an_erased_subject_leaves_no_value_anywhere(
    org: Org, app: Any, database_url: str, capfd: pytest.CaptureFixture[str], by: str
) -> None:
    subject = Subject.new()
    ids = await make_subject(org, subject)
    bystander = await org.client.post(
        "/v1/contacts", json={"last_name": "Bystander", "email": unique_email()},
        headers=org.headers,
    )  # fmt: skip
    before = await table_hits(app.state.engine, subject.values())
    assert "leads" in before  # the probe finds what is there (company is stored plain)

    body = (
        {"module": "contacts", "record_id": ids["contact"]}
        if by == "record"
        else {"email": subject.email}
    )
    [receipt_id] = await erase(org, body)

    client, headers = org.client, org.headers
    contact = await client.get(f"/v1/contacts/{ids['contact']}", headers=headers)
    assert_problem(contact, 410)
    binned = await client.get("/v1/recycle-bin", headers=headers)
    assert ids["lead"] not in binned.text
    history = await client.get(f"/v1/contacts/{ids['contact']}/history", headers=headers)
    assert history.status_code == 200 and hits(history.content, subject.values()) == []
    account = await client.get(f"/v1/accounts/{ids['account']}", headers=headers)
    assert account.status_code == 200  # the account stands
    kept = await client.get(f"/v1/contacts/{bystander.json()['id']}", headers=headers)
    assert kept.status_code == 200 and kept.json()["last_name"] == "Bystander"

    receipt = await client.get(f"/v1/privacy/erasures/{receipt_id}", headers=headers)
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["records"] == {"contacts": [ids["contact"]], "leads": [ids["lead"]]}
    counts = receipt.json()["counts"]
    assert counts["data_keys_destroyed"] == 1 and counts["recycle_bin_records_deleted"] == 1
    assert counts["blocklist_entries"] == 4  # email, former email, phone, mobile
    blocklist = await client.get("/v1/privacy/blocklist", headers=headers)
    assert len(blocklist.json()["data"]) == 4
    assert {entry["kind"] for entry in blocklist.json()["data"]} == {"email", "phone"}

    # Nothing of the subject anywhere: files (or a dump), tables, logs, API answers.
    values = subject.values()
    assert storage_hits(database_url, values) == {}
    assert await table_hits(app.state.engine, values) == {}
    assert hits(receipt.content + blocklist.content, values) == []
    assert hits(capfd.readouterr().err.encode(), values) == []

    # Re-entry refused: by email, by former email, by phone (written differently), as mobile.
    for module, payload in [
        ("leads", {"last_name": "Again", "email": subject.email.upper()}),
        ("contacts", {"last_name": "Again", "email": subject.former_email}),
        ("contacts", {"last_name": "Again", "phone": subject.phone.replace(" ", "")}),
        ("leads", {"last_name": "Again", "phone": subject.mobile}),
    ]:
        refused = await client.post(f"/v1/{module}", json=payload, headers=headers)
        problem = assert_problem(refused, 409)
        assert problem["type"].endswith("/blocklisted")
        assert hits(refused.content, values) == []
    async with app.state.sessionmaker() as session:
        assert await is_blocklisted(session, org.id, email=subject.email)
        assert await is_blocklisted(session, org.id, phone=subject.phone)
        assert not await is_blocklisted(session, org.id, email=unique_email())


async def test_erasure_needs_manage_privacy_and_names_a_subject(org: Org) -> None:
    standard = await org.add_user()
    lead = await org.client.post("/v1/leads", json={"last_name": "Kept"}, headers=org.headers)
    body = {"module": "leads", "record_id": lead.json()["id"]}
    refused = await org.client.post("/v1/privacy/erasures", json=body, headers=standard)
    assert_problem(refused, 403)
    assert (
        await org.client.get(f"/v1/leads/{lead.json()['id']}", headers=org.headers)
    ).status_code == 200
    for bad in [
        {},
        {"module": "leads"},
        {"email": "a@example.com", **body},
        {"module": "accounts", "record_id": lead.json()["id"]},
    ]:
        assert_problem(
            await org.client.post("/v1/privacy/erasures", json=bad, headers=org.headers), 422
        )
    unknown = {"module": "leads", "record_id": str(uuid.uuid4())}
    assert_problem(
        await org.client.post("/v1/privacy/erasures", json=unknown, headers=org.headers), 404
    )
    nobody = {"email": unique_email()}
    assert_problem(
        await org.client.post("/v1/privacy/erasures", json=nobody, headers=org.headers), 404
    )


async def test_another_organization_cannot_erase_or_read_receipts(org: Org, other_org: Org) -> None:
    lead = await org.client.post("/v1/leads", json={"last_name": "Mine"}, headers=org.headers)
    body = {"module": "leads", "record_id": lead.json()["id"]}
    assert_problem(
        await other_org.client.post("/v1/privacy/erasures", json=body, headers=other_org.headers),
        404,
    )
    [receipt_id] = await erase(org, body)
    assert_problem(
        await other_org.client.get(f"/v1/privacy/erasures/{receipt_id}", headers=other_org.headers),
        404,
    )
    entries = (await org.client.get("/v1/privacy/blocklist", headers=org.headers)).json()["data"]
    assert entries == []  # a lead without email or phone blocklists nothing


async def test_whom_to_erase_is_named_one_way_only(org: Org) -> None:
    lead = await org.client.post(
        "/v1/leads", json={"last_name": "Kept", "email": unique_email()}, headers=org.headers
    )
    assert lead.status_code == 201, lead.text
    for body in (
        {"email": None, "module": None, "record_id": lead.json()["id"]},
        {"module": "leads"},
        {"email": lead.json()["email"], "module": "leads", "record_id": lead.json()["id"]},
        {},
    ):
        refused = await org.client.post("/v1/privacy/erasures", json=body, headers=org.headers)
        assert_problem(refused, 422)
    kept = await org.client.get(f"/v1/leads/{lead.json()['id']}", headers=org.headers)
    assert kept.status_code == 200 and kept.json()["last_name"] == "Kept"
