"""Sensitive fields: masked for profiles without view_sensitive, revealed (and audited) for
profiles with it.

A caller without view_sensitive gets every sensitive field of the module as null, named in
`masked_fields`, in every response that shows a record (get, list, lookup, search, update,
conversion), and is refused (403) when setting or filtering on one. A caller with it sees the
values, and each response that shows a stored sensitive value writes one
`record.sensitive_revealed` event, naming the records whose values it showed and the fields,
never the values.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from tests.access.conftest import (
    LOOKUP_FIELD,
    MODULES,
    PERSON_MODULES,
    SENSITIVE_FIELD,
    Member,
    add_member,
    admin_get,
    audit_events,
    create_profile,
    create_record,
    record_fields,
)
from tests.conftest import Org, assert_problem, count_rows

REVEALED = "record.sensitive_revealed"
NOUN = {"leads": "lead", "contacts": "contact", "accounts": "account"}


def secret_id() -> str:
    return "ID " + secrets.token_hex(5).upper()


async def sensitive_record(org: Org, module: str, owner: Member | None = None) -> dict[str, Any]:
    """A record whose sensitive field holds a value, created by the administrator."""
    return await create_record(
        org,
        module,
        owner_id=owner.id if owner else None,
        **{SENSITIVE_FIELD[module]: secret_id()},
    )


async def reveals(org: Org) -> list[dict[str, Any]]:
    return await audit_events(org, action=REVEALED)


def assert_masked(body: dict[str, Any], module: str, source: dict[str, Any]) -> None:
    field = SENSITIVE_FIELD[module]
    assert body[field] is None
    assert body["masked_fields"] == [field]
    lookup = LOOKUP_FIELD[module]
    assert body[lookup] == source[lookup], "only sensitive fields are masked"


@pytest.mark.parametrize("module", MODULES)
async def test_standard_user_gets_sensitive_fields_masked_everywhere(org: Org, module: str) -> None:
    user = await add_member(org)
    record = await sensitive_record(org, module, owner=user)
    path = f"/v1/{module}/{record['id']}"
    lookup = {LOOKUP_FIELD[module]: record[LOOKUP_FIELD[module]]}
    h = user.headers

    got = await org.client.get(path, headers=h)
    assert got.status_code == 200, got.text
    assert_masked(got.json(), module, record)
    listed = await org.client.get(f"/v1/{module}", headers=h)
    found = await org.client.get(f"/v1/{module}", params=lookup, headers=h)
    searched = await org.client.post(f"/v1/{module}/search", json=lookup, headers=h)
    for page in (listed, found, searched):
        assert page.status_code == 200, page.text
        [item] = page.json()["data"]
        assert_masked(item, module, record)
    updated = await org.client.patch(path, json={"description": "Called back"}, headers=h)
    assert updated.status_code == 200, updated.text
    assert_masked(updated.json(), module, record)

    # The value is still stored, and nothing was revealed to anyone.
    assert (await admin_get(org, module, record["id"])).json()[SENSITIVE_FIELD[module]] == record[
        SENSITIVE_FIELD[module]
    ]
    assert len(await reveals(org)) == 1  # the administrator's read just above


@pytest.mark.parametrize("module", MODULES)
async def test_masked_fields_name_every_sensitive_field_even_when_empty(
    org: Org, module: str
) -> None:
    user = await add_member(org)
    record = await create_record(org, module, owner_id=user.id)

    got = await org.client.get(f"/v1/{module}/{record['id']}", headers=user.headers)

    assert got.json()["masked_fields"] == [SENSITIVE_FIELD[module]]
    assert record["masked_fields"] == []  # the administrator's own create response


@pytest.mark.parametrize("module", MODULES)
async def test_standard_user_cannot_set_sensitive_fields(org: Org, module: str) -> None:
    user = await add_member(org)
    field = SENSITIVE_FIELD[module]
    before = await count_rows(org.app, module, org.id)

    refused = await org.client.post(
        f"/v1/{module}", json=record_fields(module, **{field: secret_id()}), headers=user.headers
    )
    assert_problem(refused, 403)
    assert await count_rows(org.app, module, org.id) == before

    record = await sensitive_record(org, module, owner=user)
    path = f"/v1/{module}/{record['id']}"
    for value in (secret_id(), None):
        refused = await org.client.patch(
            path, json={field: value, "description": "With it"}, headers=user.headers
        )
        assert_problem(refused, 403)
    after = (await admin_get(org, module, record["id"])).json()
    assert after[field] == record[field]
    assert after["description"] is None
    assert after["etag"] == record["etag"]


async def test_a_field_made_sensitive_is_masked_and_cannot_be_filtered_on(org: Org) -> None:
    user = await add_member(org)
    contact = await create_record(org, "contacts", owner_id=user.id, phone="+44 20 7946 0018")
    classified = await org.client.put(
        "/v1/settings/fields/contacts", json={"fields": {"email": "sensitive"}}, headers=org.headers
    )
    assert classified.status_code == 200, classified.text
    by_email = {"email": contact["email"]}

    got = (await org.client.get(f"/v1/contacts/{contact['id']}", headers=user.headers)).json()
    assert got["email"] is None and got["national_id"] is None
    assert got["masked_fields"] == ["email", "national_id"]
    assert_problem(await org.client.get("/v1/contacts", params=by_email, headers=user.headers), 403)
    assert_problem(
        await org.client.post("/v1/contacts/search", json=by_email, headers=user.headers), 403
    )
    assert_problem(
        await org.client.post("/v1/contacts", json=record_fields("contacts"), headers=user.headers),
        403,
    )
    # Filters on fields that are not sensitive still work for the user ...
    by_phone = await org.client.get(
        "/v1/contacts", params={"phone": "+442079460018"}, headers=user.headers
    )
    assert by_phone.status_code == 200, by_phone.text
    assert [c["id"] for c in by_phone.json()["data"]] == [contact["id"]]
    # ... and the administrator still finds the contact by email and sees it.
    found = await org.client.get("/v1/contacts", params=by_email, headers=org.headers)
    assert found.status_code == 200, found.text
    [item] = found.json()["data"]
    assert item["email"] == contact["email"] and item["masked_fields"] == []


async def test_one_reveal_event_per_response_naming_the_records_it_showed(org: Org) -> None:
    shown = [await sensitive_record(org, "contacts") for _ in range(3)]
    empty = await create_record(org, "contacts")
    assert await reveals(org) == [], "the creator sent the values: no reveal"

    single = await admin_get(org, "contacts", shown[0]["id"])
    assert single.json()["national_id"] == shown[0]["national_id"]
    assert single.json()["masked_fields"] == []
    [event] = await reveals(org)
    assert (event["target_type"], event["target_id"], event["target_ids"], event["fields"]) == (
        "contact",
        shown[0]["id"],
        [shown[0]["id"]],
        ["national_id"],
    )
    assert event["actor_id"] == str(org.admin_id)
    assert event["reason"] == "record"

    assert (await admin_get(org, "contacts", empty["id"])).json()["national_id"] is None
    assert len(await reveals(org)) == 1, "nothing stored, nothing revealed"

    listed = await org.client.get("/v1/contacts", headers=org.headers)
    assert listed.status_code == 200, listed.text
    assert {c["id"]: c["national_id"] for c in listed.json()["data"]} == {
        **{r["id"]: r["national_id"] for r in shown},
        empty["id"]: None,
    }
    events = await reveals(org)
    assert len(events) == 2, "one event for the whole page"
    [from_list] = [e for e in events if e["id"] != event["id"]]
    assert from_list["target_type"] == "contact" and from_list["reason"] == "list"
    assert from_list["target_id"] is None, "several records: none of them is the target"
    assert sorted(from_list["target_ids"]) == sorted(r["id"] for r in shown)
    assert from_list["fields"] == ["national_id"]

    # Looking for the events about one record finds the list's event too.
    about_one = await audit_events(org, action=REVEALED, target_id=shown[1]["id"])
    assert [e["id"] for e in about_one] == [from_list["id"]]

    everything = json.dumps(await audit_events(org))
    for record in (*shown, empty):
        assert record["email"] not in everything
        assert record["national_id"] is None or record["national_id"] not in everything


@pytest.mark.parametrize("module", MODULES)
async def test_each_module_audits_its_reveals(org: Org, module: str) -> None:
    record = await sensitive_record(org, module)

    got = await admin_get(org, module, record["id"])
    updated = await org.client.patch(
        f"/v1/{module}/{record['id']}", json={"description": "Checked"}, headers=org.headers
    )

    assert got.json()[SENSITIVE_FIELD[module]] == record[SENSITIVE_FIELD[module]]
    assert updated.json()[SENSITIVE_FIELD[module]] == record[SENSITIVE_FIELD[module]]
    events = await reveals(org)
    assert [(e["target_type"], e["target_id"], e["fields"]) for e in events] == [
        (NOUN[module], record["id"], [SENSITIVE_FIELD[module]])
    ] * 2


async def test_a_custom_profile_with_view_sensitive_sees_and_is_audited(org: Org) -> None:
    profile = await create_profile(
        org, {module: ["create", "read", "update"] for module in MODULES}, view_sensitive=True
    )
    analyst = await add_member(org, profile_id=profile)
    contact = await sensitive_record(org, "contacts", owner=analyst)
    standard = await add_member(org)
    assert_problem(
        await org.client.get(f"/v1/contacts/{contact['id']}", headers=standard.headers), 404
    )

    got = await org.client.get(f"/v1/contacts/{contact['id']}", headers=analyst.headers)

    assert got.json()["national_id"] == contact["national_id"]
    assert got.json()["masked_fields"] == []
    [event] = await reveals(org)
    assert event["actor_id"] == analyst.id and event["target_id"] == contact["id"]
    # And they may set the field.
    created = await org.client.post(
        "/v1/contacts",
        json=record_fields("contacts", national_id=secret_id()),
        headers=analyst.headers,
    )
    assert created.status_code == 201, created.text


async def test_converting_a_lead_shows_a_standard_user_no_sensitive_value(org: Org) -> None:
    user = await add_member(org)
    lead = await sensitive_record(org, "leads", owner=user)

    converted = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json={}, headers=user.headers
    )

    assert converted.status_code == 201, converted.text
    body = converted.json()
    assert body["lead"]["national_id"] is None
    assert body["lead"]["masked_fields"] == ["national_id"]
    assert body["contact"]["national_id"] is None
    assert body["contact"]["masked_fields"] == ["national_id"]
    # The contact carries the value (the administrator sees it); the user never did.
    contact = await admin_get(org, "contacts", body["contact"]["id"])
    assert contact.json()["national_id"] == lead["national_id"]


async def test_converting_a_lead_audits_what_it_reveals(org: Org) -> None:
    lead = await sensitive_record(org, "leads")

    converted = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json={}, headers=org.headers
    )

    assert converted.status_code == 201, converted.text
    body = converted.json()
    assert body["lead"]["national_id"] == lead["national_id"]
    assert body["contact"]["national_id"] == lead["national_id"]
    [event] = await reveals(org)
    assert (event["target_type"], event["target_id"], event["reason"]) == (
        "lead",
        None,
        "conversion",
    )
    assert sorted(event["target_ids"]) == sorted([lead["id"], body["contact"]["id"]])
    assert event["fields"] == ["national_id"]


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_reading_through_sharing_is_masked_too(org: Org, module: str) -> None:
    owner = await add_member(org)
    reader = await add_member(org)
    record = await sensitive_record(org, module, owner=owner)
    shared = await org.client.put(
        "/v1/settings/sharing",
        json={"leads": "read_only", "contacts": "read_only", "accounts": "private"},
        headers=org.headers,
    )
    assert shared.status_code == 200, shared.text

    got = await org.client.get(f"/v1/{module}/{record['id']}", headers=reader.headers)

    assert got.status_code == 200, got.text
    assert_masked(got.json(), module, record)
    assert await reveals(org) == []
