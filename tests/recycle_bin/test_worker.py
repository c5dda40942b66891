"""`crm-service worker`: the recycle bin and the audit log emptied of what outstayed retention.

Each test runs on its own database (the worker purges across organizations, and its job rows
are shared), driven through the real API, with time moved by ageing `deleted_at` in SQL or by
handing `run_due_jobs` a later `now` (audit events cannot be aged in SQL: that would break their
MACs, as tampering should). The command runs as a subprocess, as cron would run it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select, text

from crm_service.audit.models import AuditEvent
from crm_service.audit.service import Verification, verify_organization
from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.db.session import commit
from crm_service.jobs.worker import run_due_jobs
from crm_service.main import create_app
from crm_service.records.accounts.models import Account
from crm_service.records.contacts.models import Contact
from crm_service.records.leads.models import Lead
from crm_service.records.models import ProcessingLockKind
from crm_service.records.repository import ProcessingLockRepository
from tests.conftest import MASTER_KEY, Org, TestDatabases, make_settings, new_org, unique_email

CRM_SERVICE = Path(sys.executable).parent / "crm-service"
COMMAND_TIMEOUT = 60
KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
MODELS = {"leads": Lead, "contacts": Contact, "accounts": Account}
MODULES = list(MODELS)
EVENTS = AuditEvent.__table__


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
async def database(request: pytest.FixtureRequest, databases: TestDatabases) -> str:
    """A database of its own, at the newest migration."""
    url = await databases.new(request.param)
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    return url


@asynccontextmanager
async def running(url: str) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    application = create_app(make_settings(url))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


async def reopened(org: Org, app: Any, http: httpx.AsyncClient) -> Org:
    """The same organization seen through another running app."""
    again = dataclasses.replace(org, app=app, client=http, headers={})
    again.headers = await again.login(org.admin_email)
    return again


def cli(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    env.update(settings)
    result = subprocess.run(
        [str(CRM_SERVICE), *args],
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


def worker_once(cwd: Path, url: str) -> dict[str, int]:
    result = cli(cwd, "worker", "--once", CRM_DATABASE_URL=url, CRM_MASTER_KEY=MASTER_KEY)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def audit_verify(cwd: Path, url: str) -> str:
    result = cli(cwd, "audit", "verify", CRM_DATABASE_URL=url, CRM_MASTER_KEY=MASTER_KEY)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "BROKEN" not in result.stdout
    assert result.stdout.strip().endswith(": intact"), result.stdout
    return result.stdout


def body(module: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    if module == "accounts":
        return {"name": f"Hollerith Tabulating {tag}"}
    return {"last_name": f"Hollerith{tag}", "email": unique_email("herman")}


async def binned_record(org: Org, module: str) -> str:
    """A record created and deleted (now in the bin); its id."""
    created = await org.client.post(f"/v1/{module}", json=body(module), headers=org.headers)
    assert created.status_code == 201, created.text
    record_id = created.json()["id"]
    deleted = await org.client.delete(f"/v1/{module}/{record_id}", headers=org.headers)
    assert deleted.status_code == 204, deleted.text
    return str(record_id)


async def age(app: Any, module: str, record_id: str, *, days: float) -> None:
    """Pretend the record went to the bin `days` ago (deleted_at is the only clock the bin has)."""
    table = MODELS[module].__table__
    async with app.state.engine.begin() as connection:
        updated = await connection.execute(
            table.update()
            .where(table.c.id == uuid.UUID(record_id))
            .values(deleted_at=datetime.now(UTC) - timedelta(days=days))
        )
        assert updated.rowcount == 1


async def still_stored(app: Any, module: str, record_id: str) -> bool:
    table = MODELS[module].__table__
    async with app.state.engine.connect() as connection:
        found = await connection.execute(
            select(table.c.id).where(table.c.id == uuid.UUID(record_id))
        )
        return found.first() is not None


async def bin_ids(org: Org) -> set[str]:
    response = await org.client.get("/v1/recycle-bin", params={"limit": 200}, headers=org.headers)
    assert response.status_code == 200, response.text
    return {entry["id"] for entry in response.json()["data"]}


async def events(app: Any, *where: Any) -> list[dict[str, Any]]:
    async with app.state.engine.connect() as connection:
        result = await connection.execute(select(EVENTS).where(*where))
        return [dict(row) for row in result.mappings()]


async def event_count(app: Any, *where: Any) -> int:
    async with app.state.engine.connect() as connection:
        result = await connection.execute(select(func.count()).select_from(EVENTS).where(*where))
        return int(result.scalar_one())


async def assert_log_intact(app: Any, *organization_ids: uuid.UUID) -> None:
    result = Verification()
    for organization_id in organization_ids:
        async with app.state.sessionmaker() as session:
            await verify_organization(session, organization_id, result)
    assert result.intact, [b.describe() for b in result.breaks]


# --- the recycle bin -------------------------------------------------------------------------


async def test_worker_once_purges_what_outstayed_the_retention(
    database: str, tmp_path: Path
) -> None:
    async with running(database) as (app, http):
        org = await new_org(app, http)
        expired = {module: await binned_record(org, module) for module in MODULES}
        for module, record_id in expired.items():
            await age(app, module, record_id, days=61)
        nearly = await binned_record(org, "contacts")
        await age(app, "contacts", nearly, days=59)
        fresh = await binned_record(org, "leads")
        live = await org.client.post("/v1/contacts", json=body("contacts"), headers=org.headers)
        assert live.status_code == 201

    assert worker_once(tmp_path, database) == {
        "purge_recycle_bin": 3,
        "purge_audit_log": 0,
        "forget_sign_in_attempts": 0,
        "send_mail": 0,
        "purge_settled_mail": 0,
        "forget_expired_tokens": 0,
        "deliver_webhooks": 0,
        "consent_deadlines": 0,
        "consent_reminders": 0,
        "purge_webform_submissions": 0,
        "purge_packages": 0,
        "forget_portal_sign_ins": 0,
    }

    async with running(database) as (app, http):
        org = await reopened(org, app, http)
        assert await bin_ids(org) == {nearly, fresh}
        for module, record_id in expired.items():
            assert not await still_stored(app, module, record_id), module
            response = await http.get(f"/v1/{module}/{record_id}", headers=org.headers)
            assert response.status_code == 404
        live_read = await http.get(f"/v1/contacts/{live.json()['id']}", headers=org.headers)
        assert live_read.status_code == 200
        purged = await events(app, EVENTS.c.action == "record.purged")
        assert sorted((e["target_type"], e["target_id"]) for e in purged) == sorted(
            (module[:-1], str(record_id)) for module, record_id in expired.items()
        )
        assert {(e["actor_type"], e["actor_id"]) for e in purged} == {("system", None)}
        # The contact now outstays the retention too, but the job ran moments ago: not due.
        await age(app, "contacts", nearly, days=61)

    # Webhook delivery runs on every pass (it claims its own due rows); nothing was due.
    assert worker_once(tmp_path, database) == {"send_mail": 0, "deliver_webhooks": 0}

    async with running(database) as (app, http):
        assert await still_stored(app, "contacts", nearly)
        # An hour on, the job is due again and takes it.
        later = datetime.now(UTC) + timedelta(hours=1, seconds=1)
        done = await run_due_jobs(app.state.sessionmaker, app.state.settings, later)
        assert done["purge_recycle_bin"] == 1
        assert not await still_stored(app, "contacts", nearly)
        assert await still_stored(app, "leads", fresh)
        await assert_log_intact(app, org.id)


async def test_a_restricted_subjects_record_outlives_the_retention_until_lifted(
    database: str,
) -> None:
    """Purging is processing too, and a restricted subject's data must be kept (Art. 18)."""
    async with running(database) as (app, http):
        org = await new_org(app, http)
        kept, other = await binned_record(org, "contacts"), await binned_record(org, "contacts")
        for record_id in (kept, other):
            await age(app, "contacts", record_id, days=61)
        async with app.state.sessionmaker() as session:
            contact = await session.get(Contact, uuid.UUID(kept))
            assert contact is not None
            subject_id = contact.subject_id
            locks = ProcessingLockRepository(session, org.id)
            await locks.set(
                subject_id,
                ProcessingLockKind.RESTRICTED,
                reason="legal_claims",
                since=datetime.now(UTC),
            )
            await commit(session)

        now = datetime.now(UTC)
        done = await run_due_jobs(app.state.sessionmaker, app.state.settings, now)
        assert done["purge_recycle_bin"] == 1
        assert await still_stored(app, "contacts", kept)
        assert not await still_stored(app, "contacts", other)

        async with app.state.sessionmaker() as session:
            await ProcessingLockRepository(session, org.id).lift(
                subject_id, ProcessingLockKind.RESTRICTED
            )
            await commit(session)
        later = now + timedelta(hours=1, seconds=1)
        done = await run_due_jobs(app.state.sessionmaker, app.state.settings, later)
        assert done["purge_recycle_bin"] == 1
        assert not await still_stored(app, "contacts", kept)
        await assert_log_intact(app, org.id)


