"""Organizations never see or touch each other's records, users or references.

Another organization's ids answer 404 on every record route (as if they did not exist), its
records stay unchanged, never show up in lists or searches, and cannot be referenced as an
account or owner.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Org, assert_problem, count_rows, unique_email

MODULES = ("leads", "contacts", "accounts")
PERSON_MODULES = ("leads", "contacts")


async def create(org: Org, module: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = await org.client.post(f"/v1/{module}", json=payload, headers=org.headers)
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    return record


async def fetch(org: Org, module: str, record_id: str) -> dict[str, Any]:
    response = await org.client.get(f"/v1/{module}/{record_id}", headers=org.headers)
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


async def counts(org: Org) -> dict[str, int]:
    return {
        table: await count_rows(org.app, table, org.id)
        for table in ("leads", "contacts", "accounts", "legal_basis_entries")
    }


async def seed(org: Org) -> dict[str, dict[str, Any]]:
    """One record of each module, the lead and contact with a legal basis."""
    account = await create(org, "accounts", {"name": "Their Account", "phone": "+1 555 0100"})
    return {
        "accounts": account,
        "leads": await create(
            org,
            "leads",
            {
                "last_name": "Theirs",
                "email": unique_email("lead"),
                "phone": "+1 555 0101",
                "company": "Their Company",
                "legal_basis": {"basis": "consent"},
            },
        ),
        "contacts": await create(
            org,
            "contacts",
            {
                "last_name": "Theirs",
                "email": unique_email("contact"),
                "phone": "+1 555 0102",
                "account_id": account["id"],
                "legal_basis": {"basis": "contract"},
            },
        ),
    }


UPDATES = {
    "leads": {"last_name": "Hijacked", "status": "qualified"},
    "contacts": {"last_name": "Hijacked"},
    "accounts": {"name": "Hijacked"},
}


# --- another organization's ids are 404 ---------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
async def test_other_orgs_record_is_not_found_and_unchanged(
    org: Org, other_org: Org, module: str
) -> None:
    theirs = (await seed(other_org))[module]
    path = f"/v1/{module}/{theirs['id']}"
    before = await counts(other_org)

    assert_problem(await org.client.get(path, headers=org.headers), 404)
    assert_problem(await org.client.patch(path, json=UPDATES[module], headers=org.headers), 404)
    assert_problem(
        await org.client.patch(
            path, json=UPDATES[module], headers={**org.headers, "If-Match": theirs["etag"]}
        ),
        404,
    )
    assert_problem(await org.client.delete(path, headers=org.headers), 404)
    assert_problem(await org.client.delete(path, headers={**org.headers, "If-Match": "*"}), 404)

    assert await fetch(other_org, module, theirs["id"]) == theirs
    assert await counts(other_org) == before


async def test_other_orgs_lead_cannot_be_converted(org: Org, other_org: Org) -> None:
    lead = (await seed(other_org))["leads"]
    before_theirs, before_ours = await counts(other_org), await counts(org)

    for payload in ({}, {"create_account": False}):
        response = await org.client.post(
            f"/v1/leads/{lead['id']}/convert", json=payload, headers=org.headers
        )
        assert_problem(response, 404)

    assert await fetch(other_org, "leads", lead["id"]) == lead
    assert await counts(other_org) == before_theirs
    assert await counts(org) == before_ours


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_other_orgs_legal_basis_is_not_found_and_unchanged(
    org: Org, other_org: Org, module: str
) -> None:
    theirs = (await seed(other_org))[module]
    path = f"/v1/{module}/{theirs['id']}/legal-basis"
    history = await other_org.client.get(path, headers=other_org.headers)
    assert history.status_code == 200

    assert_problem(await org.client.get(path, headers=org.headers), 404)
    put = await org.client.put(
        path,
        json={"basis": "legitimate_interests", "assessment": "We would like to."},
        headers=org.headers,
    )
    assert_problem(put, 404)

    assert (await other_org.client.get(path, headers=other_org.headers)).json() == history.json()
    assert await fetch(other_org, module, theirs["id"]) == theirs
    assert await count_rows(org.app, "legal_basis_entries", org.id) == 0


async def test_not_found_answers_alike_for_other_org_and_missing_ids(
    org: Org, other_org: Org
) -> None:
    """A caller cannot tell another organization's id from one that does not exist."""
    theirs = (await seed(other_org))["contacts"]
    foreign = await org.client.get(f"/v1/contacts/{theirs['id']}", headers=org.headers)
    missing = await org.client.get(
        "/v1/contacts/00000000-0000-4000-8000-000000000000", headers=org.headers
    )
    foreign_body, missing_body = assert_problem(foreign, 404), assert_problem(missing, 404)
    del foreign_body["instance"], missing_body["instance"]
    assert foreign_body == missing_body


