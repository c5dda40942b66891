"""Leads over HTTP: create, read, update, delete, and conversion into a contact and account.

Conversion runs in one transaction; the rollback test installs a real database trigger that
refuses the contact insert, so the account written just before it must vanish too.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from sqlalchemy import text

from tests.conftest import Org, assert_problem, count_rows, unique_email

PROBLEM = "application/problem+json"


async def create_lead(org: Org, **fields: Any) -> dict[str, Any]:
    payload = {"last_name": "Hopper", **fields}
    response = await org.client.post("/v1/leads", json=payload, headers=org.headers)
    assert response.status_code == 201, response.text
    lead: dict[str, Any] = response.json()
    return lead


async def get_lead(org: Org, lead_id: str) -> dict[str, Any]:
    response = await org.client.get(f"/v1/leads/{lead_id}", headers=org.headers)
    assert response.status_code == 200, response.text
    lead: dict[str, Any] = response.json()
    return lead


async def convert(
    org: Org, lead_id: str, payload: dict[str, Any] | None = None, if_match: str | None = None
) -> httpx.Response:
    headers = {**org.headers, "If-Match": if_match} if if_match else org.headers
    return await org.client.post(
        f"/v1/leads/{lead_id}/convert", json=payload or {}, headers=headers
    )


async def record_counts(org: Org) -> dict[str, int]:
    return {
        table: await count_rows(org.app, table, org.id)
        for table in ("leads", "contacts", "accounts", "legal_basis_entries")
    }


# --- CRUD -------------------------------------------------------------------------------


async def test_create_get_update_delete_lead(org: Org) -> None:
    email = unique_email("grace")
    created = await org.client.post(
        "/v1/leads",
        json={
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": email,
            "phone": "+44 20 7946 0000",
            "company": "Navy Labs",
        },
        headers=org.headers,
    )
    assert created.status_code == 201, created.text
    lead = created.json()
    assert created.headers["Location"] == f"/v1/leads/{lead['id']}"
    assert created.headers["ETag"] == lead["etag"]
    assert lead["status"] == "new"
    assert lead["source"]["channel"] == "manual"
    assert lead["owner_id"] == str(org.admin_id)
    assert lead["converted_contact_id"] is None

    fetched = await org.client.get(created.headers["Location"], headers=org.headers)
    assert fetched.status_code == 200
    assert fetched.json()["email"] == email
    assert fetched.json()["company"] == "Navy Labs"
    assert fetched.headers["ETag"] == lead["etag"]

    patched = await org.client.patch(
        f"/v1/leads/{lead['id']}",
        json={"status": "qualified"},
        headers={**org.headers, "If-Match": lead["etag"]},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "qualified"
    assert patched.json()["etag"] != lead["etag"]
    assert (await get_lead(org, lead["id"]))["status"] == "qualified"

    deleted = await org.client.delete(f"/v1/leads/{lead['id']}", headers=org.headers)
    assert deleted.status_code == 204
    assert_problem(await org.client.get(f"/v1/leads/{lead['id']}", headers=org.headers), 404)
    # Deleted means in the recycle bin until purged; purged means gone.
    assert await count_rows(org.app, "leads", org.id) == 1
    purged = await org.client.delete(f"/v1/recycle-bin/leads/{lead['id']}", headers=org.headers)
    assert purged.status_code == 204, purged.text
    assert await count_rows(org.app, "leads", org.id) == 0


async def test_stale_if_match_refuses_lead_update(org: Org) -> None:
    lead = await create_lead(org)
    await org.client.patch(f"/v1/leads/{lead['id']}", json={"title": "CTO"}, headers=org.headers)
    stale = await org.client.patch(
        f"/v1/leads/{lead['id']}",
        json={"status": "contacted"},
        headers={**org.headers, "If-Match": lead["etag"]},
    )
    assert_problem(stale, 412)
    assert (await get_lead(org, lead["id"]))["status"] == "new"


async def test_status_converted_cannot_be_set_by_hand(org: Org) -> None:
    lead = await create_lead(org)
    patched = await org.client.patch(
        f"/v1/leads/{lead['id']}", json={"status": "converted"}, headers=org.headers
    )
    body = assert_problem(patched, 422)
    assert any(error["field"] == "body.status" for error in body["errors"])
    assert await get_lead(org, lead["id"]) == lead

    created = await org.client.post(
        "/v1/leads", json={"last_name": "Byron", "status": "converted"}, headers=org.headers
    )
    assert_problem(created, 422)
    assert await count_rows(org.app, "leads", org.id) == 1


# --- conversion -------------------------------------------------------------------------


async def test_convert_creates_contact_and_account_from_company(org: Org) -> None:
    email = unique_email("ada")
    lead = await create_lead(
        org,
        first_name="Ada",
        last_name="Lovelace",
        email=email,
        phone="+44 20 7946 0018",
        title="Analyst",
        company="Analytical Engines Ltd",
    )

    response = await convert(org, lead["id"])

    assert response.status_code == 201, response.text
    body = response.json()
    contact, account, converted = body["contact"], body["account"], body["lead"]
    assert response.headers["Location"] == f"/v1/contacts/{contact['id']}"
    assert {k: contact[k] for k in ("first_name", "last_name", "email", "phone", "title")} == {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": email,
        "phone": "+44 20 7946 0018",
        "title": "Analyst",
    }
    assert contact["source"] == lead["source"]
    assert contact["owner_id"] == lead["owner_id"]
    assert account["name"] == "Analytical Engines Ltd"
    assert contact["account_id"] == account["id"]
    assert converted["status"] == "converted"
    assert converted["converted_contact_id"] == contact["id"]
    assert converted["converted_account_id"] == account["id"]
    assert converted["converted_at"] is not None

    # What the response promised is what is stored.
    assert (await get_lead(org, lead["id"]))["converted_contact_id"] == contact["id"]
    stored_contact = await org.client.get(response.headers["Location"], headers=org.headers)
    assert stored_contact.status_code == 200
    assert stored_contact.json()["account_id"] == account["id"]
    stored_account = await org.client.get(f"/v1/accounts/{account['id']}", headers=org.headers)
    assert stored_account.json()["name"] == "Analytical Engines Ltd"
    assert await count_rows(org.app, "contacts", org.id) == 1
    assert await count_rows(org.app, "accounts", org.id) == 1


async def created_entry(org: Org, module: str, record_id: str) -> dict[str, Any]:
    response = await org.client.get(f"/v1/{module}/{record_id}/history", headers=org.headers)
    assert response.status_code == 200, response.text
    [entry] = response.json()["data"]
    assert entry["action"] == "created"
    return entry


async def created_event(org: Org, record_id: str) -> dict[str, Any]:
    response = await org.client.get(
        "/v1/audit-events",
        params={"action": "record.created", "target_id": record_id},
        headers=org.headers,
    )
    assert response.status_code == 200, response.text
    [event] = response.json()["data"]
    return event


async def test_conversion_makes_the_contact_and_account_as_any_create_does(org: Org) -> None:
    """Each new record has its first history entry, and its created event and that entry name
    exactly the fields the conversion set (the lead had no website, industry or phone)."""
    email = unique_email("ada")
    lead = await create_lead(
        org, first_name="Ada", last_name="Lovelace", email=email, company="Analytical Engines"
    )

    response = await convert(org, lead["id"])

    assert response.status_code == 201, response.text
    contact, account = response.json()["contact"], response.json()["account"]
    admin = str(org.admin_id)
    account_set = ["name", "owner_id"]
    contact_set = ["account_id", "email", "first_name", "last_name", "owner_id"]
    for module, record, fields in (
        ("accounts", account, account_set),
        ("contacts", contact, contact_set),
    ):
        entry = await created_entry(org, module, record["id"])
        assert entry["fields"] == fields
        assert entry["actor_id"] == admin
        event = await created_event(org, record["id"])
        assert (event["target_type"], event["fields"], event["actor_id"]) == (
            module[:-1],
            fields,
            admin,
        )
    account_entry = await created_entry(org, "accounts", account["id"])
    assert account_entry["changes"]["name"] == {"old": None, "new": "Analytical Engines"}
    contact_entry = await created_entry(org, "contacts", contact["id"])
    assert contact_entry["changes"]["email"] == {"old": None, "new": email}
    assert contact_entry["changes"]["account_id"] == {"old": None, "new": account["id"]}


async def test_convert_links_an_existing_account(org: Org) -> None:
    existing = await org.client.post(
        "/v1/accounts", json={"name": "Existing Co"}, headers=org.headers
    )
    assert existing.status_code == 201
    account_id = existing.json()["id"]
    lead = await create_lead(org, company="Some Other Name")

    response = await convert(org, lead["id"], {"account_id": account_id})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["account"]["id"] == account_id
    assert body["contact"]["account_id"] == account_id
    assert body["lead"]["converted_account_id"] == account_id
    assert await count_rows(org.app, "accounts", org.id) == 1


async def test_convert_without_account(org: Org) -> None:
    lead = await create_lead(org, company="Would Be Created")

    response = await convert(org, lead["id"], {"create_account": False})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["account"] is None
    assert body["contact"]["account_id"] is None
    assert body["lead"]["converted_account_id"] is None
    assert body["lead"]["status"] == "converted"
    assert await count_rows(org.app, "accounts", org.id) == 0
    assert await count_rows(org.app, "contacts", org.id) == 1


async def test_convert_lead_without_company_creates_no_account(org: Org) -> None:
    lead = await create_lead(org)

    response = await convert(org, lead["id"])

    assert response.status_code == 201, response.text
    assert response.json()["account"] is None
    assert await count_rows(org.app, "accounts", org.id) == 0


async def test_convert_carries_legal_basis_to_contact(org: Org) -> None:
    lead = await create_lead(
        org,
        legal_basis={"basis": "legitimate_interests", "assessment": "Asked for a quote at a fair."},
    )

    response = await convert(org, lead["id"])
    assert response.status_code == 201, response.text
    contact = response.json()["contact"]
    assert contact["legal_basis"]["basis"] == "legitimate_interests"

    history = await org.client.get(f"/v1/contacts/{contact['id']}/legal-basis", headers=org.headers)
    assert history.status_code == 200, history.text
    current = history.json()["current"]
    assert current["basis"] == "legitimate_interests"
    assert current["assessment"] == "Asked for a quote at a fair."
    assert current["carried_from_lead_id"] == lead["id"]
    assert len(history.json()["history"]) == 1


async def test_converting_twice_conflicts_and_creates_nothing(org: Org) -> None:
    lead = await create_lead(org, company="Twice Inc")
    first = await convert(org, lead["id"])
    assert first.status_code == 201, first.text
    counts = await record_counts(org)
    converted = await get_lead(org, lead["id"])

    second = await convert(org, lead["id"])

    assert_problem(second, 409)
    assert await record_counts(org) == counts
    assert await get_lead(org, lead["id"]) == converted


async def test_converted_lead_stays_converted_once(org: Org) -> None:
    """Whatever a later PATCH of the status does, the lead never yields a second contact."""
    lead = await create_lead(org)
    first = await convert(org, lead["id"])
    assert first.status_code == 201, first.text

    await org.client.patch(f"/v1/leads/{lead['id']}", json={"status": "new"}, headers=org.headers)
    again = await convert(org, lead["id"])

    assert_problem(again, 409)
    assert await count_rows(org.app, "contacts", org.id) == 1
    first_contact_id = first.json()["contact"]["id"]
    assert (await get_lead(org, lead["id"]))["converted_contact_id"] == first_contact_id


async def test_a_converted_lead_is_closed_on_every_path_but_can_be_shared_and_deleted(
    org: Org,
) -> None:
    lead = await create_lead(org, legal_basis={"basis": "consent"})
    assert (await convert(org, lead["id"])).status_code == 201
    converted = await get_lead(org, lead["id"])
    path = f"/v1/leads/{lead['id']}"

    refused = [
        await org.client.patch(path, json={"title": "Engineer"}, headers=org.headers),
        await org.client.put(
            f"{path}/legal-basis", json={"basis": "contract"}, headers=org.headers
        ),
        await convert(org, lead["id"]),
    ]

    for response in refused:
        assert_problem(response, 409)
    assert await get_lead(org, lead["id"]) == converted
    basis = await org.client.get(f"{path}/legal-basis", headers=org.headers)
    assert [entry["basis"] for entry in basis.json()["history"]] == ["consent"]
    # Sharing and deleting change nothing about the person, whom the contact carries on.
    group = await org.client.post("/v1/groups", json={"name": "Sales"}, headers=org.headers)
    shared = await org.client.put(
        f"{path}/shares/{group.json()['id']}", json={"access": "read_only"}, headers=org.headers
    )
    assert shared.status_code == 200, shared.text
    assert (await org.client.delete(path, headers=org.headers)).status_code == 204


async def test_convert_with_stale_if_match_is_refused(org: Org) -> None:
    lead = await create_lead(org, company="Stale Ltd")
    changed = await org.client.patch(
        f"/v1/leads/{lead['id']}", json={"status": "qualified"}, headers=org.headers
    )
    assert changed.status_code == 200
    counts = await record_counts(org)

    stale = await convert(org, lead["id"], if_match=lead["etag"])

    assert_problem(stale, 412)
    assert await record_counts(org) == counts
    assert (await get_lead(org, lead["id"]))["status"] == "qualified"

    current = await convert(org, lead["id"], if_match=changed.json()["etag"])
    assert current.status_code == 201, current.text


async def test_convert_with_unknown_account_changes_nothing(org: Org) -> None:
    lead = await create_lead(org, company="Ghost Co")
    counts = await record_counts(org)

    nowhere = "00000000-0000-4000-8000-000000000000"
    response = await convert(org, lead["id"], {"account_id": nowhere})

    body = assert_problem(response, 422)
    assert [error["field"] for error in body["errors"]] == ["body.account_id"]
    assert await record_counts(org) == counts
    assert await get_lead(org, lead["id"]) == lead


# --- rollback ---------------------------------------------------------------------------


async def install_contact_insert_refusal(org: Org, name: str) -> None:
    """A real trigger that fails every contact insert of `org` (and of no other organization)."""
    engine = org.app.state.engine
    async with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            await connection.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON contacts "
                    f"WHEN NEW.organization_id = '{org.id.hex}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            await connection.execute(
                text(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    f"BEGIN IF NEW.organization_id = '{org.id}'::uuid THEN "
                    "RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$"
                )
            )
            await connection.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON contacts "
                    f"FOR EACH ROW EXECUTE FUNCTION {name}()"
                )
            )


async def drop_contact_insert_refusal(org: Org, name: str) -> None:
    engine = org.app.state.engine
    async with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            await connection.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        else:
            await connection.execute(text(f"DROP TRIGGER IF EXISTS {name} ON contacts"))
            await connection.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))


async def test_failure_half_way_through_conversion_keeps_nothing(org: Org) -> None:
    marker = "ZZROLLBACK" + secrets.token_hex(4)
    lead = await create_lead(
        org, last_name=marker, company="Half Way Ltd", legal_basis={"basis": "consent"}
    )
    counts = await record_counts(org)
    trigger = f"refuse_contacts_{secrets.token_hex(4)}"
    await install_contact_insert_refusal(org, trigger)
    try:
        response = await convert(org, lead["id"])
    finally:
        await drop_contact_insert_refusal(org, trigger)

    assert 400 <= response.status_code < 600 and response.status_code != 201, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    for leaked in (marker, "Half Way Ltd", "refused", "INSERT", "contacts", "Traceback"):
        assert leaked not in response.text
    # The account was inserted before the contact failed; it must be gone with the rest.
    assert await record_counts(org) == counts
    assert await get_lead(org, lead["id"]) == lead

    # Nothing half-done blocks a later conversion.
    retried = await convert(org, lead["id"])
    assert retried.status_code == 201, retried.text
    assert await count_rows(org.app, "accounts", org.id) == 1
