"""Contacts over HTTP: create, read, partial update, delete, filters, search, account links,
If-Match concurrency and the server-set source."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Org, assert_problem, count_rows, error_fields, unique_email


async def create_contact(org: Org, **fields: Any) -> httpx.Response:
    payload: dict[str, Any] = {"last_name": "Lovelace", **fields}
    response = await org.client.post("/v1/contacts", json=payload, headers=org.headers)
    assert response.status_code == 201, response.text
    return response


async def create_account(org: Org, name: str = "Analytical Engines Ltd") -> dict[str, Any]:
    response = await org.client.post("/v1/accounts", json={"name": name}, headers=org.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def get_contact(org: Org, contact_id: str) -> httpx.Response:
    return await org.client.get(f"/v1/contacts/{contact_id}", headers=org.headers)


async def list_ids(org: Org, params: dict[str, str]) -> list[str]:
    response = await org.client.get("/v1/contacts", params=params, headers=org.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def search_ids(org: Org, body: dict[str, Any]) -> list[str]:
    response = await org.client.post("/v1/contacts/search", json=body, headers=org.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def user_id_of(org: Org, headers: dict[str, str]) -> str:
    response = await org.client.get("/v1/me", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


# --- create and read -------------------------------------------------------------------------


async def test_create_answers_201_with_location_etag_and_the_record(org: Org) -> None:
    email = unique_email("ada")
    response = await create_contact(
        org, first_name="Ada", email=email, phone="+44 20 7946 0018", title="Analyst"
    )
    body = response.json()

    assert response.headers["Location"] == f"/v1/contacts/{body['id']}"
    assert response.headers["ETag"] == body["etag"]
    assert body["first_name"] == "Ada"
    assert body["last_name"] == "Lovelace"
    assert body["email"] == email
    assert body["phone"] == "+44 20 7946 0018"
    assert body["title"] == "Analyst"
    assert body["account_id"] is None
    assert body["owner_id"] == str(org.admin_id)
    assert body["created_by_id"] == str(org.admin_id)

    fetched = await org.client.get(response.headers["Location"], headers=org.headers)
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["ETag"] == response.headers["ETag"]
    assert fetched.json() == body


async def test_create_without_last_name_is_refused_and_creates_nothing(org: Org) -> None:
    response = await org.client.post(
        "/v1/contacts", json={"first_name": "Ada"}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert "body.last_name" in error_fields(body)
    assert await count_rows(org.app, "contacts", org.id) == 0


async def test_create_with_invalid_email_is_refused_without_echoing_it(org: Org) -> None:
    response = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Lovelace", "email": "not-an-address"},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert "body.email" in error_fields(body)
    assert "not-an-address" not in response.text
    assert await count_rows(org.app, "contacts", org.id) == 0


async def test_unknown_contact_is_404(org: Org) -> None:
    response = await get_contact(org, str(uuid.uuid4()))

    assert_problem(response, 404)


async def test_another_organizations_contact_is_404(org: Org, other_org: Org) -> None:
    contact = (await create_contact(org)).json()

    seen = await get_contact(other_org, contact["id"])
    changed = await other_org.client.patch(
        f"/v1/contacts/{contact['id']}", json={"title": "Spy"}, headers=other_org.headers
    )
    deleted = await other_org.client.delete(
        f"/v1/contacts/{contact['id']}", headers=other_org.headers
    )

    assert_problem(seen, 404)
    assert_problem(changed, 404)
    assert_problem(deleted, 404)
    assert (await get_contact(org, contact["id"])).json() == contact
    assert await list_ids(other_org, {}) == []


async def test_without_credentials_is_401(org: Org) -> None:
    response = await org.client.get("/v1/contacts")

    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- partial update and delete ----------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(org: Org) -> None:
    email = unique_email("ada")
    created = (
        await create_contact(
            org, first_name="Ada", email=email, phone="+1 555 0100", title="Analyst"
        )
    ).json()

    response = await org.client.patch(
        f"/v1/contacts/{created['id']}", json={"title": "Chief Analyst"}, headers=org.headers
    )

    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["title"] == "Chief Analyst"
    assert updated["etag"] != created["etag"]
    assert response.headers["ETag"] == updated["etag"]
    assert updated["updated_at"] >= created["updated_at"]
    changed = {"title", "etag", "updated_at"}
    unchanged = {key: value for key, value in created.items() if key not in changed}
    assert {key: updated[key] for key in unchanged} == unchanged
    fetched = await get_contact(org, created["id"])
    assert fetched.json() == updated
    assert fetched.headers["ETag"] == updated["etag"]


async def test_patch_can_clear_an_optional_field(org: Org) -> None:
    created = (await create_contact(org, title="Analyst", phone="+1 555 0101")).json()

    response = await org.client.patch(
        f"/v1/contacts/{created['id']}", json={"title": None}, headers=org.headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["title"] is None
    assert response.json()["phone"] == "+1 555 0101"


async def test_patch_with_null_last_name_is_refused_and_changes_nothing(org: Org) -> None:
    created = (await create_contact(org)).json()

    response = await org.client.patch(
        f"/v1/contacts/{created['id']}", json={"last_name": None}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert "body.last_name" in error_fields(body)
    assert (await get_contact(org, created["id"])).json() == created


async def test_patch_with_unknown_field_is_refused_and_changes_nothing(org: Org) -> None:
    created = (await create_contact(org)).json()

    response = await org.client.patch(
        f"/v1/contacts/{created['id']}",
        json={"title": "CTO", "favourite_colour": "blue"},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert "body.favourite_colour" in error_fields(body)
    assert (await get_contact(org, created["id"])).json() == created


async def test_delete_answers_204_then_the_contact_is_gone(org: Org) -> None:
    kept = (await create_contact(org, last_name="Kept")).json()
    doomed = (await create_contact(org, last_name="Doomed")).json()

    response = await org.client.delete(f"/v1/contacts/{doomed['id']}", headers=org.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await get_contact(org, doomed["id"]), 404)
    assert_problem(
        await org.client.delete(f"/v1/contacts/{doomed['id']}", headers=org.headers), 404
    )
    assert await list_ids(org, {}) == [kept["id"]]


# --- list, filters and search -----------------------------------------------------------------


async def test_list_answers_data_and_next_cursor(org: Org) -> None:
    first = (await create_contact(org, last_name="First")).json()
    second = (await create_contact(org, last_name="Second")).json()

    response = await org.client.get("/v1/contacts", headers=org.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"data", "next_cursor"}
    assert body["next_cursor"] is None
    assert [item["id"] for item in body["data"]] == [second["id"], first["id"]]
    assert body["data"][0] == second


async def test_email_filter_is_exact_and_case_insensitive(org: Org) -> None:
    email = unique_email("grace")
    wanted = (await create_contact(org, email=email)).json()
    await create_contact(org, email=unique_email("grace"))
    await create_contact(org)

    assert await list_ids(org, {"email": email.upper()}) == [wanted["id"]]
    assert await list_ids(org, {"email": email}) == [wanted["id"]]
    assert await list_ids(org, {"email": email[:-1]}) == []
    assert await search_ids(org, {"email": email.upper()}) == [wanted["id"]]


async def test_stored_email_in_mixed_case_is_found_by_lowercase_filter(org: Org) -> None:
    email = unique_email("Mixed.Case")
    wanted = (await create_contact(org, email=email)).json()

    assert await list_ids(org, {"email": email.lower()}) == [wanted["id"]]
    assert await search_ids(org, {"email": email.lower()}) == [wanted["id"]]


async def test_phone_filter_is_exact(org: Org) -> None:
    wanted = (await create_contact(org, phone="+1 555 0199")).json()
    await create_contact(org, phone="+1 555 0198")

    assert await list_ids(org, {"phone": "+1 555 0199"}) == [wanted["id"]]
    assert await search_ids(org, {"phone": "+1 555 0199"}) == [wanted["id"]]
    assert await list_ids(org, {"phone": "+1 555 019"}) == []


async def test_owner_filter(org: Org) -> None:
    colleague = await user_id_of(org, await org.add_user())
    theirs = (await create_contact(org, owner_id=colleague)).json()
    mine = (await create_contact(org)).json()

    assert theirs["owner_id"] == colleague
    assert await list_ids(org, {"owner_id": colleague}) == [theirs["id"]]
    assert await list_ids(org, {"owner_id": str(org.admin_id)}) == [mine["id"]]
    assert await search_ids(org, {"owner_id": colleague}) == [theirs["id"]]


async def test_owner_of_another_organization_is_refused(org: Org, other_org: Org) -> None:
    response = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Lovelace", "owner_id": str(other_org.admin_id)},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert "body.owner_id" in error_fields(body)
    assert await count_rows(org.app, "contacts", org.id) == 0


async def test_account_filter(org: Org) -> None:
    account = await create_account(org)
    linked = (await create_contact(org, account_id=account["id"])).json()
    await create_contact(org)

    assert await list_ids(org, {"account_id": account["id"]}) == [linked["id"]]
    assert await search_ids(org, {"account_id": account["id"]}) == [linked["id"]]


async def test_filters_combine(org: Org) -> None:
    account = await create_account(org)
    email = unique_email("combo")
    both = (await create_contact(org, email=email, account_id=account["id"])).json()
    await create_contact(org, email=unique_email("combo"), account_id=account["id"])

    assert await list_ids(org, {"email": email, "account_id": account["id"]}) == [both["id"]]
    assert await search_ids(org, {"email": email, "account_id": str(uuid.uuid4())}) == []


async def test_search_answers_like_the_list(org: Org) -> None:
    email = unique_email("same")
    await create_contact(org, email=email, phone="+1 555 0111")
    await create_contact(org, email=email.upper(), phone="+1 555 0111")
    await create_contact(org, phone="+1 555 0111")

    listed = await org.client.get(
        "/v1/contacts", params={"email": email, "phone": "+1 555 0111"}, headers=org.headers
    )
    searched = await org.client.post(
        "/v1/contacts/search", json={"email": email, "phone": "+1 555 0111"}, headers=org.headers
    )

    assert listed.status_code == searched.status_code == 200
    assert len(listed.json()["data"]) == 2
    assert searched.json() == listed.json()


@pytest.mark.parametrize(
    "params",
    [{"favourite_colour": "blue"}, {"owner_id": "not-a-uuid"}, {"sort": "last_name"}],
    ids=["unknown-filter", "bad-owner-id", "unknown-sort"],
)
async def test_bad_list_query_is_refused(org: Org, params: dict[str, str]) -> None:
    response = await org.client.get("/v1/contacts", params=params, headers=org.headers)

    body = assert_problem(response, 422)
    assert f"query.{next(iter(params))}" in error_fields(body)


async def test_bad_search_body_is_refused(org: Org) -> None:
    response = await org.client.post(
        "/v1/contacts/search", json={"favourite_colour": "blue"}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert "body.favourite_colour" in error_fields(body)


# --- account links ----------------------------------------------------------------------------


async def test_contact_linked_to_an_account(org: Org) -> None:
    account = await create_account(org)

    contact = (await create_contact(org, account_id=account["id"])).json()

    assert contact["account_id"] == account["id"]
    assert (await get_contact(org, contact["id"])).json()["account_id"] == account["id"]


async def test_unknown_account_is_refused_and_creates_nothing(org: Org) -> None:
    response = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Lovelace", "account_id": str(uuid.uuid4())},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert "body.account_id" in error_fields(body)
    assert await count_rows(org.app, "contacts", org.id) == 0


async def test_account_of_another_organization_is_refused(org: Org, other_org: Org) -> None:
    foreign = await create_account(other_org)

    response = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Lovelace", "account_id": foreign["id"]},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert "body.account_id" in error_fields(body)
    assert await count_rows(org.app, "contacts", org.id) == 0


async def test_patch_to_unknown_account_is_refused_and_changes_nothing(org: Org) -> None:
    account = await create_account(org)
    contact = (await create_contact(org, account_id=account["id"])).json()

    response = await org.client.patch(
        f"/v1/contacts/{contact['id']}",
        json={"account_id": str(uuid.uuid4()), "title": "CTO"},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert "body.account_id" in error_fields(body)
    assert (await get_contact(org, contact["id"])).json() == contact


async def test_patch_moves_and_unlinks_the_account(org: Org) -> None:
    first = await create_account(org, "First Ltd")
    second = await create_account(org, "Second Ltd")
    contact = (await create_contact(org, account_id=first["id"])).json()

    moved = await org.client.patch(
        f"/v1/contacts/{contact['id']}", json={"account_id": second["id"]}, headers=org.headers
    )
    unlinked = await org.client.patch(
        f"/v1/contacts/{contact['id']}", json={"account_id": None}, headers=org.headers
    )

    assert moved.status_code == 200, moved.text
    assert moved.json()["account_id"] == second["id"]
    assert unlinked.status_code == 200, unlinked.text
    assert unlinked.json()["account_id"] is None
    assert await list_ids(org, {"account_id": second["id"]}) == []


# --- optimistic concurrency -------------------------------------------------------------------


async def test_patch_with_current_etag_succeeds(org: Org) -> None:
    created = await create_contact(org)

    response = await org.client.patch(
        f"/v1/contacts/{created.json()['id']}",
        json={"title": "CTO"},
        headers={**org.headers, "If-Match": created.headers["ETag"]},
    )

    assert response.status_code == 200, response.text
    assert response.json()["title"] == "CTO"
    assert response.headers["ETag"] != created.headers["ETag"]


async def test_patch_with_stale_etag_is_412_and_changes_nothing(org: Org) -> None:
    created = await create_contact(org, title="Analyst")
    contact_id = created.json()["id"]
    first = await org.client.patch(
        f"/v1/contacts/{contact_id}",
        json={"title": "Lead Analyst"},
        headers={**org.headers, "If-Match": created.headers["ETag"]},
    )
    assert first.status_code == 200, first.text

    second = await org.client.patch(
        f"/v1/contacts/{contact_id}",
        json={"title": "Overwritten"},
        headers={**org.headers, "If-Match": created.headers["ETag"]},
    )

    assert_problem(second, 412)
    fetched = await get_contact(org, contact_id)
    assert fetched.json() == first.json()
    assert fetched.headers["ETag"] == first.headers["ETag"]


@pytest.mark.parametrize("if_match", ['W/"1"', '"999"', "1"], ids=["weak", "other", "unquoted"])
async def test_patch_with_non_matching_etag_is_412(org: Org, if_match: str) -> None:
    created = (await create_contact(org, title="Analyst")).json()

    response = await org.client.patch(
        f"/v1/contacts/{created['id']}",
        json={"title": "Overwritten"},
        headers={**org.headers, "If-Match": if_match},
    )

    assert_problem(response, 412)
    assert (await get_contact(org, created["id"])).json() == created


async def test_patch_with_if_match_star_or_a_list_containing_the_etag_succeeds(org: Org) -> None:
    created = await create_contact(org)
    contact_id = created.json()["id"]

    star = await org.client.patch(
        f"/v1/contacts/{contact_id}",
        json={"title": "One"},
        headers={**org.headers, "If-Match": "*"},
    )
    listed = await org.client.patch(
        f"/v1/contacts/{contact_id}",
        json={"title": "Two"},
        headers={**org.headers, "If-Match": f'"999", {star.headers["ETag"]}'},
    )

    assert star.status_code == 200, star.text
    assert listed.status_code == 200, listed.text
    assert listed.json()["title"] == "Two"


async def test_patch_without_if_match_is_allowed(org: Org) -> None:
    created = (await create_contact(org)).json()

    response = await org.client.patch(
        f"/v1/contacts/{created['id']}", json={"title": "CTO"}, headers=org.headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["title"] == "CTO"


async def test_delete_with_stale_etag_is_412_and_keeps_the_contact(org: Org) -> None:
    created = await create_contact(org)
    contact_id = created.json()["id"]
    changed = await org.client.patch(
        f"/v1/contacts/{contact_id}", json={"title": "CTO"}, headers=org.headers
    )

    response = await org.client.delete(
        f"/v1/contacts/{contact_id}", headers={**org.headers, "If-Match": created.headers["ETag"]}
    )

    assert_problem(response, 412)
    assert (await get_contact(org, contact_id)).json() == changed.json()


async def test_delete_with_current_etag_or_star_succeeds(org: Org) -> None:
    first = await create_contact(org)
    second = await create_contact(org)

    by_etag = await org.client.delete(
        f"/v1/contacts/{first.json()['id']}",
        headers={**org.headers, "If-Match": first.headers["ETag"]},
    )
    by_star = await org.client.delete(
        f"/v1/contacts/{second.json()['id']}", headers={**org.headers, "If-Match": "*"}
    )

    assert by_etag.status_code == 204
    assert by_star.status_code == 204
    assert await list_ids(org, {}) == []


# --- source -----------------------------------------------------------------------------------


async def test_contact_created_by_a_user_has_manual_source(org: Org) -> None:
    contact = (await create_contact(org)).json()

    assert contact["source"]["channel"] == "manual"
    assert contact["source"]["client_id"] is None
    assert (await get_contact(org, contact["id"])).json()["source"] == contact["source"]


@pytest.mark.parametrize(
    "extra",
    [
        {"source": {"channel": "import"}},
        {"source_channel": "webform"},
        {"source_client_id": "partner"},
        {"source_form": "newsletter"},
        {"source_ip": "198.51.100.1"},
    ],
    ids=["source", "source_channel", "source_client_id", "source_form", "source_ip"],
)
async def test_source_cannot_be_sent_on_create(org: Org, extra: dict[str, Any]) -> None:
    response = await org.client.post(
        "/v1/contacts", json={"last_name": "Lovelace", **extra}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert f"body.{next(iter(extra))}" in error_fields(body)
    assert await count_rows(org.app, "contacts", org.id) == 0


@pytest.mark.parametrize(
    "extra",
    [{"source": {"channel": "import"}}, {"source_channel": "webform"}],
    ids=["source", "source_channel"],
)
async def test_source_cannot_be_changed_by_patch(org: Org, extra: dict[str, Any]) -> None:
    created = (await create_contact(org)).json()

    response = await org.client.patch(
        f"/v1/contacts/{created['id']}", json={"title": "CTO", **extra}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert f"body.{next(iter(extra))}" in error_fields(body)
    fetched = (await get_contact(org, created["id"])).json()
    assert fetched == created
    assert fetched["source"]["channel"] == "manual"
