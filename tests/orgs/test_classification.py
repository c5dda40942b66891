"""Field classification (`/v1/settings/fields/{module}`): an administrator reads and changes
how each field is classified, and the values already stored follow, online and in batches:
a field made personal is sealed at rest, a field made `none` is stored plain, reads and
`email=` lookups keep answering with the same values, and an interrupted re-sealing run
finishes when run again without losing or double-applying anything.

Stored forms are read straight from the tables: 0x01 + data key id + ... for a sealed value,
0x00 + the UTF-8 text for a plain one.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.jobs.resealing import reseal_records
from crm_service.kit.modules import Module
from crm_service.main import create_app
from crm_service.orgs.repository import FieldClassificationRepository
from crm_service.records.contacts.models import Contact
from crm_service.records.fields import CATALOG
from tests.conftest import (
    Org,
    TestDatabases,
    assert_problem,
    count_rows,
    error_fields,
    make_settings,
    new_org,
    unique_email,
)

SEALED, PLAIN = 0x01, 0x00
# What changes on every write (a re-seal is a write); everything else must stay the same.
VOLATILE = frozenset({"etag", "version", "updated_at"})
WAIT_SECONDS = 10.0


# --- helpers ---------------------------------------------------------------------------------


def fields_path(module: str = "contacts") -> str:
    return f"/v1/settings/fields/{module}"


async def classify(org: Org, fields: dict[str, str], module: str = "contacts") -> dict[str, Any]:
    response = await org.client.put(
        fields_path(module), json={"fields": fields}, headers=org.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {field["name"]: field for field in body["fields"]}


async def create_contacts(org: Org, count: int, **extra: str) -> list[str]:
    ids = []
    for _ in range(count):
        tag = secrets.token_hex(4)
        payload = {
            "first_name": f"Grace{tag}",
            "last_name": f"Hopper{tag}",
            "email": unique_email("grace"),
            "title": f"Rear Admiral {tag}",
            **extra,
        }
        response = await org.client.post("/v1/contacts", json=payload, headers=org.headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def snapshot(org: Org, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each contact as the API answers it, without what every write changes."""
    records = {}
    for contact_id in ids:
        response = await org.client.get(f"/v1/contacts/{contact_id}", headers=org.headers)
        assert response.status_code == 200, response.text
        records[contact_id] = {k: v for k, v in response.json().items() if k not in VOLATILE}
    return records


async def assert_lookups_work(org: Org, records: dict[str, dict[str, Any]]) -> None:
    for contact_id, record in records.items():
        if record["email"] is None:
            continue
        found = await org.client.get(
            "/v1/contacts", params={"email": record["email"].upper()}, headers=org.headers
        )
        assert found.status_code == 200, found.text
        assert [c["id"] for c in found.json()["data"]] == [contact_id]


async def stored(app: Any, organization_id: uuid.UUID, *fields: str) -> dict[str, dict[str, Any]]:
    """Per contact id: its data_key_id and the stored bytes of `fields`, from the table."""
    columns = [Contact.id, Contact.data_key_id, *(getattr(Contact, f"{f}_stored") for f in fields)]
    async with app.state.sessionmaker() as session:
        rows = (
            await session.execute(
                select(*columns).where(Contact.organization_id == organization_id)
            )
        ).all()
    return {
        str(row[0]): {
            "data_key_id": row[1],
            **{
                f: (bytes(v) if v is not None else None)
                for f, v in zip(fields, row[2:], strict=True)
            },
        }
        for row in rows
    }


def is_sealed_under_row_key(row: dict[str, Any], field: str) -> bool:
    value = row[field]
    return value is not None and value[0] == SEALED and value[1:17] == row["data_key_id"].bytes


def is_plain(row: dict[str, Any], field: str, text_value: str) -> bool:
    return row[field] == bytes([PLAIN]) + text_value.encode()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `check` until it holds (the re-sealing runs in the background), within a bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not await check():
        assert loop.time() < deadline, f"not within {WAIT_SECONDS}s: {what}"
        await asyncio.sleep(0.05)


# --- reading the classification --------------------------------------------------------------


