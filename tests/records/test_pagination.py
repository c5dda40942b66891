"""Keyset pagination of record lists: limits, sort orders, walking every page, stability while
records are inserted, and refusal of cursors the service did not issue for this query."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import Org, assert_problem, error_fields, unique_email

MODULES = ["contacts", "accounts", "leads"]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def payload_for(module: str, n: int) -> dict[str, Any]:
    if module == "accounts":
        return {"name": f"Account {n}"}
    return {"last_name": f"Person {n}", "email": unique_email("page")}


async def create_records(org: Org, module: str, count: int) -> list[str]:
    """Create `count` records one after the other; their ids in creation order."""
    ids = []
    for n in range(count):
        response = await org.client.post(
            f"/v1/{module}", json=payload_for(module, n), headers=org.headers
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def fetch_page(org: Org, module: str, **params: Any) -> dict[str, Any]:
    sent = {name: value for name, value in params.items() if value is not None}
    response = await org.client.get(f"/v1/{module}", params=sent, headers=org.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def walk(org: Org, module: str, *, limit: int, sort: str | None = None) -> list[list[str]]:
    """Every page's ids, following next_cursor until it is null."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await fetch_page(org, module, limit=limit, sort=sort, cursor=cursor)
        pages.append([item["id"] for item in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) <= 50, "next_cursor never ended"


async def walk_from(org: Org, cursor: str | None, *, sort: str) -> list[list[str]]:
    """The ids of the contact pages (of two) that follow `cursor`."""
    pages: list[list[str]] = []
    while cursor is not None:
        page = await fetch_page(org, "contacts", limit=2, sort=sort, cursor=cursor)
        pages.append([item["id"] for item in page["data"]])
        cursor = page["next_cursor"]
    return pages


def flatten(pages: list[list[str]]) -> list[str]:
    return [record_id for page in pages for record_id in page]


@pytest.mark.parametrize("module", MODULES)
async def test_limit_is_respected(org: Org, module: str) -> None:
    await create_records(org, module, 3)

    page = await fetch_page(org, module, limit=2)

    assert len(page["data"]) == 2
    assert page["next_cursor"]


async def test_a_full_last_page_has_no_next_cursor(org: Org) -> None:
    ids = await create_records(org, "contacts", 4)

    pages = await walk(org, "contacts", limit=2)

    assert pages == [[ids[3], ids[2]], [ids[1], ids[0]]]


async def test_default_page_holds_fifty_and_the_maximum_is_accepted(org: Org) -> None:
    ids = await create_records(org, "accounts", 51)

    default = await fetch_page(org, "accounts")
    largest = await fetch_page(org, "accounts", limit=200)

    assert len(default["data"]) == 50
    assert default["next_cursor"]
    assert [item["id"] for item in largest["data"]] == ids[::-1]
    assert largest["next_cursor"] is None


@pytest.mark.parametrize("module", MODULES)
async def test_walking_every_page_returns_every_record_once(org: Org, module: str) -> None:
    ids = await create_records(org, module, 7)

    pages = await walk(org, module, limit=3)

    assert [len(page) for page in pages] == [3, 3, 1]
    assert flatten(pages) == ids[::-1]


@pytest.mark.parametrize(
    ("sort", "reverse"),
    [(None, True), ("-created_at", True), ("created_at", False)],
    ids=["default", "newest-first", "oldest-first"],
)
async def test_sort_by_creation(org: Org, sort: str | None, reverse: bool) -> None:
    ids = await create_records(org, "contacts", 5)

    pages = await walk(org, "contacts", limit=2, sort=sort)

    assert flatten(pages) == (ids[::-1] if reverse else ids)


async def test_sort_by_update(org: Org) -> None:
    ids = await create_records(org, "contacts", 4)
    for record_id in (ids[2], ids[0]):
        response = await org.client.patch(
            f"/v1/contacts/{record_id}", json={"title": "Touched"}, headers=org.headers
        )
        assert response.status_code == 200, response.text
    expected = [ids[1], ids[3], ids[2], ids[0]]

    ascending = flatten(await walk(org, "contacts", limit=3, sort="updated_at"))
    descending = flatten(await walk(org, "contacts", limit=3, sort="-updated_at"))

    assert ascending == expected
    assert descending == expected[::-1]


@pytest.mark.parametrize("sort", ["-created_at", "created_at"])
async def test_paging_is_stable_while_records_are_inserted(org: Org, sort: str) -> None:
    originals = await create_records(org, "contacts", 7)
    expected = originals[::-1] if sort == "-created_at" else originals

    first = await fetch_page(org, "contacts", limit=3, sort=sort)
    inserted = await create_records(org, "contacts", 4)
    second = await fetch_page(org, "contacts", limit=3, sort=sort, cursor=first["next_cursor"])
    inserted += await create_records(org, "contacts", 1)
    seen = [item["id"] for page in (first, second) for item in page["data"]]
    cursor = second["next_cursor"]
    while cursor is not None:
        page = await fetch_page(org, "contacts", limit=3, sort=sort, cursor=cursor)
        seen.extend(item["id"] for item in page["data"])
        cursor = page["next_cursor"]

    assert len(seen) == len(set(seen)), "a record was returned twice"
    assert [record_id for record_id in seen if record_id in set(originals)] == expected
    if sort == "-created_at":
        # Newest first: records added after page 1 belong before it, not on later pages.
        assert seen == expected
    else:
        # Oldest first: they come after every original, in the order they were made.
        assert seen == expected + inserted


async def test_paging_is_stable_while_records_are_deleted(org: Org) -> None:
    ids = await create_records(org, "contacts", 6)

    first = await fetch_page(org, "contacts", limit=2, sort="created_at")
    boundary = first["data"][-1]["id"]
    response = await org.client.delete(f"/v1/contacts/{boundary}", headers=org.headers)
    assert response.status_code == 204
    rest = flatten(await walk_from(org, first["next_cursor"], sort="created_at"))

    assert rest == ids[2:]


async def test_filters_apply_on_every_page(org: Org) -> None:
    await create_records(org, "accounts", 2)
    wanted = []
    for _ in range(5):
        response = await org.client.post(
            "/v1/accounts", json={"name": "Wanted", "phone": "+1 555 0123"}, headers=org.headers
        )
        assert response.status_code == 201, response.text
        wanted.append(response.json()["id"])
    await create_records(org, "accounts", 2)

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await fetch_page(org, "accounts", limit=2, name="Wanted", cursor=cursor)
        pages.append([item["id"] for item in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert flatten(pages) == wanted[::-1]


async def test_search_pages_with_the_cursor_in_the_body(org: Org) -> None:
    ids = await create_records(org, "contacts", 5)

    seen: list[str] = []
    body: dict[str, Any] = {"limit": 2, "sort": "created_at"}
    while True:
        response = await org.client.post("/v1/contacts/search", json=body, headers=org.headers)
        assert response.status_code == 200, response.text
        seen.extend(item["id"] for item in response.json()["data"])
        if response.json()["next_cursor"] is None:
            break
        body["cursor"] = response.json()["next_cursor"]

    assert seen == ids


async def test_cursor_carries_no_field_values(org: Org) -> None:
    email = unique_email("secret")
    for n in range(2):
        response = await org.client.post(
            "/v1/contacts",
            json={"first_name": "Ada", "last_name": f"Zyxwvut{n}", "email": email},
            headers=org.headers,
        )
        assert response.status_code == 201, response.text

    cursor = (await fetch_page(org, "contacts", limit=1))["next_cursor"]

    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode(errors="replace")
    for value in (email, email.split("@")[0], "Zyxwvut", "Ada"):
        assert value not in cursor
        assert value not in decoded


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        b64(b"junk that is not json"),
        b64(b"[1, 2, 3]"),
        b64(json.dumps({"s": "-created_at"}).encode()),
        b64(json.dumps({"s": "-created_at", "v": "yesterday", "i": "0" * 32}).encode()),
        b64(json.dumps({"s": "-created_at", "v": "2026-01-01T00:00:00", "i": "0" * 32}).encode()),
        b64(json.dumps({"s": "name", "v": "2026-01-01T00:00:00+00:00", "i": "0" * 32}).encode()),
        b64(json.dumps({"s": "-created_at", "v": "2026-01-01T00:00Z", "i": "xyz"}).encode()),
        b64(b"\xff\xfe\xfd"),
    ],
    ids=[
        "garbage",
        "base64-of-junk",
        "json-list",
        "missing-keys",
        "bad-timestamp",
        "naive-timestamp",
        "unknown-sort",
        "bad-id",
        "not-utf8",
    ],
)
async def test_malformed_cursor_is_refused(org: Org, cursor: str) -> None:
    response = await org.client.get("/v1/contacts", params={"cursor": cursor}, headers=org.headers)

    body = assert_problem(response, 422)
    assert error_fields(body) == {"query.cursor"}


async def test_cursor_for_another_sort_is_refused(org: Org) -> None:
    await create_records(org, "contacts", 3)
    cursor = (await fetch_page(org, "contacts", limit=1, sort="created_at"))["next_cursor"]
    assert cursor

    for other in ("-created_at", "updated_at", "-updated_at"):
        response = await org.client.get(
            "/v1/contacts", params={"cursor": cursor, "sort": other}, headers=org.headers
        )
        body = assert_problem(response, 422)
        assert error_fields(body) == {"query.cursor"}
    # The default sort is newest first, so leaving `sort` out is also another sort.
    response = await org.client.get("/v1/contacts", params={"cursor": cursor}, headers=org.headers)
    assert error_fields(assert_problem(response, 422)) == {"query.cursor"}


async def test_malformed_cursor_in_search_body_is_refused(org: Org) -> None:
    response = await org.client.post(
        "/v1/contacts/search", json={"cursor": "garbage!!"}, headers=org.headers
    )

    body = assert_problem(response, 422)
    # Either location names the field; the service currently says `query.cursor`.
    assert error_fields(body) in ({"query.cursor"}, {"body.cursor"})


async def test_overlong_cursor_is_refused(org: Org) -> None:
    response = await org.client.get(
        "/v1/contacts", params={"cursor": "a" * 600}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert error_fields(body) == {"query.cursor"}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten"])
async def test_limit_out_of_range_is_refused(org: Org, module: str, limit: str) -> None:
    response = await org.client.get(f"/v1/{module}", params={"limit": limit}, headers=org.headers)

    body = assert_problem(response, 422)
    assert error_fields(body) == {"query.limit"}


async def test_limit_out_of_range_in_search_body_is_refused(org: Org) -> None:
    response = await org.client.post(
        "/v1/contacts/search", json={"limit": 201}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert error_fields(body) == {"body.limit"}
