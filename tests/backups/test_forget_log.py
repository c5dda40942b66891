"""Erasures stay erased after a restore: the forget-log, kept outside the database, makes a
restore of an older backup erase again everyone erased since, before anything serves it; a
restore without it is refused unless told, loudly and audited; a broken chain is refused."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm_service.audit.models import AuditEvent
from crm_service.backups.forget_log import ForgetLog, ForgetLogError
from crm_service.backups.service import RestoreRefused, create_backup, restore_backup
from crm_service.cli import _database
from crm_service.clock import Clock
from tests.backups.conftest import fresh_database, provider_of, serving, settings_for
from tests.conftest import TestDatabases, assert_problem, make_settings, new_org
from tests.privacy.probe import Subject, hits, storage_hits, table_hits


async def _subject_in(client: Any, headers: dict[str, str], subject: Subject) -> dict[str, str]:
    lead = await client.post(
        "/v1/leads",
        json={"first_name": subject.first_name, "last_name": subject.last_name,
              "email": subject.email, "phone": subject.phone, "company": subject.company,
              "description": subject.description},
        headers=headers,
    )  # fmt: skip
    assert lead.status_code == 201, lead.text
    account = await client.post("/v1/accounts", json={"name": "Northwind"}, headers=headers)
    converted = await client.post(
        f"/v1/leads/{lead.json()['id']}/convert",
        json={"account_id": account.json()["id"]},
        headers=headers,
    )
    assert converted.status_code == 201, converted.text
    return {"lead": lead.json()["id"], "contact": converted.json()["contact"]["id"]}


async def _restore(settings: Any, path: Path, **options: Any) -> Any:
    return await restore_backup(
        settings, provider_of(settings), lambda: _database(settings), path,
        now=Clock().now(), **{"overwrite": True, "without_forget_log": False, **options},
    )  # fmt: skip


async def test_restoring_an_older_backup_erases_again_whom_the_forget_log_names(
    kind: str, databases: TestDatabases, tmp_path: Path
) -> None:
    url = await fresh_database(databases, kind)
    settings = settings_for(url, tmp_path / "backups")
    erased, kept = Subject.new(), Subject.new()
    async with serving(settings) as (app, client):
        org = await new_org(app, client)
        ids = await _subject_in(client, org.headers, erased)
        await _subject_in(client, org.headers, kept)
        backup = await create_backup(settings, provider_of(settings), now=Clock().now())
        response = await client.post(
            "/v1/privacy/erasures", json={"module": "leads", "record_id": ids["lead"]},
            headers=org.headers,
        )  # fmt: skip
        assert response.status_code == 201, response.text
        [receipt_id] = response.json()["receipt_ids"]

    # The backup predates the erasure and still holds the subject (sealed: no value shows).
    assert hits(backup.path.read_bytes(), erased.values() + kept.values() + ["Northwind"]) == []
    report = await _restore(settings, backup.path)
    assert (report.reapplied, report.forget_log_entries) == (1, 1)

    async with serving(settings) as (restored_app, client):
        for module in ("leads", "contacts"):
            gone = await client.get(f"/v1/{module}/{ids[module[:-1]]}", headers=org.headers)
            assert_problem(gone, 410)
        for payload in ({"last_name": "Again", "email": erased.email},
                        {"last_name": "Again", "phone": erased.phone}):  # fmt: skip
            assert_problem(
                await client.post("/v1/contacts", json=payload, headers=org.headers), 409
            )
        receipt = await client.get(f"/v1/privacy/erasures/{receipt_id}", headers=org.headers)
        assert receipt.status_code == 200 and receipt.json()["reapplied_at"] is not None
        listed = await client.get("/v1/leads", params={"email": kept.email}, headers=org.headers)
        assert [lead["last_name"] for lead in listed.json()["data"]] == [kept.last_name]
        assert await table_hits(restored_app.state.engine, erased.values()) == {}
    assert storage_hits(url, erased.values()) == {}

    # The same older backup again: the replay is idempotent and erases them again.
    again = await _restore(settings, backup.path)
    assert (again.reapplied, again.forget_log_entries) == (1, 1)
    async with serving(settings) as (app, client):
        async with app.state.sessionmaker() as session:
            events = (
                await session.execute(
                    select(AuditEvent.reason).where(
                        AuditEvent.organization_id == org.id, AuditEvent.action == "backup.restored"
                    )
                )
            ).scalars()
            # The first restore's event went with the database it was written to.
            assert list(events) == ["forget_log_replayed"]


async def test_without_the_forget_log_a_restore_is_refused_unless_told(
    kind: str, databases: TestDatabases, tmp_path: Path
) -> None:
    url = await fresh_database(databases, kind)
    settings = settings_for(url, tmp_path / "backups")
    erased = Subject.new()
    async with serving(settings) as (app, client):
        org = await new_org(app, client)
        ids = await _subject_in(client, org.headers, erased)
        backup = await create_backup(settings, provider_of(settings), now=Clock().now())
        await client.post(
            "/v1/privacy/erasures", json={"module": "leads", "record_id": ids["lead"]},
            headers=org.headers,
        )  # fmt: skip
    settings.forget_log_path.rename(tmp_path / "forget.log.elsewhere")
    with pytest.raises(RestoreRefused, match="no forget-log"):
        await _restore(settings, backup.path)
    async with serving(settings) as (_, client):  # refused: nothing changed
        assert_problem(await client.get(f"/v1/leads/{ids['lead']}", headers=org.headers), 410)

    report = await _restore(settings, backup.path, without_forget_log=True)
    assert report.without_forget_log
    async with serving(settings) as (app, client):
        back = await client.get(f"/v1/leads/{ids['lead']}", headers=org.headers)
        assert back.status_code == 200  # what the warning says: the erased subject is back
        async with app.state.sessionmaker() as session:
            reasons = (
                await session.execute(
                    select(AuditEvent.reason).where(
                        AuditEvent.organization_id == org.id, AuditEvent.action == "backup.restored"
                    )
                )
            ).scalars()
            assert list(reasons) == ["without_forget_log"]


async def test_a_broken_forget_log_chain_refuses_the_restore(
    databases: TestDatabases, tmp_path: Path
) -> None:
    settings = settings_for(await fresh_database(databases, "sqlite"), tmp_path / "backups")
    log = ForgetLog(settings.forget_log_path, provider_of(settings))
    for _ in range(3):
        log.append(
            organization_id=uuid.uuid4(), subject_id=uuid.uuid4(),
            identifiers=[("email", "ab" * 32)], erased_at=Clock().now(), receipt_id=uuid.uuid4(),
        )  # fmt: skip
    assert [entry.seq for entry in log.entries()] == [1, 2, 3]
    lines = settings.forget_log_path.read_text().splitlines()
    async with serving(settings):
        backup = await create_backup(settings, provider_of(settings), now=Clock().now())

    edited = json.loads(lines[2])
    edited["subject_id"] = str(uuid.uuid4())
    for broken, where in [
        ([lines[0], lines[1], json.dumps(edited), lines[3]], "line 3"),  # edited
        ([lines[0], lines[1], lines[3]], "line 3"),  # removed
        ([lines[0], lines[2], lines[1], lines[3]], "line 2"),  # reordered
    ]:
        settings.forget_log_path.write_text("\n".join(broken) + "\n")
        with pytest.raises(ForgetLogError, match=where):
            log.entries()
        with pytest.raises(ForgetLogError, match=where):
            await _restore(settings, backup.path)
    # A log whose key another master key wrapped does not open.
    settings.forget_log_path.write_text("\n".join(lines) + "\n")
    other_key = base64.b64encode(secrets.token_bytes(32)).decode()
    stranger = make_settings(
        settings.database_url, backup_dir=tmp_path / "backups", master_key=other_key
    )
    with pytest.raises(ForgetLogError, match="does not open"):
        ForgetLog(stranger.forget_log_path, provider_of(stranger)).entries()