@pytest.mark.postgres
async def test_two_workers_at_once_purge_each_entry_exactly_once(databases: TestDatabases) -> None:
    url = await databases.new("postgresql")
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    per_module = 4
    async with running(url) as (first, http), running(url) as (second, _):
        org = await new_org(first, http)
        total_purged = 0
        # A few rounds, so the two workers really meet at the job row at least once.
        for _round in range(3):
            aged: list[str] = []
            for module in MODULES:
                for _ in range(per_module):
                    record_id = await binned_record(org, module)
                    await age(first, module, record_id, days=61)
                    aged.append(record_id)
            async with first.state.engine.begin() as connection:
                await connection.execute(text("UPDATE worker_jobs SET last_finished_at = NULL"))
            now = datetime.now(UTC)

            results = await asyncio.gather(
                run_due_jobs(first.state.sessionmaker, first.state.settings, now),
                run_due_jobs(second.state.sessionmaker, second.state.settings, now),
            )

            counts = [result.get("purge_recycle_bin") for result in results]
            assert sorted(counts, key=lambda c: c is not None) == [None, len(aged)], results
            total_purged += len(aged)
            assert await event_count(first, EVENTS.c.action == "record.purged") == total_purged
            purged_targets = [
                e["target_id"] for e in await events(first, EVENTS.c.action == "record.purged")
            ]
            assert sorted(purged_targets) == sorted(set(purged_targets)), "each purged once"
            assert set(aged) <= set(purged_targets)
            assert await bin_ids(org) == set()
        await assert_log_intact(first, org.id)


