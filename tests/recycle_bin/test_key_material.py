"""Purging a record for good destroys its data subject's keys; on SQLite the key's material
must not survive in the database file or its WAL either (the pages are checkpointed after the
commit, as after an erasure). Shown for the administrator's purge and the worker's."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from crm_service.crypto.models import DataKeyRecord
from crm_service.jobs.worker import run_due_jobs
from crm_service.records.contacts.models import Contact
from tests.conftest import Org, database_bytes, unique_email


async def binned_contact(org: Org) -> tuple[str, bytes]:
    """A contact in the recycle bin, and the wrapped material of its subject's key."""
    created = await org.client.post(
        "/v1/contacts", json={"last_name": "Binned", "email": unique_email()}, headers=org.headers
    )
    assert created.status_code == 201, created.text
    record_id = created.json()["id"]
    deleted = await org.client.delete(
        f"/v1/contacts/{record_id}", headers={**org.headers, "If-Match": "*"}
    )
    assert deleted.status_code == 204, deleted.text
    async with org.app.state.sessionmaker() as session:
        subject_id = (
            await session.execute(
                select(Contact.subject_id).where(Contact.id == uuid.UUID(record_id))
            )
        ).scalar_one()
        wrapped = (
            await session.execute(
                select(DataKeyRecord.wrapped).where(DataKeyRecord.subject_id == subject_id)
            )
        ).scalar_one()
    assert wrapped is not None
    return record_id, wrapped


def holds(dump: bytes, value: bytes) -> bool:
    return value in dump or value.hex().encode() in dump


async def test_a_purge_leaves_no_key_material_in_the_database(
    org: Org, app: Any, database_url: str
) -> None:
    record_id, wrapped = await binned_contact(org)
    assert holds(await database_bytes(database_url), wrapped)
    purged = await org.client.delete(f"/v1/recycle-bin/contacts/{record_id}", headers=org.headers)
    assert purged.status_code == 204, purged.text
    assert not holds(await database_bytes(database_url), wrapped)


async def test_the_workers_purge_leaves_no_key_material_in_the_database(
    org: Org, app: Any, database_url: str
) -> None:
    _, wrapped = await binned_contact(org)
    assert holds(await database_bytes(database_url), wrapped)
    later = app.state.clock.now() + timedelta(
        days=app.state.settings.recycle_bin_retention_days + 1
    )
    done = await run_due_jobs(
        app.state.sessionmaker, app.state.settings, later, only={"purge_recycle_bin"}
    )
    assert done["purge_recycle_bin"] >= 1
    assert not holds(await database_bytes(database_url), wrapped)
