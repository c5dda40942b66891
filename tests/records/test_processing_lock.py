"""The processing lock: a lead or contact whose data subject is locked (a consent request went
unanswered) or restricted (GDPR Art. 18) refuses every change with 423 and changes nothing.

The state is set and lifted through `ProcessingLockRepository`, as the consent and privacy
features will. Update, delete, legal basis, share, unshare, conversion, and restore and purge
from the recycle bin each answer 423 with the problem type of the state and a detail saying
why and how it ends; the record, its shares, its legal basis, its history and the audit log
stay as they were. Reading it still works (for a restricted subject only with the right
`view_restricted`, which the administrator holds, and audited: tests/privacy shows the reads).
Lifting the state lets the changes through. A lead and the contact it became are one subject;
accounts are none.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from crm_service.db.session import commit
from crm_service.records.contacts.models import Contact
from crm_service.records.leads.models import Lead
from crm_service.records.models import ProcessingLockKind
from crm_service.records.repository import ProcessingLockRepository
from tests.access.conftest import PERSON_MODULES, audit_events, create_group, create_record
from tests.conftest import Org, assert_problem, count_rows

PROBLEM_TYPE = {
    "locked": "tag:crm-service,2026:problems/processing-locked",
    "restricted": "tag:crm-service,2026:problems/processing-restricted",
}
REASON = {"locked": "consent_unanswered", "restricted": "accuracy_contested"}
MODELS = {"leads": Lead, "contacts": Contact}
KINDS = list(PROBLEM_TYPE)


# --- setting the state, as the consent and privacy features will -----------------------------


async def subject_of(org: Org, module: str, record_id: str) -> uuid.UUID:
    async with org.app.state.sessionmaker() as session:
        record = await session.get(MODELS[module], uuid.UUID(record_id))
        assert record is not None
        return record.subject_id


async def lock(org: Org, module: str, record_id: str, kind: str) -> None:
    subject_id = await subject_of(org, module, record_id)
    async with org.app.state.sessionmaker() as session:
        await ProcessingLockRepository(session, org.id).set(
            subject_id,
            ProcessingLockKind(kind),
            reason=REASON[kind],
            since=datetime.now(UTC),
            request_id=uuid.uuid4(),
        )
        await commit(session)


async def lift(org: Org, module: str, record_id: str, kind: str) -> None:
    subject_id = await subject_of(org, module, record_id)
    async with org.app.state.sessionmaker() as session:
        assert await ProcessingLockRepository(session, org.id).lift(
            subject_id, ProcessingLockKind(kind)
        )
        await commit(session)


# --- a record with something of everything -----------------------------------------------------


@dataclass(frozen=True)
class Subject:
    org: Org
    module: str
    record: dict[str, Any]
    shared_group: str  # the record is shared with it
    other_group: str  # it is not

    @property
    def path(self) -> str:
        return f"/v1/{self.module}/{self.record['id']}"


async def subject(org: Org, module: str) -> Subject:
    # A lead with a company, so that converting it would create an account too.
    extra = {"company": "Engines Ltd"} if module == "leads" else {}
    record = await create_record(org, module, legal_basis={"basis": "consent"}, **extra)
    shared, other = await create_group(org, []), await create_group(org, [])
    put = await org.client.put(
        f"/v1/{module}/{record['id']}/shares/{shared}",
        json={"access": "read_only"},
        headers=org.headers,
    )
    assert put.status_code == 200, put.text
    return Subject(org, module, record, shared, other)


async def as_stored(s: Subject) -> dict[str, Any]:
    """What an administrator reads of the record and what hangs off it, and the counts a
    conversion or a delete would move."""
    org, headers = s.org, s.org.headers
    got = await org.client.get(s.path, headers=headers)
    assert got.status_code == 200, got.text
    parts = {"record": got.json(), "etag": got.headers["ETag"]}
    for name in ("shares", "legal-basis", "history"):
        response = await org.client.get(f"{s.path}/{name}", headers=headers)
        assert response.status_code == 200, response.text
        parts[name] = response.json()
    for table in ("leads", "contacts", "accounts", "legal_basis_entries", "record_shares"):
        parts[table] = await count_rows(org.app, table, org.id)
    # Reading a restricted subject's record is audited; only changes are counted here.
    parts["audit events"] = len(
        [e for e in await audit_events(org) if e["action"] != "record.restricted_read"]
    )
    return parts


# --- the changes -------------------------------------------------------------------------------

Attempt = Callable[[Subject], Awaitable[httpx.Response]]


async def update(s: Subject) -> httpx.Response:
    return await s.org.client.patch(s.path, json={"title": "Engineer"}, headers=s.org.headers)


async def set_legal_basis(s: Subject) -> httpx.Response:
    # Consent again: an administrator recording another basis is the one change that ends a
    # consent lock (tests/consent/test_requests.py shows it).
    return await s.org.client.put(
        f"{s.path}/legal-basis", json={"basis": "consent"}, headers=s.org.headers
    )


async def share(s: Subject) -> httpx.Response:
    return await s.org.client.put(
        f"{s.path}/shares/{s.other_group}", json={"access": "read_write"}, headers=s.org.headers
    )


async def unshare(s: Subject) -> httpx.Response:
    return await s.org.client.delete(f"{s.path}/shares/{s.shared_group}", headers=s.org.headers)


async def convert(s: Subject) -> httpx.Response:
    return await s.org.client.post(f"{s.path}/convert", json={}, headers=s.org.headers)


async def delete(s: Subject) -> httpx.Response:
    return await s.org.client.delete(s.path, headers=s.org.headers)


# In an order that works once unlocked: conversion before the delete.
CHANGES: dict[str, Attempt] = {
    "share": share,
    "unshare": unshare,
    "legal basis": set_legal_basis,
    "update": update,
    "convert": convert,
    "delete": delete,
}


def changes_of(module: str) -> dict[str, Attempt]:
    return {
        name: attempt for name, attempt in CHANGES.items() if module == "leads" or name != "convert"
    }


def assert_refused(response: httpx.Response, kind: str, s: Subject) -> None:
    problem = assert_problem(response, 423)
    assert problem["type"] == PROBLEM_TYPE[kind]
    detail = problem["detail"]
    assert REASON[kind] in detail, "why"
    assert "ends when" in detail, "how it ends"
    assert s.record["last_name"] not in detail and s.record["email"] not in detail


# --- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("module", PERSON_MODULES)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_locked_subject_refuses_every_change_and_lifting_lets_them_through(
    org: Org, module: str, kind: str
) -> None:
    s = await subject(org, module)
    await lock(org, module, s.record["id"], kind)
    before = await as_stored(s)

    for name, attempt in changes_of(module).items():
        response = await attempt(s)
        assert response.status_code == 423, (name, response.text)
        assert_refused(response, kind, s)

    assert await as_stored(s) == before, "nothing changed, nothing was audited"
    # Reading is no change.
    read = await org.client.get(s.path, headers=org.headers)
    assert read.status_code == 200 and read.json() == before["record"]

    await lift(org, module, s.record["id"], kind)
    for name, attempt in changes_of(module).items():
        response = await attempt(s)
        assert response.status_code < 300, (name, response.text)
    assert (await org.client.get(s.path, headers=org.headers)).status_code == 404, "deleted"


@pytest.mark.parametrize("kind", KINDS)
async def test_the_lead_and_the_contact_it_became_are_locked_together(org: Org, kind: str) -> None:
    lead = await create_record(org, "leads")
    converted = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json={}, headers=org.headers
    )
    assert converted.status_code == 201, converted.text
    contact = converted.json()["contact"]

    await lock(org, "leads", lead["id"], kind)

    refused = await org.client.patch(
        f"/v1/contacts/{contact['id']}", json={"title": "Engineer"}, headers=org.headers
    )
    assert assert_problem(refused, 423)["type"] == PROBLEM_TYPE[kind]
    # Another data subject is not touched by it.
    other = await create_record(org, "contacts")
    changed = await org.client.patch(
        f"/v1/contacts/{other['id']}", json={"title": "Engineer"}, headers=org.headers
    )
    assert changed.status_code == 200, changed.text


async def test_restricted_outranks_locked_and_each_is_lifted_on_its_own(org: Org) -> None:
    s = await subject(org, "contacts")
    await lock(org, "contacts", s.record["id"], "locked")
    await lock(org, "contacts", s.record["id"], "restricted")

    assert_refused(await update(s), "restricted", s)
    await lift(org, "contacts", s.record["id"], "restricted")
    assert_refused(await update(s), "locked", s)
    await lift(org, "contacts", s.record["id"], "locked")
    assert (await update(s)).status_code == 200


@pytest.mark.parametrize("module", PERSON_MODULES)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_binned_record_of_a_locked_subject_is_neither_restored_nor_purged(
    org: Org, module: str, kind: str
) -> None:
    record = await create_record(org, module)
    assert (
        await org.client.delete(f"/v1/{module}/{record['id']}", headers=org.headers)
    ).status_code == 204
    await lock(org, module, record["id"], kind)
    bin_path = f"/v1/recycle-bin/{module}/{record['id']}"

    restored = await org.client.post(f"{bin_path}/restore", headers=org.headers)
    purged = await org.client.delete(bin_path, headers=org.headers)

    for response in (restored, purged):
        assert assert_problem(response, 423)["type"] == PROBLEM_TYPE[kind]
    listed = await org.client.get("/v1/recycle-bin", headers=org.headers)
    # Still in the bin; a restricted subject's record is kept there but not listed.
    assert (record["id"] in [entry["id"] for entry in listed.json()["data"]]) == (kind == "locked")

    await lift(org, module, record["id"], kind)
    assert (await org.client.post(f"{bin_path}/restore", headers=org.headers)).status_code == 204
    assert (
        await org.client.get(f"/v1/{module}/{record['id']}", headers=org.headers)
    ).status_code == 200


async def test_an_account_is_no_data_subject_and_stays_changeable(org: Org) -> None:
    account = await create_record(org, "accounts")
    contact = await create_record(org, "contacts", account_id=account["id"])
    await lock(org, "contacts", contact["id"], "restricted")
    group = await create_group(org, [])
    path = f"/v1/accounts/{account['id']}"

    assert (
        await org.client.patch(path, json={"industry": "Looms"}, headers=org.headers)
    ).status_code == 200
    shared = await org.client.put(
        f"{path}/shares/{group}", json={"access": "read_only"}, headers=org.headers
    )
    assert shared.status_code == 200, shared.text
    assert (
        await org.client.delete(f"{path}/shares/{group}", headers=org.headers)
    ).status_code == 204
    assert (await org.client.delete(path, headers=org.headers)).status_code == 204
