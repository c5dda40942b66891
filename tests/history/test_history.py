"""Record history over HTTP: GET /v1/{leads|contacts|accounts}/{id}/history.

Each change of a record is listed newest first with who made it, which fields changed and their
old and new values; conversions, deletions and restores are there too. Sensitive values are
masked for a profile without view_sensitive and their reveal to one with it is audited. The
values are sealed under the data subject's key: erasing the subject leaves the entries (who,
when, which fields) but not the values, and the table, a dump or the database file never shows
one of them. A record the caller may not see has no history for them (404).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import text

from crm_service.crypto.service import keyring_for
from crm_service.db.session import commit
from tests.conftest import (
    PASSWORD,
    Org,
    assert_problem,
    create_user,
    database_bytes,
    unique_email,
)

REVEALED = "record.sensitive_revealed"


# --- helpers ---------------------------------------------------------------------------------


def person(**extra: Any) -> dict[str, Any]:
    """A contact or lead body whose every value is unique to this test."""
    tag = secrets.token_hex(5)
    return {
        "first_name": f"Grace{tag}",
        "last_name": f"Hopper{tag}",
        "email": unique_email(f"grace{tag}"),
        "title": f"Rear Admiral {tag}",
        **extra,
    }


def national_id() -> str:
    return "NI" + secrets.token_hex(5).upper()


async def create(org: Org, module: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await org.client.post(f"/v1/{module}", json=body, headers=org.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def patch(org: Org, module: str, record_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await org.client.patch(f"/v1/{module}/{record_id}", json=body, headers=org.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def history(
    org: Org, module: str, record_id: str, headers: dict[str, str] | None = None, **params: Any
) -> httpx.Response:
    return await org.client.get(
        f"/v1/{module}/{record_id}/history", params=params, headers=headers or org.headers
    )


async def entries(org: Org, module: str, record_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await history(org, module, record_id, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    return body["data"]


async def add_standard_user(org: Org) -> tuple[str, dict[str, str]]:
    """A user on the built-in Standard profile (no view_sensitive): their id and headers."""
    email = unique_email("standard")
    response = await create_user(org, {"email": email, "password": PASSWORD, "is_admin": False})
    assert response.status_code == 201, response.text
    return response.json()["id"], await org.login(email)


async def share_everything(org: Org) -> None:
    body = {"leads": "read_write", "contacts": "read_write", "accounts": "read_write"}
    response = await org.client.put("/v1/settings/sharing", json=body, headers=org.headers)
    assert response.status_code == 200, response.text


async def audit_events(org: Org, **params: str) -> list[dict[str, Any]]:
    response = await org.client.get(
        "/v1/audit-events", params={"limit": 200, **params}, headers=org.headers
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def db_id(app: Any, value: uuid.UUID | str) -> Any:
    """A UUID as the database stores it (native on PostgreSQL, 32 hex digits on SQLite)."""
    value = uuid.UUID(str(value))
    return value if app.state.engine.dialect.name == "postgresql" else value.hex


async def subject_of(app: Any, table: str, record_id: str) -> uuid.UUID:
    async with app.state.engine.connect() as connection:
        subject = (
            await connection.execute(
                text(f"SELECT subject_id FROM {table} WHERE id = :id"),
                {"id": db_id(app, record_id)},
            )
        ).scalar_one()
    return uuid.UUID(str(subject))


async def erase_subject(org: Org, subject_id: uuid.UUID) -> None:
    async with org.app.state.sessionmaker() as session:
        destroyed = await keyring_for(session, org.id).destroy_subject_keys(subject_id)
        await commit(session)
    assert destroyed >= 1


def encodings(value: str) -> list[bytes]:
    """A value as a table, dump or file may show it: raw, lowercased, hex (bytea in pg_dump)."""
    raw = value.encode()
    return [raw, value.lower().encode(), raw.hex().encode()]


async def history_table_bytes(app: Any, organization_id: uuid.UUID) -> bytes:
    """Every column of the organization's record_history rows, as stored."""
    async with app.state.engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT * FROM record_history WHERE organization_id = :org"),
                {"org": db_id(app, organization_id)},
            )
        ).all()
    assert rows
    parts = []
    for row in rows:
        for value in row:
            parts.append(
                bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
            )
    return b"\x00".join(parts)


