"""Exports: `GET /v1/{module}/export?format=csv|ndjson`, streamed, audited, disclosed.

Parsed back with the csv and json modules; the profile's export operation, sharing, masking
and the export channel's compliance settings honoured; restricted and erased subjects left
out; spreadsheet formulas neutralised; a download cut mid-stream still audited, with the
number of rows that went out.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn

from crm_service.crypto.service import keyring_for
from crm_service.db.session import commit
from crm_service.records import export as export_module
from crm_service.records.contacts.repository import ContactRepository
from crm_service.records.models import ProcessingLockKind
from crm_service.records.repository import ProcessingLockRepository, RecordRepository
from tests.access.conftest import (
    MODULES,
    SENSITIVE_FIELD,
    add_member,
    audit_events,
    create_profile,
    create_record,
    set_sharing,
)
from tests.conftest import Org, assert_problem
from tests.records.test_processing_lock import subject_of

EVERYTHING = ["create", "read", "update", "delete", "export"]


async def export(org: Org, module: str, fmt: str, headers: dict[str, str] | None = None, **params):
    return await org.client.get(
        f"/v1/{module}/export", params={"format": fmt, **params}, headers=headers or org.headers
    )


def parse(fmt: str, response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    text = response.content.decode("utf-8")
    if fmt == "csv":
        assert response.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(text)))
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in text.splitlines()]


@contextlib.asynccontextmanager
async def served(org: Org) -> AsyncIterator[str]:
    """The organization's app behind a real HTTP server on loopback (an export's stream is
    seen as a client sees it: cut, or ended short); its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(org.app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving


async def exported_events(org: Org) -> list[dict[str, Any]]:
    return await audit_events(org, action="records.exported")


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
@pytest.mark.parametrize("module", MODULES)
async def test_an_export_holds_every_visible_record_and_is_audited_once(
    org: Org, module: str, fmt: str
) -> None:
    sensitive = SENSITIVE_FIELD[module]
    made = [await create_record(org, module, **{sensitive: f"ID {i}"}) for i in range(3)]
    rows = parse(fmt, await export(org, module, fmt))
    assert [row["id"] for row in rows] == [r["id"] for r in made]  # oldest first
    lookup = "name" if module == "accounts" else "email"
    assert [row[lookup] for row in rows] == [r[lookup] for r in made]
    assert [row[sensitive] for row in rows] == ["ID 0", "ID 1", "ID 2"]

    (event,) = await exported_events(org)
    assert event["target_type"] == module.removesuffix("s")
    assert lookup in event["fields"] and sensitive in event["fields"]
    assert event["reason"] == f"channel=export;format={fmt};rows=3;complete"
    assert event["outcome"] == "success"
    # Field names, never values.
    assert not any(r[lookup] in json.dumps(event) for r in made)


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
async def test_the_export_channel_withholds_what_the_settings_say(org: Org, fmt: str) -> None:
    record = await create_record(org, "contacts", national_id="AB 123", title="Engineer")
    for withhold, gone in (
        ([], set()),
        (["sensitive"], {"national_id"}),
        (["personal", "sensitive"], {"national_id", "email", "last_name", "phone"}),
    ):
        response = await org.client.put(
            "/v1/settings/compliance", json={"withhold": {"export": withhold}}, headers=org.headers
        )
        assert response.status_code == 200, response.text
        answer = await export(org, "contacts", fmt)
        withheld = set(filter(None, answer.headers["withheld-fields"].split(",")))
        assert gone <= withheld and ("email" in withheld) == ("personal" in withhold)
        (row,) = parse(fmt, answer)
        for name in withheld:
            assert name not in row  # absent, not empty or null
        if fmt == "ndjson":
            assert set(row["withheld_fields"]) == withheld
        assert row["title"] == "Engineer"
        assert "AB 123" not in answer.text if withhold else "AB 123" in answer.text
        assert (record["email"] in answer.text) == ("personal" not in withhold)
    events = await exported_events(org)
    assert "national_id" not in events[0]["fields"]  # newest first: the last export's fields


async def test_export_needs_the_profiles_export_operation(org: Org) -> None:
    await create_record(org, "contacts")
    standard = await create_profile(org, {"contacts": ["create", "read", "update", "delete"]})
    member = await add_member(org, profile_id=standard)
    assert_problem(await export(org, "contacts", "csv", member.headers), 403)
    assert await exported_events(org) == []


async def test_sharing_masking_and_filters_apply(org: Org) -> None:
    await set_sharing(org, "private")
    profile = await create_profile(org, {"contacts": EVERYTHING}, view_sensitive=False)
    member = await add_member(org, profile_id=profile)
    mine = await create_record(org, "contacts", owner_id=member.id, national_id="AB 1")
    also_mine = await create_record(org, "contacts", owner_id=member.id)
    await create_record(org, "contacts", national_id="NOT YOURS")  # the administrator's

    answer = await export(org, "contacts", "csv", member.headers)
    rows = parse("csv", answer)
    assert {row["id"] for row in rows} == {mine["id"], also_mine["id"]}
    assert answer.headers["masked-fields"] == "national_id"
    assert all(row["national_id"] == "" for row in rows)
    assert "AB 1" not in answer.text and "NOT YOURS" not in answer.text

    rows = parse(
        "ndjson", await export(org, "contacts", "ndjson", member.headers, email=mine["email"])
    )
    assert [row["id"] for row in rows] == [mine["id"]]
    assert rows[0]["national_id"] is None and rows[0]["masked_fields"] == ["national_id"]
    # Filtering on a field one may not see would tell its value: refused.
    assert_problem(await export(org, "contacts", "csv", member.headers, national_id="AB 1"), 422)


async def test_restricted_and_erased_subjects_are_left_out(org: Org) -> None:
    kept = await create_record(org, "contacts")
    restricted = await create_record(org, "contacts")
    erased = await create_record(org, "contacts")
    locked = await create_record(org, "contacts")  # locked (consent unanswered) still exports
    async with org.app.state.sessionmaker() as session:
        locks = ProcessingLockRepository(session, org.id)
        now = datetime.now(UTC)
        await locks.set(
            await subject_of(org, "contacts", restricted["id"]),
            ProcessingLockKind.RESTRICTED,
            reason="art18",
            since=now,
        )
        await locks.set(
            await subject_of(org, "contacts", locked["id"]),
            ProcessingLockKind.LOCKED,
            reason="consent",
            since=now,
        )
        await keyring_for(session, org.id).destroy_subject_keys(
            await subject_of(org, "contacts", erased["id"])
        )
        await commit(session)
    for fmt in ("csv", "ndjson"):
        answer = await export(org, "contacts", fmt)
        assert [row["id"] for row in parse(fmt, answer)] == [kept["id"], locked["id"]]
        assert restricted["email"] not in answer.text
    assert (await exported_events(org))[0]["reason"].endswith("rows=2;complete")


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
async def test_spreadsheet_formulas_are_neutralised(org: Org, start: str) -> None:
    title = f"{start}HYPERLINK(1)"
    if start in "\t\r":
        # Not a single-line value: the API refuses it, so it comes in through the storage.
        record = await create_record(org, "contacts")
        async with org.app.state.sessionmaker() as session:
            contact = await ContactRepository(session, org.id).get(uuid.UUID(record["id"]))
            assert contact is not None
            contact.title = title
            await ContactRepository(session, org.id).save(contact)
            await commit(session)
    else:
        await create_record(org, "contacts", title=title)
    (row,) = parse("csv", await export(org, "contacts", "csv"))
    assert row["title"] == "'" + title
    # NDJSON is no spreadsheet: the value as it is.
    (item,) = parse("ndjson", await export(org, "contacts", "ndjson"))
    assert item["title"] == title


async def test_a_download_cut_mid_stream_is_audited_with_the_rows_sent(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(5):
        await create_record(org, "contacts")
    monkeypatch.setattr(export_module, "BATCH_SIZE", 2)
    batches = 0
    original = RecordRepository.export_batch

    async def slow_after_first(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal batches
        batches += 1
        if batches > 1:
            await asyncio.sleep(60)  # the client goes away meanwhile
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(RecordRepository, "export_batch", slow_after_first)
    async with served(org) as base_url:
        received = b""
        async with httpx.AsyncClient(base_url=base_url) as http:
            async with http.stream(
                "GET", "/v1/contacts/export?format=csv", headers=org.headers
            ) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_raw():
                    received += chunk
                    if received.count(b"\r\n") >= 3:  # the header row and the first batch
                        break
        # The client has hung up; the server notices and writes its audit event.
        for _ in range(500):
            events = await exported_events(org)
            if events:
                break
            await asyncio.sleep(0.02)
        (event,) = events
        assert event["reason"] == "channel=export;format=csv;rows=2;cut"
        assert event["outcome"] == "failure"


async def test_a_tampered_value_cuts_the_export_before_anything_of_its_batch_leaves(
    org: Org,
) -> None:
    """A value altered in the database fails the export closed (the stored-data integrity
    error, as a GET would): nothing of the batch holding it is sent, and the audit event
    says the export was cut after the rows that did go out."""
    from sqlalchemy import text

    from tests.crypto.test_tamper import _id, _store, _stored

    kept = await create_record(org, "contacts", last_name="Keptname")
    broken = await create_record(org, "contacts", last_name="Brokenname")
    stored = bytearray(await _stored(org.app, "last_name", broken["id"]))
    stored[-3] ^= 0x01
    await _store(org.app, "last_name", broken["id"], bytes(stored))
    received = b""
    async with served(org) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        async with http.stream(
            "GET", "/v1/contacts/export?format=csv", headers=org.headers
        ) as response:
            assert response.status_code == 200  # sent before the first batch was read
            with pytest.raises(httpx.RemoteProtocolError):  # the body ends short
                async for chunk in response.aiter_raw():
                    received += chunk
    assert received.count(b"\r\n") == 1  # the header row, and nothing of the batch
    assert b"Keptname" not in received and b"Brokenname" not in received
    (event,) = await exported_events(org)
    assert event["outcome"] == "failure"
    assert event["reason"] == "channel=export;format=csv;rows=0;cut"
    # The untouched record still reads; the broken one fails closed on its own too.
    assert (
        await org.client.get(f"/v1/contacts/{kept['id']}", headers=org.headers)
    ).status_code == 200
    async with org.app.state.engine.connect() as connection:
        count = (
            await connection.execute(
                text("SELECT count(*) FROM contacts WHERE id = :id"),
                {"id": _id(org.app, broken["id"])},
            )
        ).scalar_one()
    assert count == 1  # nothing was changed by the failed export
