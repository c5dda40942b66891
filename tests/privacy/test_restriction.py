"""Restriction of processing (GDPR Art. 18): a restricted subject's records are stored, not
processed.

- Every route that discloses one lead's or contact's data answers 423 `processing-restricted`
  (problem+json, no values) to a caller without `view_restricted`, and the data with an audit
  event `record.restricted_read` to one with it.
- Lists, filters, searches, related lists, exports and the recycle bin leave the subject's
  records out, for every caller, with full keyset pages.
- Every change answers 423, and no webhook event is queued for the subject, whatever emits it;
  nor is a consent reminder mailed to them.
- A plain read by id checks the restriction in the statement that loads the record.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from crm_service.db.session import commit
from crm_service.kit.modules import Module
from crm_service.records.events import RecordEventKind, emit
from tests.access.conftest import (
    MAX_PAGE,
    PERSON_MODULES,
    audit_events,
    create_record,
    listed_ids,
    searched_ids,
)
from tests.conftest import Org, assert_problem, count_rows
from tests.consent.conftest import create_purpose, mails, run_job
from tests.integrations.conftest import Receiver, create_webhook, deliver, receiver  # noqa: F401
from tests.privacy.restricting import (
    MODELS,
    RESTRICTED_TYPE,
    Person,
    Readers,
    person,
    readers,
    restrict,
)

Read = Callable[[Person, dict[str, str]], Awaitable[httpx.Response]]


def _get(suffix: str) -> Read:
    async def read(p: Person, headers: dict[str, str]) -> httpx.Response:
        return await p.org.client.get(p.path + suffix, headers=headers)

    return read


async def _receipt(p: Person, headers: dict[str, str]) -> httpx.Response:
    return await p.org.client.get(
        f"{p.path}/consents/{p.consent_event_id}/receipt", headers=headers
    )


# Every route under records/ and consent/ that answers one lead's or contact's data, and the
# `reason` its restricted read is audited with. (Leads have no conversion preview: converting
# is a change, in the table of changes below.)
READS: dict[str, tuple[Read, str]] = {
    "record": (_get(""), "record"),
    "history": (_get("/history"), "history"),
    "shares": (_get("/shares"), "shares"),
    "legal basis": (_get("/legal-basis"), "legal_basis"),
    "consent ledger": (_get("/consents"), "consents"),
    "consent receipt": (_receipt, "consent_receipt"),
}


async def setup(org: Org, module: str) -> tuple[Person, Person, Readers]:
    purpose = (await create_purpose(org))["key"]
    restricted = await person(org, module, purpose)
    other = await person(org, module, purpose)
    who = await readers(org)
    await restrict(org, module, restricted.id)
    return restricted, other, who


def assert_restricted(response: httpx.Response, p: Person) -> None:
    problem = assert_problem(response, 423)
    assert problem["type"] == RESTRICTED_TYPE
    for value in (p.record["last_name"], p.record["email"], p.record["title"]):
        assert value not in response.text


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_every_read_of_one_record_is_423_without_view_restricted_and_audited_with_it(
    org: Org, module: str
) -> None:
    restricted, other, who = await setup(org, module)

    for name, (read, reason) in READS.items():
        refused = await read(restricted, who.standard.headers)
        assert refused.status_code == 423, (name, refused.text)
        assert_restricted(refused, restricted)
        # Another subject reads as before, with no such audit.
        assert (await read(other, who.standard.headers)).status_code == 200, name

        allowed = await read(restricted, who.reviewer.headers)
        assert allowed.status_code == 200, (name, allowed.text)
        reads = await audit_events(org, action="record.restricted_read")
        assert reads[0]["actor_id"] == who.reviewer.id, name
        assert reads[0]["target_id"] == restricted.id and reads[0]["reason"] == reason, name
        assert reads[0]["target_type"] == module[:-1]
    shown = await READS["record"][0](restricted, who.reviewer.headers)
    assert shown.json()["email"] == restricted.record["email"], "the data, when allowed"

    reads = await audit_events(org, action="record.restricted_read")
    assert len(reads) == len(READS) + 1, "one event per allowed read, none for refused ones"
    assert {e["target_id"] for e in reads} == {restricted.id}


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_lists_searches_exports_and_the_recycle_bin_leave_a_restricted_subject_out(
    org: Org, module: str
) -> None:
    account = await create_record(org, "accounts")
    at_account = {"account_id": account["id"]} if module == "contacts" else {}
    kept = await create_record(org, module, **at_account)
    hidden = await create_record(org, module, **at_account)
    binned_kept = await create_record(org, module)
    binned_hidden = await create_record(org, module)
    for binned in (binned_kept, binned_hidden):
        deleted = await org.client.delete(f"/v1/{module}/{binned['id']}", headers=org.headers)
        assert deleted.status_code == 204
    who = await readers(org)
    await restrict(org, module, hidden["id"])
    await restrict(org, module, binned_hidden["id"])

    # The administrator holds view_restricted: lists hide the subject from them too.
    for headers in (org.headers, who.standard.headers, who.reviewer.headers):
        listed = await listed_ids(org, module, headers)
        assert kept["id"] in listed and hidden["id"] not in listed
        for lookup in (listed_ids, searched_ids):
            assert await lookup(org, module, headers, email=hidden["email"]) == []
            assert await lookup(org, module, headers, email=kept["email"]) == [kept["id"]]
        if module == "contacts":  # the account's contacts
            related = await listed_ids(org, module, headers, account_id=account["id"])
            assert related == [kept["id"]]

        in_bin = await org.client.get(
            "/v1/recycle-bin", params={"limit": MAX_PAGE, "module": module}, headers=headers
        )
        assert in_bin.status_code == 200, in_bin.text
        binned = [entry["id"] for entry in in_bin.json()["data"]]
        assert binned_kept["id"] in binned and binned_hidden["id"] not in binned

    for fmt in ("csv", "ndjson"):
        exported = await org.client.get(
            f"/v1/{module}/export", params={"format": fmt}, headers=org.headers
        )
        assert exported.status_code == 200, exported.text
        assert kept["email"] in exported.text
        assert hidden["email"] not in exported.text and hidden["id"] not in exported.text
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(exported.text)))
            assert [row["id"] for row in rows] == [kept["id"]]


async def test_keyset_pages_stay_full_around_a_restricted_subject(org: Org) -> None:
    created = [await create_record(org, "contacts") for _ in range(5)]
    for hidden in (created[1], created[3]):
        await restrict(org, "contacts", hidden["id"])

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor is not None:
            params["cursor"] = cursor
        page = await org.client.get("/v1/contacts", params=params, headers=org.headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["data"]) == 1, "no page comes back short or empty"
        seen += [item["id"] for item in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [created[4]["id"], created[2]["id"], created[0]["id"]]


# --- changes -----------------------------------------------------------------------------------

Change = Callable[[Person], Awaitable[httpx.Response]]


async def _update(p: Person) -> httpx.Response:
    return await p.org.client.patch(p.path, json={"title": "Director"}, headers=p.org.headers)


async def _delete(p: Person) -> httpx.Response:
    return await p.org.client.delete(p.path, headers=p.org.headers)


async def _legal_basis(p: Person) -> httpx.Response:
    return await p.org.client.put(
        f"{p.path}/legal-basis", json={"basis": "contract"}, headers=p.org.headers
    )


async def _share(p: Person) -> httpx.Response:
    return await p.org.client.put(
        f"{p.path}/shares/{p.group_id}", json={"access": "read_write"}, headers=p.org.headers
    )


async def _unshare(p: Person) -> httpx.Response:
    return await p.org.client.delete(f"{p.path}/shares/{p.group_id}", headers=p.org.headers)


async def _convert(p: Person) -> httpx.Response:
    return await p.org.client.post(f"{p.path}/convert", json={}, headers=p.org.headers)


async def _consent_request(p: Person) -> httpx.Response:
    return await p.org.client.post(
        "/v1/consent/requests",
        json={
            "module": p.module,
            "record_id": p.id,
            "purposes": [p.purpose],
            "channel": "email",
            "deadline": "2099-01-01T00:00:00Z",
        },
        headers=p.org.headers,
    )


async def _consent_grant(p: Person) -> httpx.Response:
    return await p.org.client.post(
        f"{p.path}/consents",
        json={"purpose": p.purpose, "status": "granted", "channel": "phone"},
        headers=p.org.headers,
    )


CHANGES: dict[str, Change] = {
    "update": _update,
    "legal basis": _legal_basis,
    "share": _share,
    "unshare": _unshare,
    "convert": _convert,
    "consent request": _consent_request,
    "consent granted": _consent_grant,
    "delete": _delete,
}


@contextmanager
def statements(org: Org) -> Iterator[list[str]]:
    """The SQL the app sends while the block runs."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    engine = org.app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_every_change_is_423_and_no_webhook_event_is_queued_for_the_subject(
    org: Org,
    module: str,
    receiver: Receiver,  # noqa: F811
) -> None:
    purpose = (await create_purpose(org))["key"]
    restricted = await person(org, module, purpose)
    other = await person(org, module, purpose)
    kinds = [k for k in RecordEventKind if k is not RecordEventKind.CONVERTED or module == "leads"]
    await create_webhook(org, receiver.url, [f"{module[:-1]}.{kind.value}" for kind in kinds])
    await restrict(org, module, restricted.id)
    before = await org.client.get(restricted.path, headers=org.headers)

    for name, change in CHANGES.items():
        if name == "convert" and module != "leads":
            continue
        refused = await change(restricted)
        assert refused.status_code == 423, (name, refused.text)
        assert_restricted(refused, restricted)
    after = await org.client.get(restricted.path, headers=org.headers)
    assert after.json() == before.json() and after.headers["ETag"] == before.headers["ETag"]
    # A withdrawal is always recorded: it only narrows what is done with the data.
    withdrawn = await org.client.post(
        f"{restricted.path}/consents",
        json={"purpose": purpose, "status": "withdrawn", "channel": "phone"},
        headers=org.headers,
    )
    assert withdrawn.status_code == 201, withdrawn.text

    # Whatever path emits an event of the subject (here straight through the seam), none is
    # queued; another subject's is.
    async with org.app.state.sessionmaker() as session:
        for p in (restricted, other):
            record = await session.get(MODELS[module], uuid.UUID(p.id))
            for kind in (RecordEventKind.UPDATED, RecordEventKind.DELETED):
                await emit(session, Module(module), kind, record)
        await commit(session)
    assert await count_rows(org.app, "webhook_events", org.id) == 2
    assert await deliver(org) == 2
    assert {r.body.count(other.id.encode()) > 0 for r in receiver.received} == {True}
    assert not any(restricted.id.encode() in r.body for r in receiver.received)


