"""`crm-service audit verify` as an operator runs it, against a log someone tampered with.

A real log is produced once per database by driving the HTTP API (records created, changed
and deleted, sign-ins, a failed sign-in). Each test then works on its own copy of that
database: it edits, removes, inserts or reorders rows straight in SQL, as someone with
database access but without the service's keys would, and runs the installed command. An
intact log exits 0; a tampered one exits 1 and names the chain and the first bad event.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from crm_service.audit.models import AuditChain, AuditEvent
from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.main import create_app
from tests.conftest import (
    MASTER_KEY,
    POSTGRES_ADMIN_URL,
    Org,
    TestDatabases,
    make_settings,
    new_org,
)

CRM_SERVICE = Path(sys.executable).parent / "crm-service"
COMMAND_TIMEOUT = 60
KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
EVENTS = AuditEvent.__table__
CHAINS = AuditChain.__table__
BROKEN = re.compile(
    r"^BROKEN organization (?P<org>[0-9a-f-]+)(?: chain (?P<shard>\d+))?: "
    r"(?:event (?P<event>\S+) \(seq (?P<seq>-?\d+)\): )?(?P<problem>.+)$"
)


@dataclass(frozen=True)
class Log:
    """A database holding a real audit log of two organizations."""

    kind: str
    url: str
    org_id: uuid.UUID
    other_org_id: uuid.UUID


@dataclass(frozen=True)
class Break:
    org_id: uuid.UUID
    shard: int | None  # None: the organization as a whole
    event_id: uuid.UUID | None
    seq: int | None
    problem: str


# --- producing a log -------------------------------------------------------------------------


async def drive(org: Org, contacts: int) -> None:
    """What a working day leaves in the log: records written, sign-ins, a wrong password."""
    ids = []
    for number in range(contacts):
        created = await org.client.post(
            "/v1/contacts",
            json={"first_name": f"Ada{number}", "last_name": "Lovelace", "title": "Analyst"},
            headers=org.headers,
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    for contact_id in ids[: contacts // 2]:
        changed = await org.client.patch(
            f"/v1/contacts/{contact_id}", json={"title": "Engineer"}, headers=org.headers
        )
        assert changed.status_code == 200, changed.text
    for contact_id in ids[: contacts // 4]:
        deleted = await org.client.delete(f"/v1/contacts/{contact_id}", headers=org.headers)
        assert deleted.status_code == 204, deleted.text
    # Two national ids shown by one list page: one reveal event listing both contacts.
    for number in range(2):
        created = await org.client.post(
            "/v1/contacts",
            json={"last_name": f"Byron{number}", "national_id": f"NI{number}{contacts}"},
            headers=org.headers,
        )
        assert created.status_code == 201, created.text
    listed = await org.client.get("/v1/contacts", headers=org.headers)
    assert listed.status_code == 200, listed.text
    await org.login(org.admin_email)
    await org.login(org.admin_email)
    wrong = await org.client.post(
        "/v1/auth/login", json={"email": org.admin_email, "password": "not the password"}
    )
    assert wrong.status_code == 401


@pytest.fixture(scope="module", params=KINDS)
async def golden(request: pytest.FixtureRequest, databases: TestDatabases) -> Log:
    url = await databases.new(request.param)
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    application = create_app(make_settings(url))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            org = await new_org(application, http)
            other = await new_org(application, http)
            # 27+ events over 8 chains: some chain holds at least 4 (pigeonhole).
            await drive(org, contacts=12)
            await drive(other, contacts=3)
    return Log(request.param, url, org.id, other.id)


async def copy_of(golden: Log, databases: TestDatabases) -> Log:
    """A fresh database holding exactly the golden log."""
    if golden.kind == "sqlite":
        source_path = golden.url.split("///", 1)[1]
        url = await databases.new("sqlite")
        with (
            sqlite3.connect(source_path) as source,
            sqlite3.connect(url.split("///", 1)[1]) as copy,
        ):
            source.backup(copy)
        source.close()
        copy.close()
    else:
        name = f"crm_test_{uuid.uuid4().hex[:12]}"
        template = golden.url.rsplit("/", 1)[1]
        admin = make_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as connection:
                await connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        finally:
            await admin.dispose()
        databases.created_pg.append(name)
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    return Log(golden.kind, url, golden.org_id, golden.other_org_id)


@pytest.fixture
async def log(golden: Log, databases: TestDatabases) -> Log:
    return await copy_of(golden, databases)


# --- reading and tampering -------------------------------------------------------------------


async def chains_of(log: Log, org_id: uuid.UUID | None = None) -> dict[int, list[dict[str, Any]]]:
    """One organization's events by chain, in chain order."""
    engine = make_engine(log.url)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(EVENTS)
                    .where(EVENTS.c.organization_id == (org_id or log.org_id))
                    .order_by(EVENTS.c.shard, EVENTS.c.seq)
                )
            ).mappings()
            by_chain: dict[int, list[dict[str, Any]]] = {}
            for row in rows:
                by_chain.setdefault(row["shard"], []).append(dict(row))
            return by_chain
    finally:
        await engine.dispose()