async def test_admin_sees_every_field_with_its_classification(org: Org) -> None:
    for module in Module:
        response = await org.client.get(fields_path(module.value), headers=org.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["module"] == module.value
        assert body["resealing"] is False
        assert [f["name"] for f in body["fields"]] == [spec.name for spec in CATALOG[module]]
        for field in body["fields"]:
            assert field["classification"] == field["default"]
            assert isinstance(field["label"], str) and field["label"]

    contacts = by_name((await org.client.get(fields_path(), headers=org.headers)).json())
    assert contacts["email"] | {"label": None} == {
        "name": "email",
        "label": None,
        "classification": "personal",
        "default": "personal",
        "searchable": True,
    }
    assert (contacts["phone"]["searchable"], contacts["mobile"]["searchable"]) == (True, True)
    assert (contacts["title"]["classification"], contacts["title"]["searchable"]) == ("none", False)
    assert contacts["national_id"]["classification"] == "sensitive"
    accounts = by_name((await org.client.get(fields_path("accounts"), headers=org.headers)).json())
    assert (accounts["name"]["classification"], accounts["name"]["searchable"]) == ("none", True)
    assert accounts["tax_id"]["classification"] == "sensitive"


async def test_only_admins_may_read_or_change_the_classification(org: Org, app: Any) -> None:
    user = await org.add_user(is_admin=False)
    assert_problem(await org.client.get(fields_path(), headers=user), 403)
    refused = await org.client.put(
        fields_path(), json={"fields": {"title": "personal"}}, headers=user
    )
    assert_problem(refused, 403)
    assert_problem(await org.client.get(fields_path()), 401)
    assert await count_rows(app, "field_classifications", org.id) == 0
    title = by_name((await org.client.get(fields_path(), headers=org.headers)).json())["title"]
    assert title["classification"] == "none"


async def test_an_unknown_module_is_422(org: Org) -> None:
    body = assert_problem(
        await org.client.get(fields_path("opportunities"), headers=org.headers), 422
    )
    assert "path.module" in error_fields(body)
    put = await org.client.put(
        fields_path("opportunities"), json={"fields": {"title": "none"}}, headers=org.headers
    )
    assert_problem(put, 422)


# --- changing it: stored values follow -------------------------------------------------------


async def test_making_title_personal_seals_the_stored_titles_and_none_unseals_them(
    org: Org, app: Any
) -> None:
    ids = await create_contacts(org, 5)
    untitled = (
        await org.client.post("/v1/contacts", json={"last_name": "Untitled"}, headers=org.headers)
    ).json()["id"]
    before = await snapshot(org, [*ids, untitled])
    rows = await stored(app, org.id, "title")
    assert all(is_plain(rows[i], "title", before[i]["title"]) for i in ids)

    body = await classify(org, {"title": "personal"})
    assert body["resealing"] is True
    assert by_name(body)["title"] | {"label": None} == {
        "name": "title",
        "label": None,
        "classification": "personal",
        "default": "none",
        "searchable": False,
    }

    async def titles_sealed() -> bool:
        rows = await stored(app, org.id, "title")
        return all(is_sealed_under_row_key(rows[i], "title") for i in ids)

    await eventually(titles_sealed, "stored titles sealed")
    rows = await stored(app, org.id, "title")
    assert rows[untitled]["title"] is None
    for contact_id in ids:
        assert before[contact_id]["title"].encode() not in rows[contact_id]["title"]
    assert await snapshot(org, [*ids, untitled]) == before
    assert await count_rows(app, "field_classifications", org.id) == 1
    got = by_name((await org.client.get(fields_path(), headers=org.headers)).json())
    assert got["title"]["classification"] == "personal"

    # Written after the change: sealed at once.
    (fresh,) = await create_contacts(org, 1)
    assert is_sealed_under_row_key((await stored(app, org.id, "title"))[fresh], "title")

    # Asking again for what is already so starts nothing.
    assert (await classify(org, {"title": "personal"}))["resealing"] is False

    # Back to the default: stored plain again, and the override is gone.
    body = await classify(org, {"title": "none"})
    assert body["resealing"] is True and by_name(body)["title"]["classification"] == "none"
    everyone = [*ids, untitled, fresh]
    before = await snapshot(org, everyone)

    async def titles_plain() -> bool:
        rows = await stored(app, org.id, "title")
        return all(is_plain(rows[i], "title", before[i]["title"]) for i in [*ids, fresh])

    await eventually(titles_plain, "stored titles plain")
    assert await snapshot(org, everyone) == before
    assert await count_rows(app, "field_classifications", org.id) == 0


async def test_email_made_none_is_stored_plain_and_made_personal_again_is_sealed(
    org: Org, app: Any
) -> None:
    ids = await create_contacts(org, 4)
    before = await snapshot(org, ids)

    body = await classify(org, {"email": "none"})
    assert body["resealing"] is True
    assert by_name(body)["email"]["classification"] == "none"
    assert by_name(body)["email"]["searchable"] is True

    async def emails_plain() -> bool:
        rows = await stored(app, org.id, "email")
        return all(is_plain(rows[i], "email", before[i]["email"]) for i in ids)

    await eventually(emails_plain, "stored emails plain")
    rows = await stored(app, org.id, "email", "first_name")
    assert all(is_sealed_under_row_key(rows[i], "first_name") for i in ids)  # others untouched
    assert await snapshot(org, ids) == before
    await assert_lookups_work(org, before)

    body = await classify(org, {"email": "personal"})
    assert body["resealing"] is True

    async def emails_sealed() -> bool:
        rows = await stored(app, org.id, "email")
        return all(is_sealed_under_row_key(rows[i], "email") for i in ids)

    await eventually(emails_sealed, "stored emails sealed")
    rows = await stored(app, org.id, "email")
    for contact_id in ids:
        assert before[contact_id]["email"].encode() not in rows[contact_id]["email"]
    assert await snapshot(org, ids) == before
    await assert_lookups_work(org, before)


async def test_an_interrupted_reclassification_finishes_when_run_again(org: Org, app: Any) -> None:
    ids = await create_contacts(org, 7)
    before = await snapshot(org, ids)
    # The change is committed, then the process stops before the background job ran: the
    # state an operator finds after a crash (and finishes with `crm-service keys reseal`).
    async with app.state.sessionmaker() as session:
        repository = FieldClassificationRepository(session, org.id)
        await repository.set(Module.CONTACTS, "title", "personal")
        await repository.set(Module.CONTACTS, "email", "none")
        await session.commit()

    def converted(row: dict[str, Any], contact_id: str) -> bool:
        return is_sealed_under_row_key(row, "title") and is_plain(
            row, "email", before[contact_id]["email"]
        )

    def untouched(row: dict[str, Any], contact_id: str) -> bool:
        return is_plain(row, "title", before[contact_id]["title"]) and is_sealed_under_row_key(
            row, "email"
        )

    async def run(**limits: int) -> int:
        return await reseal_records(
            app.state.sessionmaker,
            organization_id=org.id,
            module=Module.CONTACTS,
            stale_keys_only=False,
            batch_size=2,
            **limits,
        )

    assert await run(max_batches=1) == 2  # interrupted after one batch
    rows = await stored(app, org.id, "title", "email")
    done = [i for i in ids if converted(rows[i], i)]
    assert len(done) == 2
    assert all(untouched(rows[i], i) for i in ids if i not in done)
    # Half-converted, every value still reads back and is found.
    assert await snapshot(org, ids) == before
    await assert_lookups_work(org, before)

    assert await run() >= len(ids) - 2
    rows = await stored(app, org.id, "title", "email")
    assert all(converted(rows[i], i) for i in ids)
    assert await snapshot(org, ids) == before

    # Once more: nothing is applied twice (a sealed value is not sealed again as if it were
    # text, a plain one is not stripped again).
    await run()
    rows = await stored(app, org.id, "title", "email")
    assert all(converted(rows[i], i) for i in ids)
    assert await snapshot(org, ids) == before
    await assert_lookups_work(org, before)


# --- bad requests, other organizations -------------------------------------------------------


async def test_bad_classification_requests_are_422_and_change_nothing(org: Org, app: Any) -> None:
    (contact_id,) = await create_contacts(org, 1)
    defaults = (await org.client.get(fields_path(), headers=org.headers)).json()

    unknown = await org.client.put(
        fields_path(),
        json={"fields": {"title": "personal", "nickname": "personal"}},
        headers=org.headers,
    )
    assert error_fields(assert_problem(unknown, 422)) == {"body.fields.nickname"}
    bad_value = await org.client.put(
        fields_path(), json={"fields": {"title": "secret"}}, headers=org.headers
    )
    assert "body.fields.title" in error_fields(assert_problem(bad_value, 422))
    assert "secret" not in bad_value.text
    for body in ({"fields": {}}, {"fields": {"title": "none"}, "extra": True}, {}):
        assert_problem(await org.client.put(fields_path(), json=body, headers=org.headers), 422)

    assert (await org.client.get(fields_path(), headers=org.headers)).json() == defaults
    assert await count_rows(app, "field_classifications", org.id) == 0
    title = (await snapshot(org, [contact_id]))[contact_id]["title"]
    assert is_plain((await stored(app, org.id, "title"))[contact_id], "title", title)


async def test_one_organizations_classification_leaves_another_alone(
    org: Org, other_org: Org, app: Any
) -> None:
    (theirs,) = await create_contacts(other_org, 1)
    (ours,) = await create_contacts(org, 1)
    await classify(org, {"title": "personal", "email": "none"})

    async def ours_converted() -> bool:
        return is_sealed_under_row_key((await stored(app, org.id, "title"))[ours], "title")

    await eventually(ours_converted, "this organization's titles sealed")
    other = by_name((await other_org.client.get(fields_path(), headers=other_org.headers)).json())
    assert other["title"]["classification"] == "none"
    assert other["email"]["classification"] == "personal"
    their_values = (await snapshot(other_org, [theirs]))[theirs]
    row = (await stored(app, other_org.id, "title", "email"))[theirs]
    assert is_plain(row, "title", their_values["title"])
    assert is_sealed_under_row_key(row, "email")
    (later,) = await create_contacts(other_org, 1)
    later_values = (await snapshot(other_org, [later]))[later]
    row = (await stored(app, other_org.id, "title", "email"))[later]
    assert is_plain(row, "title", later_values["title"])
    assert is_sealed_under_row_key(row, "email")
    assert await count_rows(app, "field_classifications", other_org.id) == 0


# --- a write in flight while the classification changes (PostgreSQL, made deterministic) ----


async def _backends_blocked_by(probe: AsyncEngine, blocker_pid: int) -> list[int]:
    async with probe.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND CAST(:blocker AS integer) = ANY(pg_blocking_pids(pid))"
            ),
            {"blocker": blocker_pid},
        )
        return list(result.scalars())


