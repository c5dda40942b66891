"""Accounts over HTTP: create, read, partial update, delete, filters, search and If-Match
concurrency; what happens to linked contacts when an account goes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Org, assert_problem, count_rows, error_fields


async def create_account(org: Org, **fields: Any) -> httpx.Response:
    payload: dict[str, Any] = {"name": "Analytical Engines Ltd", **fields}
    response = await org.client.post("/v1/accounts", json=payload, headers=org.headers)
    assert response.status_code == 201, response.text
    return response


async def get_account(org: Org, account_id: str) -> httpx.Response:
    return await org.client.get(f"/v1/accounts/{account_id}", headers=org.headers)


async def list_ids(org: Org, params: dict[str, str]) -> list[str]:
    response = await org.client.get("/v1/accounts", params=params, headers=org.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def search_ids(org: Org, body: dict[str, Any]) -> list[str]:
    response = await org.client.post("/v1/accounts/search", json=body, headers=org.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


# --- create and read -------------------------------------------------------------------------


async def test_create_answers_201_with_location_etag_and_the_record(org: Org) -> None:
    response = await create_account(
        org,
        name="Difference Engines plc",
        website="https://engines.example.com",
        industry="Machinery",
        phone="+44 20 7946 0000",
    )
    body = response.json()

    assert response.headers["Location"] == f"/v1/accounts/{body['id']}"
    assert response.headers["ETag"] == body["etag"]
    assert body["name"] == "Difference Engines plc"
    assert body["website"] == "https://engines.example.com"
    assert body["industry"] == "Machinery"
    assert body["phone"] == "+44 20 7946 0000"
    assert body["owner_id"] == str(org.admin_id)
    assert body["created_by_id"] == str(org.admin_id)

    fetched = await org.client.get(response.headers["Location"], headers=org.headers)
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["ETag"] == response.headers["ETag"]
    assert fetched.json() == body


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "body.name"),
        ({"name": ""}, "body.name"),
        ({"name": "x" * 201}, "body.name"),
        ({"name": "Acme", "website": "not a url"}, "body.website"),
        ({"name": "Acme", "phone": "call me"}, "body.phone"),
    ],
    ids=["no-name", "empty-name", "long-name", "bad-website", "bad-phone"],
)
async def test_invalid_account_is_refused_and_creates_nothing(
    org: Org, payload: dict[str, Any], field: str
) -> None:
    response = await org.client.post("/v1/accounts", json=payload, headers=org.headers)

    body = assert_problem(response, 422)
    assert field in error_fields(body)
    assert await count_rows(org.app, "accounts", org.id) == 0


async def test_accounts_have_no_source_or_legal_basis_to_send(org: Org) -> None:
    with_source = await org.client.post(
        "/v1/accounts",
        json={"name": "Acme", "source": {"channel": "import"}},
        headers=org.headers,
    )
    with_basis = await org.client.post(
        "/v1/accounts",
        json={"name": "Acme", "legal_basis": {"basis": "consent"}},
        headers=org.headers,
    )

    assert "body.source" in error_fields(assert_problem(with_source, 422))
    assert "body.legal_basis" in error_fields(assert_problem(with_basis, 422))
    assert await count_rows(org.app, "accounts", org.id) == 0


async def test_another_organizations_account_is_404(org: Org, other_org: Org) -> None:
    account = (await create_account(org)).json()

    assert_problem(await get_account(other_org, account["id"]), 404)
    assert_problem(
        await other_org.client.patch(
            f"/v1/accounts/{account['id']}", json={"name": "Mine"}, headers=other_org.headers
        ),
        404,
    )
    assert_problem(
        await other_org.client.delete(f"/v1/accounts/{account['id']}", headers=other_org.headers),
        404,
    )
    assert (await get_account(org, account["id"])).json() == account
    assert await list_ids(other_org, {}) == []


# --- partial update and delete ----------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(org: Org) -> None:
    created = (
        await create_account(
            org, website="https://acme.example.com", industry="Retail", phone="+1 555 0100"
        )
    ).json()

    response = await org.client.patch(
        f"/v1/accounts/{created['id']}", json={"industry": "Wholesale"}, headers=org.headers
    )

    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["industry"] == "Wholesale"
    assert updated["etag"] != created["etag"]
    assert response.headers["ETag"] == updated["etag"]
    changed = {"industry", "etag", "updated_at"}
    unchanged = {key: value for key, value in created.items() if key not in changed}
    assert {key: updated[key] for key in unchanged} == unchanged
    assert (await get_account(org, created["id"])).json() == updated


async def test_patch_with_null_name_is_refused_and_changes_nothing(org: Org) -> None:
    created = (await create_account(org)).json()

    response = await org.client.patch(
        f"/v1/accounts/{created['id']}", json={"name": None}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert "body.name" in error_fields(body)
    assert (await get_account(org, created["id"])).json() == created


async def test_patch_with_invalid_value_is_refused_and_changes_nothing(org: Org) -> None:
    created = (await create_account(org)).json()

    response = await org.client.patch(
        f"/v1/accounts/{created['id']}",
        json={"industry": "Retail", "website": "ftp://nope"},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert "body.website" in error_fields(body)
    assert (await get_account(org, created["id"])).json() == created


async def test_delete_answers_204_then_the_account_is_gone(org: Org) -> None:
    kept = (await create_account(org, name="Kept")).json()
    doomed = (await create_account(org, name="Doomed")).json()

    response = await org.client.delete(f"/v1/accounts/{doomed['id']}", headers=org.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await get_account(org, doomed["id"]), 404)
    assert_problem(
        await org.client.delete(f"/v1/accounts/{doomed['id']}", headers=org.headers), 404
    )
    assert await list_ids(org, {}) == [kept["id"]]


async def test_a_binned_account_keeps_its_contacts_and_purging_unlinks_them(org: Org) -> None:
    account = (await create_account(org)).json()
    contact = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Lovelace", "account_id": account["id"]},
        headers=org.headers,
    )
    assert contact.status_code == 201, contact.text
    contact_url = f"/v1/contacts/{contact.json()['id']}"

    deleted = await org.client.delete(f"/v1/accounts/{account['id']}", headers=org.headers)

    # In the recycle bin the account is gone from the API, but restoring it must bring the
    # relationship back, so the contact keeps it meanwhile.
    assert deleted.status_code == 204
    assert (
        await org.client.get(f"/v1/accounts/{account['id']}", headers=org.headers)
    ).status_code == 404
    fetched = await org.client.get(contact_url, headers=org.headers)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["account_id"] == account["id"]

    purged = await org.client.delete(
        f"/v1/recycle-bin/accounts/{account['id']}", headers=org.headers
    )

    assert purged.status_code == 204, purged.text
    fetched = await org.client.get(contact_url, headers=org.headers)
    assert fetched.json()["account_id"] is None
    assert fetched.json()["last_name"] == "Lovelace"


# --- list, filters and search -----------------------------------------------------------------


async def test_list_answers_data_and_next_cursor(org: Org) -> None:
    first = (await create_account(org, name="First")).json()
    second = (await create_account(org, name="Second")).json()

    response = await org.client.get("/v1/accounts", headers=org.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"data", "next_cursor"}
    assert body["next_cursor"] is None
    assert [item["id"] for item in body["data"]] == [second["id"], first["id"]]
    assert body["data"][0] == second


async def test_name_filter_is_exact(org: Org) -> None:
    wanted = (await create_account(org, name="Babbage & Co")).json()
    await create_account(org, name="Babbage & Co Holdings")
    await create_account(org, name="Lovelace Ltd")

    assert await list_ids(org, {"name": "Babbage & Co"}) == [wanted["id"]]
    assert await search_ids(org, {"name": "Babbage & Co"}) == [wanted["id"]]
    assert await list_ids(org, {"name": "Babbage"}) == []


async def test_phone_filter_is_exact(org: Org) -> None:
    wanted = (await create_account(org, phone="+1 555 0199")).json()
    await create_account(org, phone="+1 555 0198")

    assert await list_ids(org, {"phone": "+1 555 0199"}) == [wanted["id"]]
    assert await search_ids(org, {"phone": "+1 555 0199"}) == [wanted["id"]]


async def test_owner_filter(org: Org) -> None:
    colleague_headers = await org.add_user()
    me = await org.client.get("/v1/me", headers=colleague_headers)
    colleague = str(me.json()["id"])
    theirs = (await create_account(org, owner_id=colleague)).json()
    mine = (await create_account(org)).json()

    assert theirs["owner_id"] == colleague
    assert await list_ids(org, {"owner_id": colleague}) == [theirs["id"]]
    assert await list_ids(org, {"owner_id": str(org.admin_id)}) == [mine["id"]]
    assert await search_ids(org, {"owner_id": colleague}) == [theirs["id"]]


async def test_unknown_owner_is_refused_and_creates_nothing(org: Org) -> None:
    response = await org.client.post(
        "/v1/accounts", json={"name": "Acme", "owner_id": str(uuid.uuid4())}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert "body.owner_id" in error_fields(body)
    assert await count_rows(org.app, "accounts", org.id) == 0


async def test_search_answers_like_the_list(org: Org) -> None:
    await create_account(org, name="Same", phone="+1 555 0111")
    await create_account(org, name="Same", phone="+1 555 0111")
    await create_account(org, name="Other", phone="+1 555 0111")

    listed = await org.client.get(
        "/v1/accounts", params={"name": "Same", "phone": "+1 555 0111"}, headers=org.headers
    )
    searched = await org.client.post(
        "/v1/accounts/search", json={"name": "Same", "phone": "+1 555 0111"}, headers=org.headers
    )

    assert listed.status_code == searched.status_code == 200
    assert len(listed.json()["data"]) == 2
    assert searched.json() == listed.json()


async def test_person_filters_are_refused_on_accounts(org: Org) -> None:
    response = await org.client.get(
        "/v1/accounts", params={"email": "someone@example.com"}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert "query.email" in error_fields(body)


# --- optimistic concurrency -------------------------------------------------------------------


async def test_patch_with_current_etag_succeeds(org: Org) -> None:
    created = await create_account(org)

    response = await org.client.patch(
        f"/v1/accounts/{created.json()['id']}",
        json={"industry": "Retail"},
        headers={**org.headers, "If-Match": created.headers["ETag"]},
    )

    assert response.status_code == 200, response.text
    assert response.json()["industry"] == "Retail"
    assert response.headers["ETag"] != created.headers["ETag"]


async def test_patch_with_stale_etag_is_412_and_changes_nothing(org: Org) -> None:
    created = await create_account(org)
    account_id = created.json()["id"]
    first = await org.client.patch(
        f"/v1/accounts/{account_id}", json={"industry": "Retail"}, headers=org.headers
    )
    assert first.status_code == 200, first.text

    second = await org.client.patch(
        f"/v1/accounts/{account_id}",
        json={"industry": "Overwritten"},
        headers={**org.headers, "If-Match": created.headers["ETag"]},
    )

    assert_problem(second, 412)
    fetched = await get_account(org, account_id)
    assert fetched.json() == first.json()
    assert fetched.headers["ETag"] == first.headers["ETag"]


async def test_patch_with_if_match_star_and_without_if_match_succeed(org: Org) -> None:
    account_id = (await create_account(org)).json()["id"]

    star = await org.client.patch(
        f"/v1/accounts/{account_id}",
        json={"industry": "One"},
        headers={**org.headers, "If-Match": "*"},
    )
    bare = await org.client.patch(
        f"/v1/accounts/{account_id}", json={"industry": "Two"}, headers=org.headers
    )

    assert star.status_code == 200, star.text
    assert bare.status_code == 200, bare.text
    assert (await get_account(org, account_id)).json()["industry"] == "Two"


async def test_delete_with_stale_etag_is_412_and_keeps_the_account(org: Org) -> None:
    created = await create_account(org)
    account_id = created.json()["id"]
    changed = await org.client.patch(
        f"/v1/accounts/{account_id}", json={"industry": "Retail"}, headers=org.headers
    )

    response = await org.client.delete(
        f"/v1/accounts/{account_id}", headers={**org.headers, "If-Match": created.headers["ETag"]}
    )

    assert_problem(response, 412)
    assert (await get_account(org, account_id)).json() == changed.json()


async def test_delete_with_current_etag_or_star_succeeds(org: Org) -> None:
    first = await create_account(org)
    second = await create_account(org)

    by_etag = await org.client.delete(
        f"/v1/accounts/{first.json()['id']}",
        headers={**org.headers, "If-Match": first.headers["ETag"]},
    )
    by_star = await org.client.delete(
        f"/v1/accounts/{second.json()['id']}", headers={**org.headers, "If-Match": "*"}
    )

    assert by_etag.status_code == 204
    assert by_star.status_code == 204
    assert await list_ids(org, {}) == []
