"""A stored package waits sealed under each subject's own key: a dump of the database shows
none of its values; it opens to what was built until it expires, then it is gone (on read,
and by the worker's job); erasing the subject deletes their part, and nothing of them is
left anywhere."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_service.db.session import commit
from crm_service.privacy.package import (
    build_package,
    load_package,
    package_ttl,
    render,
    store_package,
)
from tests.conftest import Org, count_rows, database_bytes
from tests.consent.conftest import run_job
from tests.privacy.package_scene import make_scene
from tests.privacy.probe import hits

TABLE = "privacy_package_parts"


async def build_and_store(org: Org, subject_ids: list[uuid.UUID], request_id: uuid.UUID) -> Any:
    now = datetime.now(UTC)
    async with org.app.state.sessionmaker() as session:
        package = await build_package(session, org.id, subject_ids, principal=None, now=now)
        stored = await store_package(
            session,
            org.id,
            request_id=request_id,
            subject_ids=subject_ids,
            package=package,
            now=now,
            ttl=package_ttl(org.app.state.settings),
        )
        await commit(session)
    return package, stored


async def load(org: Org, request_id: uuid.UUID, now: datetime) -> Any:
    async with org.app.state.sessionmaker() as session:
        loaded = await load_package(session, org.id, request_id, now=now)
        await commit(session)
    return loaded


async def test_a_stored_package_is_sealed_and_opens_to_what_was_built(
    org: Org, other_org: Org, database_url: str
) -> None:
    scene = await make_scene(org)
    second = await make_scene(org)
    subjects = [uuid.UUID(scene.subject_id), uuid.UUID(second.subject_id)]
    request_id = uuid.uuid4()
    package, stored = await build_and_store(org, subjects, request_id)
    assert stored.subject_ids == tuple(subjects)
    assert stored.expires_at - stored.stored_at == timedelta(hours=168)
    assert await count_rows(org.app, TABLE, org.id) == 2  # one sealed part per subject

    values = scene.person.personal_values() + second.person.personal_values()
    assert hits(await database_bytes(database_url), values) == []

    loaded = await load(org, request_id, stored.stored_at + timedelta(hours=1))
    assert loaded is not None
    assert render(loaded, "json").body == render(package, "json").body
    assert loaded.parts[0].records[0]["fields"]["email"] == scene.person.email
    # Another organization's id of it finds nothing, and leaves it be.
    assert await load(other_org, request_id, stored.stored_at) is None
    assert await count_rows(org.app, TABLE, org.id) == 2


async def test_an_expired_package_is_gone(org: Org) -> None:
    scene = await make_scene(org)
    request_id = uuid.uuid4()
    _, stored = await build_and_store(org, [uuid.UUID(scene.subject_id)], request_id)
    assert await load(org, request_id, stored.expires_at - timedelta(seconds=1)) is not None
    # Read after its time: gone, and deleted by the read.
    assert await load(org, request_id, stored.expires_at) is None
    assert await count_rows(org.app, TABLE, org.id) == 0

    # The worker's job deletes what nobody read.
    later = uuid.uuid4()
    _, stored = await build_and_store(org, [uuid.UUID(scene.subject_id)], later)
    assert await run_job(org.app, "purge_packages", stored.stored_at) == 0
    assert await count_rows(org.app, TABLE, org.id) == 1
    assert await run_job(org.app, "purge_packages", stored.expires_at) >= 1
    assert await count_rows(org.app, TABLE, org.id) == 0
    assert await load(org, later, stored.stored_at) is None


async def test_storing_again_replaces_the_requests_package(org: Org) -> None:
    scene = await make_scene(org)
    request_id = uuid.uuid4()
    await build_and_store(org, [uuid.UUID(scene.subject_id)], request_id)
    await build_and_store(org, [uuid.UUID(scene.subject_id)], request_id)
    assert await count_rows(org.app, TABLE, org.id) == 1


async def test_erasing_a_subject_destroys_their_part_and_leaves_the_others(
    org: Org, app: Any, database_url: str
) -> None:
    scene = await make_scene(org)
    bystander = await make_scene(org)
    subjects = [uuid.UUID(scene.subject_id), uuid.UUID(bystander.subject_id)]
    request_id = uuid.uuid4()
    _, stored = await build_and_store(org, subjects, request_id)

    erased = await org.client.post(
        "/v1/privacy/erasures",
        json={"module": "contacts", "record_id": scene.contact_id},
        headers=org.headers,
    )
    assert erased.status_code == 201, erased.text
    receipt = await org.client.get(
        f"/v1/privacy/erasures/{erased.json()['receipt_ids'][0]}", headers=org.headers
    )
    assert receipt.json()["counts"]["stored_packages"] == 1
    assert await count_rows(app, TABLE, org.id) == 1  # the bystander's part stays

    loaded = await load(org, request_id, stored.stored_at)
    assert loaded is not None
    gone, kept = loaded.parts
    assert gone.subject_id == subjects[0] and gone.erased and gone.records == []
    assert kept.records[0]["fields"]["email"] == bystander.person.email
    # Nothing of the erased subject anywhere in the database (the WAL checkpointed after).
    assert hits(await database_bytes(database_url), scene.person.personal_values()) == []
