"""HTTP method semantics a generated client or a proxy relies on: a 405 names every method of
the path (RFC 9110 §15.5.6) as problem+json, HEAD answers wherever GET does (same status and
headers, no body), and the POST-only `/search` paths are not mistaken for a record id."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Org, assert_problem

NO_SUCH_RECORD = "00000000-0000-4000-8000-000000000000"
MODULES = ("leads", "contacts", "accounts")


def allow(response: Any) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", f"/v1/contacts/{NO_SUCH_RECORD}", {"GET", "HEAD", "PATCH", "DELETE"}),
        ("POST", f"/v1/leads/{NO_SUCH_RECORD}", {"GET", "HEAD", "PATCH", "DELETE"}),
        ("DELETE", "/v1/contacts", {"GET", "HEAD", "POST"}),
        ("PATCH", "/v1/accounts", {"GET", "HEAD", "POST"}),
        ("GET", "/v1/auth/login", {"POST"}),
        ("HEAD", "/v1/auth/login", {"POST"}),
        ("OPTIONS", "/v1/contacts", {"GET", "HEAD", "POST"}),
        ("POST", "/healthz", {"GET", "HEAD"}),
    ],
)
async def test_a_405_lists_every_method_of_the_path(
    org: Org, method: str, path: str, allowed: set[str]
) -> None:
    response = await org.client.request(method, path, headers=org.headers)

    if method == "HEAD":
        assert response.status_code == 405 and response.content == b""
    else:
        body = assert_problem(response, 405)
        assert body["type"].endswith("/method-not-allowed")
        assert body["instance"] == path
    assert allow(response) == allowed


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_search_answers_post_only_and_is_no_record_id(
    org: Org, module: str, method: str
) -> None:
    before = await org.client.get(f"/v1/{module}", headers=org.headers)

    response = await org.client.request(method, f"/v1/{module}/search", headers=org.headers)

    assert_problem(response, 405)
    assert allow(response) == {"POST"}
    assert (await org.client.get(f"/v1/{module}", headers=org.headers)).json() == before.json()
    searched = await org.client.post(f"/v1/{module}/search", json={}, headers=org.headers)
    assert searched.status_code == 200, searched.text


async def test_head_is_the_get_without_its_body(org: Org, caplog: pytest.LogCaptureFixture) -> None:
    created = await org.client.post(
        "/v1/contacts", json={"first_name": "Ada", "last_name": "Head"}, headers=org.headers
    )
    assert created.status_code == 201, created.text
    caplog.set_level("INFO", logger="crm_service.access")
    paths = (created.headers["location"], "/v1/contacts", "/v1/me", "/healthz", "/openapi.json")
    for path in paths:
        got = await org.client.get(path, headers=org.headers)
        head = await org.client.head(path, headers=org.headers)

        assert (head.status_code, got.status_code) == (200, 200), path
        assert head.content == b"", path
        for header in ("content-type", "content-length", "etag", "cache-control"):
            assert head.headers.get(header) == got.headers.get(header), (path, header)
    # The access log says what was asked.
    logged = [
        (record.msg["method"], record.msg["route"])
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "request"
    ]
    assert ("HEAD", "/v1/contacts/{record_id}") in logged


async def test_head_keeps_the_get_errors(org: Org) -> None:
    missing = await org.client.head(f"/v1/contacts/{NO_SUCH_RECORD}", headers=org.headers)
    assert missing.status_code == 404 and missing.content == b""
    assert missing.headers["content-type"] == "application/problem+json"

    anonymous = await org.client.head("/v1/contacts")
    assert anonymous.status_code == 401 and anonymous.content == b""
    assert anonymous.headers["www-authenticate"].startswith("Bearer")

    nowhere = await org.client.head("/v1/nothing-here", headers=org.headers)
    assert nowhere.status_code == 404 and nowhere.content == b""


async def test_head_stays_out_of_the_openapi_document(org: Org) -> None:
    spec = json.loads((await org.client.get("/openapi.json")).content)
    assert not [path for path, item in spec["paths"].items() if "head" in item or "options" in item]