# --- the audit log ---------------------------------------------------------------------------


async def test_audit_retention_purges_old_events_and_the_log_still_verifies(
    database: str, tmp_path: Path
) -> None:
    async with running(database) as (app, http):
        org = await new_org(app, http)
        for _ in range(3):
            created = await http.post("/v1/contacts", json=body("contacts"), headers=org.headers)
            changed = await http.patch(
                f"/v1/contacts/{created.json()['id']}", json={"title": "Clerk"}, headers=org.headers
            )
            assert changed.status_code == 200, changed.text
        # Everything before the cut is older than what we keep; everything after, newer.
        cut = datetime.now(UTC)
        newcomer = await new_org(app, http)
        for tenant in (org, newcomer):
            created = await http.post("/v1/contacts", json=body("contacts"), headers=tenant.headers)
            assert created.status_code == 201
        old = await event_count(app, EVENTS.c.occurred_at < cut)
        kept = await event_count(app, EVENTS.c.occurred_at >= cut)
        assert old >= 8 and kept >= 4
        retention = timedelta(days=app.state.settings.audit_retention_days)
        assert retention == timedelta(days=1095)

        done = await run_due_jobs(
            app.state.sessionmaker, app.state.settings, cut + retention, only={"purge_audit_log"}
        )

        assert done == {"purge_audit_log": old}
        assert await event_count(app, EVENTS.c.occurred_at < cut) == 0
        purged_events = await events(app, EVENTS.c.action == "audit.purged")
        assert [(e["organization_id"], e["actor_type"]) for e in purged_events] == [
            (org.id, "system")
        ], "one event, for the organization that lost events"
        assert await event_count(app) == kept + 1
        await assert_log_intact(app, org.id, newcomer.id)
    assert ": intact" in audit_verify(tmp_path, database)

    async with running(database) as (app, http):
        before = await event_count(app)
        retention = timedelta(days=app.state.settings.audit_retention_days)
        far = datetime.now(UTC) + retention + timedelta(days=1)

        done = await run_due_jobs(app.state.sessionmaker, app.state.settings, far)

        assert done["purge_audit_log"] == before
        left = await events(app)
        assert sorted((e["organization_id"], e["action"]) for e in left) == sorted(
            [(org.id, "audit.purged"), (newcomer.id, "audit.purged")]
        )
        await assert_log_intact(app, org.id, newcomer.id)
        # The log goes on after the cut: a new sign-in chains onto the purged chains.
        await reopened(org, app, http)
        now_held = await event_count(app)
        assert now_held > len(left)
    output = audit_verify(tmp_path, database)
    assert output.strip().startswith(f"{now_held} audit events")
