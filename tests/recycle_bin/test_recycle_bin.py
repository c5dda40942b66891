"""The recycle bin over HTTP: GET /v1/recycle-bin, POST .../{module}/{id}/restore, DELETE
.../{module}/{id} (purge).

Deleting a record moves it to the bin: it is gone from reads, lists and lookups, and listed in
the bin with who deleted it and when the worker will purge it. Restoring brings it back as it
was; purging removes it for good, and with the last record of a data subject their keys, so no
copy stays readable. The bin shows each user only what the sharing rules let them see, and
restoring or purging needs the delete permission.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import PASSWORD, Org, assert_problem, count_rows, create_user, unique_email

MODULES = ["leads", "contacts", "accounts"]
# The exact-match lookup each module offers on a value every test record has.
LOOKUP_FIELD = {"leads": "email", "contacts": "email", "accounts": "name"}
NOUN = {"leads": "lead", "contacts": "contact", "accounts": "account"}
RETENTION = timedelta(days=60)  # CRM_RECYCLE_BIN_RETENTION_DAYS's default


# --- helpers ---------------------------------------------------------------------------------


def record_body(module: str, **fields: Any) -> dict[str, Any]:
    tag = secrets.token_hex(5)
    if module == "accounts":
        return {"name": f"Babbage and Sons {tag}", "tax_id": f"GB{tag}", **fields}
    body = {
        "first_name": f"Charles{tag}",
        "last_name": f"Babbage{tag}",
        "email": unique_email(f"charles{tag}"),
        "national_id": f"NI{tag.upper()}",
        **fields,
    }
    if module == "leads":
        body.setdefault("company", f"Difference Engines {tag}")
    return body


async def create(org: Org, module: str, **fields: Any) -> dict[str, Any]:
    response = await org.client.post(
        f"/v1/{module}", json=record_body(module, **fields), headers=org.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def delete(
    org: Org, module: str, record_id: str, headers: dict[str, str] | None = None
) -> None:
    response = await org.client.delete(f"/v1/{module}/{record_id}", headers=headers or org.headers)
    assert response.status_code == 204, response.text


async def restore(
    org: Org, module: str, record_id: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await org.client.post(
        f"/v1/recycle-bin/{module}/{record_id}/restore", headers=headers or org.headers
    )


async def purge(
    org: Org, module: str, record_id: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await org.client.delete(
        f"/v1/recycle-bin/{module}/{record_id}", headers=headers or org.headers
    )


async def bin_page(
    org: Org, headers: dict[str, str] | None = None, **params: Any
) -> dict[str, Any]:
    response = await org.client.get(
        "/v1/recycle-bin", params=params, headers=headers or org.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def binned(
    org: Org, headers: dict[str, str] | None = None, **params: Any
) -> dict[str, dict[str, Any]]:
    """Every bin entry the caller sees (one page: test organizations are small), by id."""
    page = await bin_page(org, headers, limit=200, **params)
    assert page["next_cursor"] is None
    return {entry["id"]: entry for entry in page["data"]}


async def listed_ids(org: Org, module: str, **params: str) -> list[str]:
    response = await org.client.get(
        f"/v1/{module}", params={"limit": 200, **params}, headers=org.headers
    )
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def add_user(org: Org, profile_id: str | None = None) -> tuple[str, dict[str, str]]:
    """A user on the Standard profile (or `profile_id`): their id and headers."""
    email = unique_email("member")
    body: dict[str, Any] = {"email": email, "password": PASSWORD, "is_admin": False}
    if profile_id is not None:
        body["profile_id"] = profile_id
    response = await create_user(org, body)
    assert response.status_code == 201, response.text
    return response.json()["id"], await org.login(email)


def db_id(app: Any, value: uuid.UUID | str) -> Any:
    value = uuid.UUID(str(value))
    return value if app.state.engine.dialect.name == "postgresql" else value.hex


async def scalar(app: Any, sql: str, **params: Any) -> Any:
    async with app.state.engine.connect() as connection:
        return (await connection.execute(text(sql), params)).scalar_one()


async def rows_of(app: Any, table: str, record_id: str) -> int:
    return int(
        await scalar(app, f"SELECT count(*) FROM {table} WHERE id = :id", id=db_id(app, record_id))
    )


async def history_rows(app: Any, record_id: str) -> int:
    return int(
        await scalar(
            app,
            "SELECT count(*) FROM record_history WHERE record_id = :id",
            id=db_id(app, record_id),
        )
    )


async def subject_key_statuses(app: Any, org: Org, table: str, record_id: str) -> list[str]:
    subject = await scalar(
        app, f"SELECT subject_id FROM {table} WHERE id = :id", id=db_id(app, record_id)
    )
    async with app.state.engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT status, wrapped FROM data_keys "
                    "WHERE organization_id = :org AND subject_id = :subject"
                ),
                {"org": db_id(app, org.id), "subject": db_id(app, str(subject))},
            )
        ).all()
    assert rows, "a data subject has at least one key"
    return [status if wrapped is not None else f"{status}, no material" for status, wrapped in rows]


async def audit_events(org: Org, **params: str) -> list[dict[str, Any]]:
    response = await org.client.get(
        "/v1/audit-events", params={"limit": 200, **params}, headers=org.headers
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


# --- delete, restore, purge ----------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
async def test_delete_moves_the_record_to_the_bin(org: Org, module: str) -> None:
    record = await create(org, module)
    lookup = {LOOKUP_FIELD[module]: record[LOOKUP_FIELD[module]]}
    assert await listed_ids(org, module, **lookup) == [record["id"]]
    before = datetime.now().astimezone()

    await delete(org, module, record["id"])

    after = datetime.now().astimezone()
    path = f"/v1/{module}/{record['id']}"
    assert_problem(await org.client.get(path, headers=org.headers), 404)
    assert_problem(await org.client.patch(path, json={}, headers=org.headers), 404)
    assert_problem(await org.client.delete(path, headers=org.headers), 404)
    assert record["id"] not in await listed_ids(org, module)
    assert await listed_ids(org, module, **lookup) == []
    searched = await org.client.post(f"/v1/{module}/search", json=lookup, headers=org.headers)
    assert searched.status_code == 200 and searched.json()["data"] == []

    entries = await binned(org)
    assert list(entries) == [record["id"]]
    entry = entries[record["id"]]
    assert entry["module"] == module
    assert entry["owner_id"] == str(org.admin_id)
    assert entry["deleted_by_id"] == str(org.admin_id)
    deleted_at = parse(entry["deleted_at"])
    assert before - timedelta(seconds=1) <= deleted_at <= after + timedelta(seconds=1)
    assert parse(entry["purge_after"]) == deleted_at + RETENTION
    # The bin names records, never their values.
    page = await org.client.get("/v1/recycle-bin", headers=org.headers)
    assert record[LOOKUP_FIELD[module]] not in page.text
    # Still in the database, only binned.
    assert await rows_of(org.app, module, record["id"]) == 1


@pytest.mark.parametrize("module", MODULES)
async def test_restore_brings_the_record_back_with_its_values(org: Org, module: str) -> None:
    record = await create(org, module)
    await delete(org, module, record["id"])

    restored = await restore(org, module, record["id"])

    assert restored.status_code == 204, restored.text
    read = await org.client.get(f"/v1/{module}/{record['id']}", headers=org.headers)
    assert read.status_code == 200, read.text
    ignored = {"etag", "updated_at"}
    assert {k: v for k, v in read.json().items() if k not in ignored} == {
        k: v for k, v in record.items() if k not in ignored
    }
    lookup = {LOOKUP_FIELD[module]: record[LOOKUP_FIELD[module]]}
    assert await listed_ids(org, module, **lookup) == [record["id"]]
    assert await binned(org) == {}
    # Restored once: a second restore finds nothing in the bin.
    assert_problem(await restore(org, module, record["id"]), 404)
    events = await audit_events(org, action="record.restored", target_id=record["id"])
    assert [(e["target_type"], e["actor_id"]) for e in events] == [
        (NOUN[module], str(org.admin_id))
    ]


@pytest.mark.parametrize("module", MODULES)
async def test_purge_removes_the_record_for_good(org: Org, module: str) -> None:
    record = await create(org, module)
    await org.client.patch(
        f"/v1/{module}/{record['id']}", json={"description": "Changed once"}, headers=org.headers
    )
    await delete(org, module, record["id"])
    assert await history_rows(org.app, record["id"]) == 3

    purged = await purge(org, module, record["id"])

    assert purged.status_code == 204, purged.text
    assert await binned(org) == {}
    assert await rows_of(org.app, module, record["id"]) == 0
    assert await history_rows(org.app, record["id"]) == 0
    assert_problem(await org.client.get(f"/v1/{module}/{record['id']}", headers=org.headers), 404)
    assert_problem(await restore(org, module, record["id"]), 404)
    assert_problem(await purge(org, module, record["id"]), 404)
    events = await audit_events(org, action="record.purged", target_id=record["id"])
    assert [(e["target_type"], e["actor_id"]) for e in events] == [
        (NOUN[module], str(org.admin_id))
    ]


async def test_purge_leaves_no_row_that_names_the_record(org: Org) -> None:
    """Purged "for good": no table keeps what the API can no longer reach (its history, its
    shares, its legal-basis settings with their assessment text)."""
    user_id, _ = await add_user(org)
    group = await org.client.post(
        "/v1/groups",
        json={"name": "Group " + secrets.token_hex(3), "member_ids": [user_id]},
        headers=org.headers,
    )
    assert group.status_code == 201, group.text
    contact = await create(org, "contacts")
    path = f"/v1/contacts/{contact['id']}"
    shared = await org.client.put(
        f"{path}/shares/{group.json()['id']}", json={"access": "read_only"}, headers=org.headers
    )
    assert shared.status_code == 200, shared.text
    basis = await org.client.put(
        f"{path}/legal-basis",
        json={"basis": "legitimate_interests", "assessment": "Existing customer, low impact"},
        headers=org.headers,
    )
    assert basis.status_code == 200, basis.text
    await delete(org, "contacts", contact["id"])

    assert (await purge(org, "contacts", contact["id"])).status_code == 204

    app, record = org.app, db_id(org.app, contact["id"])
    left = {
        "record_history": "SELECT count(*) FROM record_history WHERE record_id = :id",
        "record_shares": "SELECT count(*) FROM record_shares WHERE record_id = :id",
        "legal_basis_entries": "SELECT count(*) FROM legal_basis_entries WHERE subject_id = :id",
    }
    assert {
        table: await scalar(app, sql, id=record) for table, sql in left.items()
    } == dict.fromkeys(left, 0)


async def test_only_a_binned_record_can_be_restored_or_purged(org: Org) -> None:
    live = await create(org, "contacts")

    assert_problem(await restore(org, "contacts", live["id"]), 404)
    assert_problem(await purge(org, "contacts", live["id"]), 404)
    assert (
        await org.client.get(f"/v1/contacts/{live['id']}", headers=org.headers)
    ).status_code == 200
    assert_problem(await purge(org, "contacts", str(uuid.uuid4())), 404)
    assert_problem(
        await org.client.post(f"/v1/recycle-bin/widgets/{live['id']}/restore", headers=org.headers),
        422,
    )


async def test_purging_a_converted_lead_keeps_the_contact_and_the_last_record_takes_the_keys(
    org: Org,
) -> None:
    lead = await create(org, "leads")
    converted = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json={}, headers=org.headers
    )
    assert converted.status_code == 201, converted.text
    contact = converted.json()["contact"]
    app = org.app
    # The lead and its contact are one data subject with one key.
    assert await subject_key_statuses(app, org, "leads", lead["id"]) == ["active"]

    await delete(org, "leads", lead["id"])
    assert (await purge(org, "leads", lead["id"])).status_code == 204

    assert await rows_of(app, "leads", lead["id"]) == 0
    read = await org.client.get(f"/v1/contacts/{contact['id']}", headers=org.headers)
    assert read.status_code == 200, read.text
    for name in ("first_name", "last_name", "email", "national_id"):
        assert read.json()[name] == lead[name]
    assert await subject_key_statuses(app, org, "contacts", contact["id"]) == ["active"]
    assert await listed_ids(org, "contacts", email=lead["email"]) == [contact["id"]]

    # A binned record still holds the subject: deleting is not purging.
    await delete(org, "contacts", contact["id"])
    assert await subject_key_statuses(app, org, "contacts", contact["id"]) == ["active"]
    assert (await restore(org, "contacts", contact["id"])).status_code == 204
    assert (await org.client.get(f"/v1/contacts/{contact['id']}", headers=org.headers)).json()[
        "email"
    ] == lead["email"]

    await delete(org, "contacts", contact["id"])
    subject = await scalar(
        app, "SELECT subject_id FROM contacts WHERE id = :id", id=db_id(app, contact["id"])
    )
    assert (await purge(org, "contacts", contact["id"])).status_code == 204

    async with app.state.engine.connect() as connection:
        keys = (
            await connection.execute(
                text(
                    "SELECT status, wrapped FROM data_keys"
                    " WHERE organization_id = :org AND subject_id = :s"
                ),
                {"org": db_id(app, org.id), "s": db_id(app, str(subject))},
            )
        ).all()
    assert keys == [("destroyed", None)]
    assert await count_rows(app, "contacts", org.id) == 0
    assert await count_rows(app, "leads", org.id) == 0


async def test_purging_a_lone_contact_destroys_its_subjects_keys(org: Org) -> None:
    contact = await create(org, "contacts")
    other = await create(org, "contacts")
    await delete(org, "contacts", contact["id"])
    subject = await scalar(
        org.app, "SELECT subject_id FROM contacts WHERE id = :id", id=db_id(org.app, contact["id"])
    )

    assert (await purge(org, "contacts", contact["id"])).status_code == 204

    async with org.app.state.engine.connect() as connection:
        keys = (
            await connection.execute(
                text("SELECT status, wrapped FROM data_keys WHERE subject_id = :s"),
                {"s": db_id(org.app, str(subject))},
            )
        ).all()
    assert keys == [("destroyed", None)]
    # Another subject's key is untouched.
    assert await subject_key_statuses(org.app, org, "contacts", other["id"]) == ["active"]
    assert (
        await org.client.get(f"/v1/contacts/{other['id']}", headers=org.headers)
    ).status_code == 200


# --- who sees and changes what -------------------------------------------------------------------


async def test_a_standard_user_sees_only_their_own_bin_entries_and_cannot_touch_others(
    org: Org,
) -> None:
    # Sharing stays at the default, private: each user sees the records they own.
    alice_id, alice = await add_user(org)
    bob_id, bob = await add_user(org)
    alices = await create(org, "contacts", owner_id=alice_id)
    bobs = await create(org, "contacts", owner_id=bob_id)
    bobs_lead = await create(org, "leads", owner_id=bob_id)
    await delete(org, "contacts", alices["id"], headers=alice)
    await delete(org, "contacts", bobs["id"], headers=bob)
    await delete(org, "leads", bobs_lead["id"])  # by the administrator

    assert set(await binned(org, alice)) == {alices["id"]}
    assert set(await binned(org, bob)) == {bobs["id"], bobs_lead["id"]}
    everything = await binned(org)
    assert set(everything) == {alices["id"], bobs["id"], bobs_lead["id"]}
    assert everything[bobs_lead["id"]]["deleted_by_id"] == str(org.admin_id)
    assert everything[bobs["id"]]["deleted_by_id"] == bob_id

    for module, record in (("contacts", bobs), ("leads", bobs_lead)):
        assert_problem(await restore(org, module, record["id"], headers=alice), 404)
        assert_problem(await purge(org, module, record["id"], headers=alice), 404)
    assert set(await binned(org, bob)) == {bobs["id"], bobs_lead["id"]}, "nothing changed"

    assert (await restore(org, "contacts", alices["id"], headers=alice)).status_code == 204
    assert (await purge(org, "leads", bobs_lead["id"], headers=bob)).status_code == 204
    assert set(await binned(org)) == {bobs["id"]}
    read = await org.client.get(f"/v1/contacts/{alices['id']}", headers=alice)
    assert read.status_code == 200 and read.json()["masked_fields"] == ["national_id"]


async def test_another_organizations_bin_is_invisible(org: Org, other_org: Org) -> None:
    record = await create(org, "contacts")
    await delete(org, "contacts", record["id"])
    theirs = await create(other_org, "accounts")
    await delete(other_org, "accounts", theirs["id"])

    assert set(await binned(other_org)) == {theirs["id"]}
    assert set(await binned(org)) == {record["id"]}
    assert_problem(await restore(other_org, "contacts", record["id"]), 404)
    assert_problem(await purge(other_org, "contacts", record["id"]), 404)
    assert_problem(await restore(org, "accounts", theirs["id"]), 404)
    assert set(await binned(org)) == {record["id"]}
    assert await rows_of(org.app, "contacts", record["id"]) == 1


async def test_module_filter_and_cursor_paging(org: Org) -> None:
    deleted: list[tuple[str, str]] = []
    for module in ["leads", "contacts", "accounts", "contacts", "leads", "accounts", "contacts"]:
        record = await create(org, module)
        await delete(org, module, record["id"])
        deleted.append((module, record["id"]))
    newest_first = [record_id for _, record_id in reversed(deleted)]

    for module in MODULES:
        only = await bin_page(org, module=module, limit=200)
        assert [e["id"] for e in only["data"]] == [
            record_id for m, record_id in reversed(deleted) if m == module
        ]
        assert {e["module"] for e in only["data"]} == {module}

    walked: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 3}
    pages = 0
    while True:
        page = await bin_page(org, **params)
        pages += 1
        assert len(page["data"]) <= 3
        walked.extend(page["data"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert pages == 3
    assert [e["id"] for e in walked] == newest_first
    stamps = [parse(e["deleted_at"]) for e in walked]
    assert stamps == sorted(stamps, reverse=True)

    contacts_only = []
    params = {"limit": 1, "module": "contacts"}
    while True:
        page = await bin_page(org, **params)
        contacts_only.extend(e["id"] for e in page["data"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert contacts_only == [r for m, r in reversed(deleted) if m == "contacts"]

    for bad in ({"module": "widgets"}, {"limit": 0}, {"cursor": "not-a-cursor"}, {"colour": "red"}):
        response = await org.client.get("/v1/recycle-bin", params=bad, headers=org.headers)
        assert_problem(response, 422)


async def test_restore_and_purge_need_the_delete_permission(org: Org) -> None:
    response = await org.client.post(
        "/v1/profiles",
        json={
            "name": "No deleting " + secrets.token_hex(3),
            "modules": {module: ["create", "read", "update"] for module in MODULES},
            "view_sensitive": False,
            "rights": [],
        },
        headers=org.headers,
    )
    assert response.status_code == 201, response.text
    user_id, user = await add_user(org, profile_id=response.json()["id"])
    record = await create(org, "contacts", owner_id=user_id)
    assert_problem(await org.client.delete(f"/v1/contacts/{record['id']}", headers=user), 403)
    await delete(org, "contacts", record["id"])

    # The user still sees their record in the bin, but may not restore or purge it.
    assert set(await binned(org, user)) == {record["id"]}
    assert_problem(await restore(org, "contacts", record["id"], headers=user), 403)
    assert_problem(await purge(org, "contacts", record["id"], headers=user), 403)
    assert set(await binned(org)) == {record["id"]}
    assert await rows_of(org.app, "contacts", record["id"]) == 1
    assert await audit_events(org, action="record.restored", target_id=record["id"]) == []
    assert await audit_events(org, action="record.purged", target_id=record["id"]) == []


async def test_the_bin_needs_a_signed_in_caller(org: Org) -> None:
    record = await create(org, "contacts")
    await delete(org, "contacts", record["id"])

    for response in (
        await org.client.get("/v1/recycle-bin"),
        await org.client.post(f"/v1/recycle-bin/contacts/{record['id']}/restore"),
        await org.client.delete(f"/v1/recycle-bin/contacts/{record['id']}"),
    ):
        assert_problem(response, 401)
    assert set(await binned(org)) == {record["id"]}