async def test_other_orgs_user_is_not_found(org: Org, other_org: Org) -> None:
    response = await org.client.get(f"/v1/users/{other_org.admin_id}", headers=org.headers)
    assert_problem(response, 404)
    assert other_org.admin_email not in response.text

    listed = await org.client.get("/v1/users", headers=org.headers)
    assert listed.status_code == 200
    assert str(other_org.admin_id) not in [user["id"] for user in listed.json()["data"]]


# --- lists and searches ----------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
async def test_lists_show_only_own_records(org: Org, other_org: Org, module: str) -> None:
    theirs = (await seed(other_org))[module]
    ours = (await seed(org))[module]

    listed = await org.client.get(f"/v1/{module}", headers=org.headers)
    assert listed.status_code == 200
    assert [record["id"] for record in listed.json()["data"]] == [ours["id"]]

    searched = await org.client.post(f"/v1/{module}/search", json={}, headers=org.headers)
    assert searched.status_code == 200
    assert [record["id"] for record in searched.json()["data"]] == [ours["id"]]
    assert theirs["id"] not in searched.text


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_filters_never_match_other_orgs_records(
    org: Org, other_org: Org, module: str
) -> None:
    theirs = (await seed(other_org))[module]

    for filters in ({"email": theirs["email"]}, {"phone": theirs["phone"]}):
        listed = await org.client.get(f"/v1/{module}", params=filters, headers=org.headers)
        assert listed.status_code == 200, listed.text
        assert listed.json()["data"] == []
        searched = await org.client.post(f"/v1/{module}/search", json=filters, headers=org.headers)
        assert searched.status_code == 200, searched.text
        assert searched.json()["data"] == []
        # The filter does find it for its own organization: the query itself is right.
        own = await other_org.client.post(
            f"/v1/{module}/search", json=filters, headers=other_org.headers
        )
        assert [record["id"] for record in own.json()["data"]] == [theirs["id"]]


async def test_account_and_owner_filters_never_match_other_orgs_records(
    org: Org, other_org: Org
) -> None:
    their = await seed(other_org)

    by_account = await org.client.get(
        "/v1/contacts", params={"account_id": their["accounts"]["id"]}, headers=org.headers
    )
    assert by_account.status_code == 200
    assert by_account.json()["data"] == []
    for module in MODULES:
        by_owner = await org.client.get(
            f"/v1/{module}", params={"owner_id": str(other_org.admin_id)}, headers=org.headers
        )
        assert by_owner.status_code == 200
        assert by_owner.json()["data"] == []


# --- references to another organization ------------------------------------------------


async def test_contact_cannot_reference_other_orgs_account(org: Org, other_org: Org) -> None:
    their_account = (await seed(other_org))["accounts"]
    before = await counts(org)

    created = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Mine", "account_id": their_account["id"]},
        headers=org.headers,
    )
    body = assert_problem(created, 422)
    assert [error["field"] for error in body["errors"]] == ["body.account_id"]
    assert await counts(org) == before

    mine = await create(org, "contacts", {"last_name": "Mine"})
    patched = await org.client.patch(
        f"/v1/contacts/{mine['id']}", json={"account_id": their_account["id"]}, headers=org.headers
    )
    body = assert_problem(patched, 422)
    assert [error["field"] for error in body["errors"]] == ["body.account_id"]
    assert await fetch(org, "contacts", mine["id"]) == mine


async def test_lead_conversion_cannot_link_other_orgs_account(org: Org, other_org: Org) -> None:
    their_account = (await seed(other_org))["accounts"]
    lead = await create(org, "leads", {"last_name": "Mine", "company": "Mine Ltd"})
    before_ours, before_theirs = await counts(org), await counts(other_org)

    response = await org.client.post(
        f"/v1/leads/{lead['id']}/convert",
        json={"account_id": their_account["id"]},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert [error["field"] for error in body["errors"]] == ["body.account_id"]
    assert await counts(org) == before_ours
    assert await counts(other_org) == before_theirs
    assert await fetch(org, "leads", lead["id"]) == lead
    assert await fetch(other_org, "accounts", their_account["id"]) == their_account


OWNED_PAYLOADS = {
    "leads": {"last_name": "Owned"},
    "contacts": {"last_name": "Owned"},
    "accounts": {"name": "Owned"},
}


@pytest.mark.parametrize("module", MODULES)
async def test_owner_cannot_be_other_orgs_user(org: Org, other_org: Org, module: str) -> None:
    stranger = str(other_org.admin_id)
    before = await counts(org)

    created = await org.client.post(
        f"/v1/{module}", json={**OWNED_PAYLOADS[module], "owner_id": stranger}, headers=org.headers
    )
    body = assert_problem(created, 422)
    assert [error["field"] for error in body["errors"]] == ["body.owner_id"]
    assert await counts(org) == before

    mine = await create(org, module, OWNED_PAYLOADS[module])
    patched = await org.client.patch(
        f"/v1/{module}/{mine['id']}", json={"owner_id": stranger}, headers=org.headers
    )
    body = assert_problem(patched, 422)
    assert [error["field"] for error in body["errors"]] == ["body.owner_id"]
    assert await fetch(org, module, mine["id"]) == mine