# --- what the history says -------------------------------------------------------------------


async def test_a_contacts_changes_are_listed_newest_first_with_old_and_new_values(org: Org) -> None:
    first = person()
    contact = await create(org, "contacts", first)
    new_title, new_email = f"Commodore {secrets.token_hex(3)}", unique_email("grace")
    await patch(org, "contacts", contact["id"], {"title": new_title})
    # first_name sent unchanged: only what really changed is recorded.
    await patch(
        org, "contacts", contact["id"], {"email": new_email, "first_name": first["first_name"]}
    )

    response = await history(org, "contacts", contact["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["masked_fields"] == []
    assert body["next_cursor"] is None
    data = body["data"]
    assert [entry["action"] for entry in data] == ["updated", "updated", "created"]
    stamps = [datetime.fromisoformat(entry["occurred_at"]) for entry in data]
    assert stamps[0] > stamps[1] > stamps[2]
    assert len({entry["id"] for entry in data}) == 3
    for entry in data:
        assert entry["actor_type"] == "user"
        assert entry["actor_id"] == str(org.admin_id)
        assert entry["erased"] is False

    newest, middle, created = data
    assert newest["fields"] == ["email"]
    assert newest["changes"] == {"email": {"old": first["email"], "new": new_email}}
    assert middle["fields"] == ["title"]
    assert middle["changes"] == {"title": {"old": first["title"], "new": new_title}}
    for name, value in first.items():
        assert name in created["fields"]
        assert created["changes"][name] == {"old": None, "new": value}
    assert set(created["changes"]) == set(created["fields"])


async def test_an_accounts_changes_are_listed(org: Org) -> None:
    name = f"Analytical Engines {secrets.token_hex(3)}"
    account = await create(org, "accounts", {"name": name})
    await patch(org, "accounts", account["id"], {"name": name + " Ltd"})

    data = await entries(org, "accounts", account["id"])

    assert [entry["action"] for entry in data] == ["updated", "created"]
    assert data[0]["changes"] == {"name": {"old": name, "new": name + " Ltd"}}
    assert data[1]["changes"]["name"] == {"old": None, "new": name}


async def test_a_legal_basis_change_appears_in_the_history(org: Org) -> None:
    contact = await create(org, "contacts", person())
    for basis in ("contract", "consent"):
        response = await org.client.put(
            f"/v1/contacts/{contact['id']}/legal-basis", json={"basis": basis}, headers=org.headers
        )
        assert response.status_code == 200, response.text

    data = await entries(org, "contacts", contact["id"])

    assert [entry["action"] for entry in data] == ["updated", "updated", "created"]
    assert [entry["fields"] for entry in data[:2]] == [["legal_basis"], ["legal_basis"]]
    assert data[0]["changes"] == {"legal_basis": {"old": "contract", "new": "consent"}}
    assert data[1]["changes"] == {"legal_basis": {"old": None, "new": "contract"}}
    assert data[0]["actor_id"] == str(org.admin_id)


async def test_conversion_writes_converted_on_the_lead_and_created_on_the_contact(org: Org) -> None:
    values = person()
    lead = await create(org, "leads", {**values, "company": f"Univac {secrets.token_hex(3)}"})
    response = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json={}, headers=org.headers
    )
    assert response.status_code == 201, response.text
    contact_id = response.json()["contact"]["id"]
    account_id = response.json()["account"]["id"]

    lead_history = await entries(org, "leads", lead["id"])
    assert [entry["action"] for entry in lead_history] == ["converted", "created"]
    converted = lead_history[0]
    assert converted["actor_id"] == str(org.admin_id)
    assert converted["fields"] == ["converted_account_id", "converted_contact_id", "status"]
    assert converted["changes"] == {
        "status": {"old": "new", "new": "converted"},
        "converted_contact_id": {"old": None, "new": contact_id},
        "converted_account_id": {"old": None, "new": account_id},
    }

    contact_history = await entries(org, "contacts", contact_id)
    assert [entry["action"] for entry in contact_history] == ["created"]
    created = contact_history[0]
    assert created["actor_id"] == str(org.admin_id)
    for name, value in values.items():
        assert created["changes"][name] == {"old": None, "new": value}


async def test_delete_and_restore_are_in_the_history(org: Org) -> None:
    contact = await create(org, "contacts", person())
    deleted = await org.client.delete(f"/v1/contacts/{contact['id']}", headers=org.headers)
    assert deleted.status_code == 204, deleted.text
    restored = await org.client.post(
        f"/v1/recycle-bin/contacts/{contact['id']}/restore", headers=org.headers
    )
    assert restored.status_code == 204, restored.text

    data = await entries(org, "contacts", contact["id"])

    assert [entry["action"] for entry in data] == ["restored", "deleted", "created"]
    for entry in data[:2]:
        assert entry["fields"] == []
        assert entry["changes"] is None
        assert entry["erased"] is False
        assert entry["actor_id"] == str(org.admin_id)


# --- sensitive values --------------------------------------------------------------------------


async def test_sensitive_changes_are_masked_for_standard_and_revealed_with_an_audit_to_admin(
    org: Org,
) -> None:
    await share_everything(org)
    standard_id, standard = await add_standard_user(org)
    old_id, new_id = national_id(), national_id()
    values = person(national_id=old_id)
    contact = await create(org, "contacts", values)
    await patch(org, "contacts", contact["id"], {"national_id": new_id, "title": "Professor"})

    masked = await history(org, "contacts", contact["id"], headers=standard)
    assert masked.status_code == 200, masked.text
    body = masked.json()
    assert body["masked_fields"] == ["national_id"]
    updated, created = body["data"]
    assert updated["fields"] == ["national_id", "title"], "field names stay visible"
    assert updated["changes"]["national_id"] == {"old": None, "new": None}
    assert updated["changes"]["title"] == {"old": values["title"], "new": "Professor"}
    assert created["changes"]["national_id"] == {"old": None, "new": None}
    assert created["changes"]["last_name"] == {"old": None, "new": values["last_name"]}
    for value in (old_id, new_id):
        assert value not in masked.text
    assert not [
        event
        for event in await audit_events(org, action=REVEALED, target_id=contact["id"])
        if event["reason"] == "history"
    ], "a masked history reveals nothing"

    shown = await history(org, "contacts", contact["id"])
    assert shown.status_code == 200, shown.text
    assert shown.json()["masked_fields"] == []
    updated, created = shown.json()["data"]
    assert updated["changes"]["national_id"] == {"old": old_id, "new": new_id}
    assert created["changes"]["national_id"] == {"old": None, "new": old_id}

    reveals = [
        event
        for event in await audit_events(org, action=REVEALED, target_id=contact["id"])
        if event["reason"] == "history"
    ]
    assert len(reveals) == 1, reveals
    (reveal,) = reveals
    assert reveal["actor_id"] == str(org.admin_id)
    assert reveal["target_type"] == "contact"
    assert reveal["fields"] == ["national_id"]
    assert standard_id != str(org.admin_id)


# --- erasure and what is at rest -----------------------------------------------------------------


async def test_after_erasure_the_history_keeps_entries_but_no_values(org: Org) -> None:
    values = person(national_id=national_id())
    contact = await create(org, "contacts", values)
    new_email = unique_email("erased")
    await patch(org, "contacts", contact["id"], {"email": new_email})
    before = await entries(org, "contacts", contact["id"])

    await erase_subject(org, await subject_of(org.app, "contacts", contact["id"]))

    gone = await org.client.get(f"/v1/contacts/{contact['id']}", headers=org.headers)
    assert_problem(gone, 410)
    response = await history(org, "contacts", contact["id"])
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [(e["id"], e["action"], e["fields"], e["actor_id"]) for e in data] == [
        (e["id"], e["action"], e["fields"], e["actor_id"]) for e in before
    ]
    for entry in data:
        assert entry["erased"] is True
        assert entry["changes"] is None
    for value in [*values.values(), new_email]:
        assert value not in response.text


async def test_history_values_are_not_readable_at_rest(
    org: Org, app: Any, database_url: str
) -> None:
    values = person(national_id=national_id(), mailing_street=f"{secrets.token_hex(4)} Navy Way")
    contact = await create(org, "contacts", values)
    # The values replaced here live on only in the history.
    replaced = person(national_id=national_id(), mailing_street=f"{secrets.token_hex(4)} Fleet St")
    await patch(org, "contacts", contact["id"], replaced)
    lead_values = person()
    lead = await create(org, "leads", {**lead_values, "company": "Plain Co"})
    later = person()
    await patch(org, "leads", lead["id"], later)
    assert len(await entries(org, "contacts", contact["id"])) == 2
    # `title` is classified `none` by default, so records store it in the clear (and a SQLite
    # file keeps replaced row versions in its free pages): the dump is searched for personal
    # values, the history table for every value, since it seals all of them.
    personal = [
        value
        for body in (values, replaced, lead_values, later)
        for name, value in body.items()
        if name != "title"
    ]
    every_value = [
        value for body in (values, replaced, lead_values, later) for value in body.values()
    ]

    stored = await history_table_bytes(app, org.id)
    dumped = await database_bytes(database_url)
    assert len(dumped) > 10_000
    for value in every_value:
        for needle in encodings(value):
            assert needle not in stored, f"{needle!r} is readable in record_history"
    for value in personal:
        for needle in encodings(value):
            assert needle not in dumped, f"{needle!r} is readable at rest"
    assert any(needle in dumped for needle in encodings(replaced["title"])), (
        "the scan sees plain text"
    )
    # The field names are stored in the clear (like the audit log): the scan does see text.
    assert b"national_id" in stored


# --- who may read a history ----------------------------------------------------------------------


async def test_another_organizations_record_has_no_history_for_you(
    org: Org, other_org: Org
) -> None:
    contact = await create(org, "contacts", person())
    account = await create(org, "accounts", {"name": f"Eckert {secrets.token_hex(3)}"})

    for module, record_id in (("contacts", contact["id"]), ("accounts", account["id"])):
        response = await history(other_org, module, record_id)
        assert_problem(response, 404)
    # Nor under another module's path, nor an id nobody has.
    assert_problem(await history(org, "leads", contact["id"]), 404)
    assert_problem(await history(org, "contacts", str(uuid.uuid4())), 404)


async def test_a_user_who_cannot_see_the_record_gets_404(org: Org) -> None:
    owner_id, owner = await add_standard_user(org)
    _, bystander = await add_standard_user(org)
    # Sharing stays at its default, private: only the owner (and roles above) see the record.
    contact = await create(org, "contacts", person(owner_id=owner_id))
    await patch(org, "contacts", contact["id"], {"title": "Director"})

    refused = await history(org, "contacts", contact["id"], headers=bystander)
    body = assert_problem(refused, 404)
    assert contact["last_name"] not in refused.text
    assert "Director" not in str(body)
    allowed = await history(org, "contacts", contact["id"], headers=owner)
    assert allowed.status_code == 200, allowed.text
    assert [entry["action"] for entry in allowed.json()["data"]] == ["updated", "created"]


async def test_limit_1_pages_through_every_entry(org: Org) -> None:
    contact = await create(org, "contacts", person())
    for number in range(4):
        await patch(org, "contacts", contact["id"], {"title": f"Title {number}"})
    everything = await entries(org, "contacts", contact["id"])
    assert len(everything) == 5

    walked: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1}
    for _ in range(10):
        response = await history(org, "contacts", contact["id"], **params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) == 1
        walked.extend(page["data"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert walked == everything
    assert [entry["changes"]["title"]["new"] for entry in walked[:4]] == [
        f"Title {number}" for number in (3, 2, 1, 0)
    ]

    two = await history(org, "contacts", contact["id"], limit=2)
    assert [entry["id"] for entry in two.json()["data"]] == [e["id"] for e in everything[:2]]
    assert_problem(await history(org, "contacts", contact["id"], cursor="not-a-cursor"), 422)
