"""A stored package waits sealed under each subject's own key: a dump of the database shows
none of its values; it opens to what was built until it expires, then it is gone (on read,
and by the worker's job); erasing the subject deletes their part, and nothing of them is
left anywhere."""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_service.db.session import commit
from crm_service.privacy.package import (
    build_package,
    disclose_package,
    load_package,
    package_ttl,
    render,
    store_package,
)
from crm_service.security.permissions import Permissions, Right
from crm_service.security.principal import Principal
from crm_service.security.scopes import ALL_SCOPES
from tests.access.conftest import audit_events
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


def officer(org: Org, *, view_sensitive: bool) -> Principal:
    """A signed-in privacy officer's principal, as sign-in makes one."""
    return Principal(
        organization_id=org.id,
        user_id=org.admin_id,
        scopes=ALL_SCOPES,
        permissions=Permissions(
            view_sensitive=view_sensitive, rights=frozenset({Right.MANAGE_PRIVACY})
        ),
    )


def partner(org: Org) -> Principal:
    return Principal(
        organization_id=org.id,
        user_id=None,
        scopes=frozenset(ALL_SCOPES),
        client_id=str(uuid.uuid4()),
    )


async def test_staff_see_a_stored_package_through_the_disclosure_policy(org: Org) -> None:
    scene = await make_scene(org)
    person = scene.person
    request_id = uuid.uuid4()
    _, stored = await build_and_store(org, [uuid.UUID(scene.subject_id)], request_id)
    put = await org.client.put(
        "/v1/settings/compliance", json={"withhold": {"api": ["personal"]}}, headers=org.headers
    )
    assert put.status_code == 200, put.text

    async with org.app.state.sessionmaker() as session:
        package = await load_package(session, org.id, request_id, now=stored.stored_at)
        assert package is not None and package.complete
        masked = await disclose_package(session, package, officer(org, view_sensitive=False))
        shown = await disclose_package(session, package, officer(org, view_sensitive=True))
        withheld = await disclose_package(session, package, partner(org))
        await commit(session)

    masked_text = render(masked, "json").body.decode()
    assert person.national_id not in masked_text and person.email in masked_text
    assert masked.channel == "screen" and not masked.complete
    assert all(r["masked_fields"] == ["national_id"] for r in masked.parts[0].records)
    with zipfile.ZipFile(io.BytesIO(render(masked, "csv").body)) as archive:
        assert person.national_id not in archive.read("history.csv").decode()

    assert person.national_id in render(shown, "json").body.decode()
    assert shown.complete

    withheld_text = render(withheld, "json").body.decode()
    assert withheld.channel == "api"
    for value in (person.email, person.former_email, person.first_name, person.national_id):
        assert value not in withheld_text
    assert all("email" not in r["fields"] for r in withheld.parts[0].records)

    # The officer who saw the sensitive values: one reveal per module, reason "package".
    revealed = [
        event
        for event in await audit_events(org, action="record.sensitive_revealed")
        if event["reason"] == "package"
    ]
    assert sorted(event["target_type"] for event in revealed) == ["contact", "lead"]
    assert {tuple(event["fields"]) for event in revealed} == {("national_id",)}


async def test_an_erased_subjects_package_is_stored_without_a_new_key(org: Org) -> None:
    scene = await make_scene(org)
    erased = await org.client.post(
        "/v1/privacy/erasures",
        json={"module": "leads", "record_id": scene.lead_id},
        headers=org.headers,
    )
    assert erased.status_code == 201, erased.text
    keys_before = await count_rows(org.app, "data_keys", org.id)
    request_id = uuid.uuid4()
    package, stored = await build_and_store(org, [uuid.UUID(scene.subject_id)], request_id)
    assert package.parts[0].erased
    # Sealing the part would have made the erased subject a new key: there was nothing to seal.
    assert await count_rows(org.app, "data_keys", org.id) == keys_before
    loaded = await load(org, request_id, stored.stored_at)
    assert loaded is not None and loaded.parts[0].erased and loaded.parts[0].records == []