async def _until_blocked_or_done(
    probe: AsyncEngine, blocker_pid: int, task: asyncio.Task[Any]
) -> list[int]:
    """The backends waiting for `blocker_pid`'s locks, once there are any or `task` is done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not task.done():
        blocked = await _backends_blocked_by(probe, blocker_pid)
        if blocked:
            return blocked
        assert loop.time() < deadline, "nothing got blocked and the request did not answer"
        await asyncio.sleep(0.02)
    return []


async def test_a_create_in_flight_during_reclassification_ends_up_in_the_new_form(
    databases: TestDatabases,
) -> None:
    """A contact is being created (it has read `title` as `none` and is about to insert) when
    an administrator makes `title` personal; it commits only after the re-sealing job ran.
    Its title must not stay plain at rest under a `personal` classification. Row locks on
    PostgreSQL hold the create at that point, so the interleaving is the same every run."""
    url = await databases.new("postgresql")
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    probe = make_engine(url, isolation_level="AUTOCOMMIT")
    application = create_app(make_settings(url))
    try:
        async with LifespanManager(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                tenant = await new_org(application, http)
                ids = await create_contacts(tenant, 4)
                second_admin = await tenant.add_user(is_admin=True)
                payload = {"last_name": "Inflight", "title": "Night Shift Lead"}
                async with probe.connect() as hold:
                    hold_pid = await hold.scalar(text("SELECT pg_backend_pid()"))
                    await hold.execute(text("BEGIN"))
                    # The creator's user row: the contact's insert waits for it.
                    await hold.execute(
                        text("SELECT id FROM users WHERE id = :id FOR UPDATE"),
                        {"id": tenant.admin_id},
                    )
                    create = asyncio.create_task(
                        http.post("/v1/contacts", json=payload, headers=tenant.headers)
                    )
                    creators = await _until_blocked_or_done(probe, hold_pid, create)
                    assert creators, "the create should wait for the user row it references"
                    change = asyncio.create_task(
                        http.put(
                            fields_path(),
                            json={"fields": {"title": "personal"}},
                            headers=second_admin,
                        )
                    )
                    # The change either completes (and re-seals) while the create waits, or
                    # waits itself for the create; either way the create is let go after.
                    for creator in creators:
                        await _until_blocked_or_done(probe, creator, change)
                    await hold.execute(text("ROLLBACK"))
                created = await asyncio.wait_for(create, timeout=WAIT_SECONDS)
                changed = await asyncio.wait_for(change, timeout=WAIT_SECONDS)
                assert created.status_code == 201, created.text
                assert changed.status_code == 200, changed.text
                new_id = created.json()["id"]
                ids.append(new_id)

                async def all_sealed() -> bool:
                    rows = await stored(application, tenant.id, "title")
                    return all(is_sealed_under_row_key(rows[i], "title") for i in ids)

                rows = await stored(application, tenant.id, "title")
                assert is_sealed_under_row_key(rows[new_id], "title"), (
                    "a contact created while the classification changed kept its title plain"
                )
                await eventually(all_sealed, "every title sealed")
                read = await http.get(f"/v1/contacts/{new_id}", headers=tenant.headers)
                assert read.json()["title"] == "Night Shift Lead"
    finally:
        await probe.dispose()
