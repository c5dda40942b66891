"""Bad input answers a clear 4xx problem+json, never echoes the value, and changes nothing.

Every submitted value below carries a distinctive marker (``ZZSECRET123``); it must not
come back in any response body, since submitted values may be personal data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import Org, assert_problem, count_rows

SECRET = "ZZSECRET123"
SECRET_NUMBER = 987654321

VALID_CREATE: dict[str, dict[str, Any]] = {
    "contacts": {"first_name": "Valid", "last_name": "Person"},
    "leads": {"first_name": "Valid", "last_name": "Person", "company": "Valid Co"},
    "accounts": {"name": "Valid Co"},
}

# (module, field, submitted value, rule pydantic reports)
PERSON_CASES: list[tuple[str, Any, str]] = [
    ("last_name", SECRET_NUMBER, "string_type"),
    ("first_name", [SECRET], "string_type"),
    ("first_name", SECRET + "x" * 90, "string_too_long"),
    ("title", SECRET + "x" * 90, "string_too_long"),
    ("email", f"{SECRET}@", "email"),
    ("email", f"{SECRET} at example.com", "email"),
    ("email", f"{SECRET}{'a' * 250}@example.com", "string_too_long"),
    ("phone", f"call {SECRET}", "string_pattern_mismatch"),
    ("phone", "+1 555 " + "0" * 40, "string_too_long"),
    ("owner_id", SECRET, "uuid_parsing"),
    ("nickname", SECRET, "extra_forbidden"),
    ("source", {"channel": "import", "form": SECRET}, "extra_forbidden"),
]
FIELD_CASES: list[tuple[str, str, Any, str]] = [
    *[("contacts", *case) for case in PERSON_CASES],
    *[("leads", *case) for case in PERSON_CASES],
    ("contacts", "account_id", SECRET, "uuid_parsing"),
    ("contacts", "account_id", SECRET_NUMBER, "uuid_type"),
    ("leads", "company", SECRET + "x" * 200, "string_too_long"),
    ("leads", "status", SECRET, "enum"),
    ("leads", "status", "converted", "enum"),
    ("accounts", "name", SECRET_NUMBER, "string_type"),
    ("accounts", "name", SECRET + "x" * 200, "string_too_long"),
    ("accounts", "name", "   ", "string_too_short"),
    ("accounts", "website", f"ftp://{SECRET}", "string_pattern_mismatch"),
    ("accounts", "industry", SECRET + "x" * 100, "string_too_long"),
    ("accounts", "phone", SECRET, "string_pattern_mismatch"),
    ("accounts", "owner_id", SECRET, "uuid_parsing"),
    ("accounts", "nickname", SECRET, "extra_forbidden"),
]
FIELD_IDS = [f"{module}-{field}-{rule}" for module, field, _, rule in FIELD_CASES]


def assert_rejected(response: httpx.Response, field: str, rule: str) -> None:
    """422 naming `field` and `rule`, with no submitted value anywhere in the body."""
    body = assert_problem(response, 422)
    assert {"field": field, "rule": rule} in [
        {"field": error["field"], "rule": error["rule"]} for error in body["errors"]
    ], body["errors"]
    assert SECRET not in response.text
    assert str(SECRET_NUMBER) not in response.text


async def create(org: Org, module: str) -> dict[str, Any]:
    response = await org.client.post(
        f"/v1/{module}", json=VALID_CREATE[module], headers=org.headers
    )
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    return record


async def fetch(org: Org, module: str, record_id: str) -> dict[str, Any]:
    response = await org.client.get(f"/v1/{module}/{record_id}", headers=org.headers)
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


# --- field rules on create and update ---------------------------------------------------


@pytest.mark.parametrize(("module", "field", "value", "rule"), FIELD_CASES, ids=FIELD_IDS)
async def test_bad_field_is_refused_on_create_and_update(
    org: Org, module: str, field: str, value: Any, rule: str
) -> None:
    record = await create(org, module)

    created = await org.client.post(
        f"/v1/{module}", json={**VALID_CREATE[module], field: value}, headers=org.headers
    )
    updated = await org.client.patch(
        f"/v1/{module}/{record['id']}", json={field: value}, headers=org.headers
    )

    assert_rejected(created, f"body.{field}", rule)
    assert_rejected(updated, f"body.{field}", rule)
    assert await count_rows(org.app, module, org.id) == 1
    assert await fetch(org, module, record["id"]) == record


async def test_one_bad_field_refuses_the_whole_update(org: Org) -> None:
    record = await create(org, "contacts")

    response = await org.client.patch(
        f"/v1/contacts/{record['id']}",
        json={"first_name": "Changed", "email": f"{SECRET}@"},
        headers=org.headers,
    )

    assert_rejected(response, "body.email", "email")
    assert await fetch(org, "contacts", record["id"]) == record


@pytest.mark.parametrize(
    ("module", "field"), [("contacts", "last_name"), ("leads", "last_name"), ("accounts", "name")]
)
async def test_create_without_required_field_is_refused(org: Org, module: str, field: str) -> None:
    payload = {key: value for key, value in VALID_CREATE[module].items() if key != field}

    response = await org.client.post(f"/v1/{module}", json=payload, headers=org.headers)

    assert_rejected(response, f"body.{field}", "missing")
    assert await count_rows(org.app, module, org.id) == 0


@pytest.mark.parametrize(
    ("module", "field"),
    [("contacts", "last_name"), ("leads", "last_name"), ("leads", "status"), ("accounts", "name")],
)
async def test_clearing_a_required_field_is_refused(org: Org, module: str, field: str) -> None:
    """A required field cannot be PATCHed to null: a 422 naming it, not a database error."""
    record = await create(org, module)

    response = await org.client.patch(
        f"/v1/{module}/{record['id']}", json={field: None}, headers=org.headers
    )

    body = assert_problem(response, 422)
    assert f"body.{field}" in [error["field"] for error in body["errors"]]
    assert await fetch(org, module, record["id"]) == record


# --- bodies that are not an object ------------------------------------------------------


@pytest.mark.parametrize("module", ["contacts", "leads", "accounts"])
async def test_non_json_body_is_refused(org: Org, module: str) -> None:
    record = await create(org, module)
    before = await count_rows(org.app, module, org.id)
    headers = {**org.headers, "Content-Type": "application/json"}
    garbage = f'{{"name": "{SECRET}", '.encode()

    created = await org.client.post(f"/v1/{module}", content=garbage, headers=headers)
    patched = await org.client.patch(
        f"/v1/{module}/{record['id']}", content=garbage, headers=headers
    )

    for response in (created, patched):
        body = assert_problem(response, 422)
        assert [error["rule"] for error in body["errors"]] == ["json_invalid"]
        assert body["errors"][0]["field"].startswith("body")
        assert SECRET not in response.text
    assert await count_rows(org.app, module, org.id) == before
    assert await fetch(org, module, record["id"]) == record


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (f'["{SECRET}"]'.encode(), "application/json"),
        (f'"{SECRET}"'.encode(), "application/json"),
        (f"last_name={SECRET}".encode(), "application/x-www-form-urlencoded"),
        (SECRET.encode(), "text/plain"),
    ],
    ids=["array", "string", "form", "text"],
)
async def test_body_that_is_not_an_object_is_refused(
    org: Org, content: bytes, content_type: str
) -> None:
    response = await org.client.post(
        "/v1/contacts", content=content, headers={**org.headers, "Content-Type": content_type}
    )

    body = assert_problem(response, 422)
    assert body["errors"][0]["field"].startswith("body")
    assert SECRET not in response.text
    assert await count_rows(org.app, "contacts", org.id) == 0


# --- legal basis, conversion and search bodies ------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "rule"),
    [
        ({"basis": SECRET}, "body.basis", "enum"),
        ({"basis": "legitimate_interests"}, "body", "value_error"),
        (
            {"basis": "consent", "assessment": SECRET + "x" * 10_000},
            "body.assessment",
            "string_too_long",
        ),
        ({"basis": "consent", "evidence": SECRET}, "body.evidence", "extra_forbidden"),
    ],
    ids=["unknown-basis", "lia-missing", "assessment-too-long", "unknown-field"],
)
async def test_bad_legal_basis_is_refused(
    org: Org, payload: dict[str, Any], field: str, rule: str
) -> None:
    record = await create(org, "contacts")
    path = f"/v1/contacts/{record['id']}/legal-basis"

    response = await org.client.put(path, json=payload, headers=org.headers)

    assert_rejected(response, field, rule)
    history = await org.client.get(path, headers=org.headers)
    assert history.json() == {"current": None, "history": []}
    assert await count_rows(org.app, "legal_basis_entries", org.id) == 0


@pytest.mark.parametrize(
    ("payload", "field", "rule"),
    [
        ({"account_id": SECRET}, "body.account_id", "uuid_parsing"),
        ({"create_account": SECRET}, "body.create_account", "bool_type"),
        ({"contact_name": SECRET}, "body.contact_name", "extra_forbidden"),
    ],
    ids=["account-id", "create-account", "unknown-field"],
)
async def test_bad_conversion_request_is_refused(
    org: Org, payload: dict[str, Any], field: str, rule: str
) -> None:
    lead = await create(org, "leads")

    response = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json=payload, headers=org.headers
    )

    assert_rejected(response, field, rule)
    assert await fetch(org, "leads", lead["id"]) == lead
    assert await count_rows(org.app, "contacts", org.id) == 0
    assert await count_rows(org.app, "accounts", org.id) == 0


async def test_bad_search_body_is_refused(org: Org) -> None:
    response = await org.client.post(
        "/v1/contacts/search",
        json={"limit": SECRET, "email": SECRET + "x" * 260, "nickname": SECRET},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    found = {(error["field"], error["rule"]) for error in body["errors"]}
    assert found == {
        ("body.limit", "int_type"),
        ("body.email", "string_too_long"),
        ("body.nickname", "extra_forbidden"),
    }
    assert SECRET not in response.text


# --- path and query ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/contacts/not-a-uuid"),
        ("PATCH", "/v1/contacts/not-a-uuid"),
        ("DELETE", "/v1/contacts/not-a-uuid"),
        ("GET", "/v1/leads/12345"),
        ("PATCH", "/v1/leads/12345"),
        ("DELETE", "/v1/accounts/not-a-uuid"),
        ("POST", "/v1/leads/not-a-uuid/convert"),
        ("GET", "/v1/contacts/not-a-uuid/legal-basis"),
        ("PUT", "/v1/leads/not-a-uuid/legal-basis"),
    ],
)
async def test_malformed_id_in_path_is_refused(org: Org, method: str, path: str) -> None:
    body_by_method = {"PATCH": {"title": "x"}, "POST": {}, "PUT": {"basis": "consent"}}

    response = await org.client.request(
        method, path, json=body_by_method.get(method), headers=org.headers
    )

    body = assert_problem(response, 422)
    assert [(error["field"], error["rule"]) for error in body["errors"]] == [
        ("path.record_id", "uuid_parsing")
    ]
    bad_id = path.split("/")[3]
    # The path is echoed as `instance`, as RFC 9457 intends; nowhere else.
    assert bad_id not in response.text.replace(body["instance"], "")


QUERY_CASES: list[tuple[str, dict[str, str], str, str]] = [
    ("contacts", {"limit": SECRET}, "query.limit", "int_parsing"),
    ("contacts", {"limit": "0"}, "query.limit", "greater_than_equal"),
    ("leads", {"limit": "201"}, "query.limit", "less_than_equal"),
    ("accounts", {"limit": "-1"}, "query.limit", "greater_than_equal"),
    ("contacts", {"sort": SECRET}, "query.sort", "enum"),
    ("contacts", {"cursor": SECRET}, "query.cursor", "invalid_cursor"),
    ("accounts", {"cursor": SECRET + "x" * 600}, "query.cursor", "string_too_long"),
    ("contacts", {"owner_id": SECRET}, "query.owner_id", "uuid_parsing"),
    ("contacts", {"account_id": SECRET}, "query.account_id", "uuid_parsing"),
    ("leads", {"status": SECRET}, "query.status", "enum"),
    ("leads", {"email": SECRET + "x" * 260}, "query.email", "string_too_long"),
    ("accounts", {"name": SECRET + "x" * 200}, "query.name", "string_too_long"),
    ("accounts", {"nickname": SECRET}, "query.nickname", "extra_forbidden"),
]


@pytest.mark.parametrize(
    ("module", "params", "field", "rule"),
    QUERY_CASES,
    ids=[f"{module}-{field}-{rule}" for module, _, field, rule in QUERY_CASES],
)
async def test_malformed_query_is_refused(
    org: Org, module: str, params: dict[str, str], field: str, rule: str
) -> None:
    response = await org.client.get(f"/v1/{module}", params=params, headers=org.headers)

    assert_rejected(response, field, rule)


async def test_cursor_for_another_sort_is_refused(org: Org) -> None:
    for _ in range(2):
        await create(org, "accounts")
    first = await org.client.get("/v1/accounts", params={"limit": "1"}, headers=org.headers)
    cursor = first.json()["next_cursor"]
    assert cursor

    response = await org.client.get(
        "/v1/accounts",
        params={"limit": "1", "cursor": cursor, "sort": "updated_at"},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert [(error["field"], error["rule"]) for error in body["errors"]] == [
        ("query.cursor", "invalid_cursor")
    ]


# --- size limit, unknown routes and methods ---------------------------------------------


async def test_body_over_the_limit_is_refused(org: Org) -> None:
    limit = org.app.state.settings.max_request_body_bytes
    payload = f'{{"last_name": "{SECRET}{"x" * limit}"}}'.encode()

    response = await org.client.post(
        "/v1/contacts", content=payload, headers={**org.headers, "Content-Type": "application/json"}
    )

    assert_problem(response, 413)
    assert SECRET not in response.text
    assert await count_rows(org.app, "contacts", org.id) == 0


async def test_streamed_body_over_the_limit_is_refused(org: Org) -> None:
    """Without a Content-Length the limit is enforced while the body arrives."""
    limit = org.app.state.settings.max_request_body_bytes
    chunk = (SECRET + "x" * 65_525).encode()

    async def body() -> AsyncIterator[bytes]:
        yield b'{"last_name": "'
        for _ in range(limit // len(chunk) + 1):
            yield chunk
        yield b'"}'

    response = await org.client.post(
        "/v1/contacts", content=body(), headers={**org.headers, "Content-Type": "application/json"}
    )

    assert_problem(response, 413)
    assert SECRET not in response.text
    assert await count_rows(org.app, "contacts", org.id) == 0


async def test_body_just_under_the_limit_is_read(org: Org) -> None:
    """The limit refuses only what is over it: a large but allowed body gets a normal 422."""
    limit = org.app.state.settings.max_request_body_bytes
    payload = f'{{"last_name": "{SECRET}{"x" * (limit - 100)}"}}'.encode()
    assert len(payload) <= limit

    response = await org.client.post(
        "/v1/contacts", content=payload, headers={**org.headers, "Content-Type": "application/json"}
    )

    assert_rejected(response, "body.last_name", "string_too_long")


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/v2/contacts", "/v1/contacts/search/more"])
async def test_unknown_route_is_a_problem_404(org: Org, path: str) -> None:
    response = await org.client.get(path, headers=org.headers)

    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/contacts"),
        ("PUT", "/v1/contacts/00000000-0000-4000-8000-000000000000"),
        ("GET", "/v1/leads/00000000-0000-4000-8000-000000000000/convert"),
        ("DELETE", "/v1/leads/00000000-0000-4000-8000-000000000000/legal-basis"),
        ("GET", "/v1/auth/login"),
    ],
)
async def test_wrong_method_is_a_problem_405(org: Org, method: str, path: str) -> None:
    before = await count_rows(org.app, "contacts", org.id)

    response = await org.client.request(method, path, headers=org.headers)

    assert_problem(response, 405)
    assert response.headers.get("Allow")
    assert await count_rows(org.app, "contacts", org.id) == before