async def longest_chain(log: Log) -> tuple[int, list[dict[str, Any]]]:
    by_chain = await chains_of(log)
    shard = max(by_chain, key=lambda s: len(by_chain[s]))
    events = by_chain[shard]
    assert len(events) >= 4, "the golden log should hold a chain of at least 4 events"
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    return shard, events


async def tamper(log: Log, *statements: Any) -> None:
    engine = make_engine(log.url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(statement)
    finally:
        await engine.dispose()


def the_event(row: dict[str, Any]) -> Any:
    return EVENTS.c.id == row["id"]


def the_head(log: Log, shard: int) -> Any:
    return (CHAINS.c.organization_id == log.org_id) & (CHAINS.c.shard == shard)


# --- the command -----------------------------------------------------------------------------


def verify(log: Log, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    env.update(CRM_DATABASE_URL=log.url, CRM_MASTER_KEY=MASTER_KEY)
    result = subprocess.run(
        [str(CRM_SERVICE), "audit", "verify"],
        check=False,
        cwd=cwd,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def breaks(result: subprocess.CompletedProcess[str]) -> list[Break]:
    found = []
    for line in result.stdout.splitlines():
        if not line.startswith("BROKEN"):
            continue
        match = BROKEN.match(line)
        assert match, f"unexpected line: {line!r}"
        found.append(
            Break(
                org_id=uuid.UUID(match["org"]),
                shard=int(match["shard"]) if match["shard"] else None,
                event_id=uuid.UUID(match["event"]) if match["event"] else None,
                seq=int(match["seq"]) if match["seq"] else None,
                problem=match["problem"],
            )
        )
    return found


def assert_one_break(result: subprocess.CompletedProcess[str], log: Log, shard: int) -> Break:
    """Exit 1 and exactly one broken chain: `shard` of the tampered organization (so the
    other organization's log, untouched, is not reported)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    found = breaks(result)
    assert len(found) == 1, result.stdout
    (chain_break,) = found
    assert (chain_break.org_id, chain_break.shard) == (log.org_id, shard), result.stdout
    assert "chain(s) broken" in result.stderr
    return chain_break


# --- an intact log ---------------------------------------------------------------------------


async def test_an_untouched_log_verifies_intact(log: Log, tmp_path: Path) -> None:
    result = verify(log, tmp_path)
    assert result.returncode == 0, (result.stdout, result.stderr)
    engine = make_engine(log.url)
    async with engine.connect() as connection:
        events = (
            await connection.execute(select(text("count(*)")).select_from(EVENTS))
        ).scalar_one()
        chains = (
            await connection.execute(select(text("count(*)")).select_from(CHAINS))
        ).scalar_one()
    await engine.dispose()
    assert events >= 27 + 2
    assert chains > 1
    assert result.stdout.strip() == f"{events} audit events in {chains} chains: intact"
    assert "BROKEN" not in result.stdout


# --- edited events ---------------------------------------------------------------------------


def _other_action(row: dict[str, Any]) -> dict[str, Any]:
    return {"action": "record.deleted" if row["action"] != "record.deleted" else "record.created"}


def _other_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {"fields": json.dumps([]) if json.loads(row["fields"]) else json.dumps(["email"])}


def _other_target(row: dict[str, Any]) -> dict[str, Any]:
    return {"target_id": str(uuid.uuid4())}


def _earlier(row: dict[str, Any]) -> dict[str, Any]:
    return {"occurred_at": row["occurred_at"] - timedelta(days=3)}


@pytest.mark.parametrize(
    "edit",
    [_other_action, _other_fields, _other_target, _earlier],
    ids=["action", "fields", "target_id", "occurred_at"],
)
async def test_an_edited_event_is_named(log: Log, tmp_path: Path, edit: Any) -> None:
    shard, events = await longest_chain(log)
    victim = events[1]
    await tamper(log, update(EVENTS).where(the_event(victim)).values(**edit(victim)))

    chain_break = assert_one_break(verify(log, tmp_path), log, shard)
    assert (chain_break.event_id, chain_break.seq) == (victim["id"], victim["seq"])
    assert "MAC does not match" in chain_break.problem


async def test_a_record_left_out_of_a_reveal_event_is_named(log: Log, tmp_path: Path) -> None:
    """Hiding that a value was shown, by dropping the record from the event that lists it."""
    by_chain = await chains_of(log)
    [(shard, victim)] = [
        (shard, event)
        for shard, events in by_chain.items()
        for event in events
        if event["target_ids"]
    ]
    listed = json.loads(victim["target_ids"])
    assert len(listed) == 2
    await tamper(
        log, update(EVENTS).where(the_event(victim)).values(target_ids=json.dumps(listed[1:]))
    )

    chain_break = assert_one_break(verify(log, tmp_path), log, shard)
    assert chain_break.event_id == victim["id"]
    assert "MAC does not match" in chain_break.problem


async def test_target_ids_added_to_an_event_that_had_none_are_named(
    log: Log, tmp_path: Path
) -> None:
    shard, events = await longest_chain(log)
    victim = next(event for event in events if event["target_ids"] is None)
    await tamper(
        log,
        update(EVENTS).where(the_event(victim)).values(target_ids=json.dumps([str(uuid.uuid4())])),
    )

    chain_break = assert_one_break(verify(log, tmp_path), log, shard)
    assert chain_break.event_id == victim["id"]


# --- removed events --------------------------------------------------------------------------


async def test_an_event_deleted_from_the_middle_names_the_event_after_the_gap(
    log: Log, tmp_path: Path
) -> None:
    shard, events = await longest_chain(log)
    await tamper(log, delete(EVENTS).where(the_event(events[1])))

    chain_break = assert_one_break(verify(log, tmp_path), log, shard)
    assert (chain_break.event_id, chain_break.seq) == (events[2]["id"], events[2]["seq"])
    assert "missing" in chain_break.problem


async def test_a_truncated_tail_is_detected(log: Log, tmp_path: Path) -> None:
    shard, events = await longest_chain(log)
    await tamper(log, delete(EVENTS).where(the_event(events[-1])))

    chain_break = assert_one_break(verify(log, tmp_path), log, shard)
    assert chain_break.event_id is None
    assert f"ends at seq {len(events) - 1}" in chain_break.problem
    assert f"head says {len(events)}" in chain_break.problem


async def test_a_whole_chain_deleted_with_its_head_is_detected(log: Log, tmp_path: Path) -> None:
    """Removing every event of one chain together with its head row silently removes a part
    of the log (heads are created on first use, so nothing says which chains must exist)."""
    shard, _ = await longest_chain(log)
    await tamper(
        log,
        delete(EVENTS).where((EVENTS.c.organization_id == log.org_id) & (EVENTS.c.shard == shard)),
        delete(CHAINS).where(the_head(log, shard)),
    )

    result = verify(log, tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert any(b.org_id == log.org_id and b.shard == shard for b in breaks(result)), result.stdout


async def test_an_organizations_whole_log_deleted_is_detected(log: Log, tmp_path: Path) -> None:
    """Every organization's log begins with its own creation, so an organization without
    any chain lost its log."""
    await tamper(
        log,
        delete(EVENTS).where(EVENTS.c.organization_id == log.org_id),
        delete(CHAINS).where(CHAINS.c.organization_id == log.org_id),
    )

    result = verify(log, tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert {b.org_id for b in breaks(result)} == {log.org_id}, result.stdout


# --- inserted events -------------------------------------------------------------------------


async def test_a_forged_event_at_the_next_place_is_named(log: Log, tmp_path: Path) -> None:
    shard, events = await longest_chain(log)
    forged = {**events[1], "id": uuid.uuid4(), "seq": len(events) + 1}
    await tamper(log, insert(EVENTS).values(**forged))

    chain_break = assert_one_break(verify(log, tmp_path), log, shard)
    assert (chain_break.event_id, chain_break.seq) == (forged["id"], forged["seq"])


async def test_a_forged_event_at_an_occupied_place_is_refused_by_the_database(
    log: Log,
) -> None:
    _, events = await longest_chain(log)
    forged = {**events[1], "id": uuid.uuid4()}
    with pytest.raises(IntegrityError):
        await tamper(log, insert(EVENTS).values(**forged))


@pytest.mark.parametrize("seq", [0, -1], ids=["seq-0", "seq-negative"])
async def test_a_forged_event_before_the_first_place_is_named(
    log: Log, tmp_path: Path, seq: int
) -> None:
    """A copied event placed before seq 1 (where no event of the chain can be) is forged too."""
    shard, events = await longest_chain(log)
    forged = {**events[0], "id": uuid.uuid4(), "seq": seq, "action": "record.purged"}
    await tamper(log, insert(EVENTS).values(**forged))

    chain_break = assert_one_break(verify(log, tmp_path), log, shard)
    assert (chain_break.event_id, chain_break.seq) == (forged["id"], seq)


async def test_a_forged_event_in_a_chain_without_a_head_is_named(log: Log, tmp_path: Path) -> None:
    _, events = await longest_chain(log)
    forged = {**events[0], "id": uuid.uuid4(), "shard": 99, "seq": 1}
    await tamper(log, insert(EVENTS).values(**forged))

    chain_break = assert_one_break(verify(log, tmp_path), log, 99)
    assert chain_break.event_id == forged["id"]
    assert "no chain" in chain_break.problem


# --- reordered events ------------------------------------------------------------------------


async def test_two_swapped_events_name_the_first_in_the_new_order(log: Log, tmp_path: Path) -> None:
    shard, events = await longest_chain(log)
    first, second = events[1], events[2]
    # The (organization, chain, seq) unique constraint needs a parking place in between.
    await tamper(
        log,
        update(EVENTS).where(the_event(first)).values(seq=-1000),
        update(EVENTS).where(the_event(second)).values(seq=first["seq"]),
        update(EVENTS).where(the_event(first)).values(seq=second["seq"]),
    )

    chain_break = assert_one_break(verify(log, tmp_path), log, shard)
    assert (chain_break.event_id, chain_break.seq) == (second["id"], first["seq"])


async def test_an_event_moved_to_another_chain_breaks_both(log: Log, tmp_path: Path) -> None:
    by_chain = await chains_of(log)
    shard, events = await longest_chain(log)
    target = next(s for s in by_chain if s != shard)
    moved = events[1]
    await tamper(
        log,
        update(EVENTS).where(the_event(moved)).values(shard=target, seq=len(by_chain[target]) + 1),
    )

    result = verify(log, tmp_path)
    assert result.returncode == 1
    found = {b.shard: b for b in breaks(result)}
    assert set(found) == {shard, target}, result.stdout
    assert found[shard].event_id == events[2]["id"]
    assert found[target].event_id == moved["id"]


# --- edited chain heads ----------------------------------------------------------------------


async def test_a_head_rewound_to_hide_a_truncated_tail_is_detected(
    log: Log, tmp_path: Path
) -> None:
    shard, events = await longest_chain(log)
    await tamper(
        log,
        delete(EVENTS).where(the_event(events[-1])),
        update(CHAINS)
        .where(the_head(log, shard))
        .values(last_seq=len(events) - 1, last_mac=events[-2]["mac"]),
    )

    chain_break = assert_one_break(verify(log, tmp_path), log, shard)
    assert chain_break.event_id is None
    assert "head was altered" in chain_break.problem


async def test_a_head_moved_to_fake_a_retention_cut_is_detected(log: Log, tmp_path: Path) -> None:
    shard, events = await longest_chain(log)
    await tamper(
        log,
        delete(EVENTS).where(the_event(events[0]) | the_event(events[1])),
        update(CHAINS)
        .where(the_head(log, shard))
        .values(anchor_seq=2, anchor_mac=events[1]["mac"]),
    )

    chain_break = assert_one_break(verify(log, tmp_path), log, shard)
    assert "head was altered" in chain_break.problem