async def test_a_read_by_id_checks_the_restriction_in_the_statement_that_loads_the_record(
    org: Org,
) -> None:
    plain = await create_record(org, "contacts")
    hidden = await create_record(org, "contacts")
    await restrict(org, "contacts", hidden["id"])

    for record in (plain, hidden):
        with statements(org) as sent:
            got = await org.client.get(f"/v1/contacts/{record['id']}", headers=org.headers)
        assert got.status_code == 200, got.text
        about_locks = [s for s in sent if "subject_processing_locks" in s]
        assert len(about_locks) == 1, "asked once"
        assert "FROM contacts" in about_locks[0], "in the statement that loads the contact"


async def test_a_restricted_subject_is_not_reminded_of_a_consent_request(org: Org) -> None:
    purpose = (await create_purpose(org))["key"]
    restricted = await create_record(org, "contacts")
    other = await create_record(org, "contacts")
    deadline = datetime.now(UTC) + timedelta(days=5)
    for record in (restricted, other):
        asked = await org.client.post(
            "/v1/consent/requests",
            json={
                "module": "contacts",
                "record_id": record["id"],
                "purposes": [purpose],
                "channel": "email",
                "deadline": deadline.isoformat(),
            },
            headers=org.headers,
        )
        assert asked.status_code == 201, asked.text
    await restrict(org, "contacts", restricted["id"])

    await run_job(org.app, "consent_reminders", deadline - timedelta(hours=23))

    reminded = [mail.to for mail in await mails(org.app, org.id, "consent_reminder")]
    assert reminded == [other["email"]]
