"""Every response carries the security headers, whoever answered it (a route, an error
handler, the body limit, the method checks, the last-resort 500); HSTS only when the service
is served over https; CORS only for the origins listed in CRM_CORS_ORIGINS."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from crm_service.main import create_app
from tests.conftest import PASSWORD, Org, assert_problem, make_settings, new_org

APP_ORIGIN = "https://app.example.com"
EXPOSED = {"etag", "location", "ratelimit", "ratelimit-policy", "retry-after", "x-request-id"}
HSTS = "max-age=63072000; includeSubDomains"


@pytest.fixture(scope="module")
async def served(database_url: str) -> AsyncIterator[Any]:
    """The app as deployed: https base URL, one browser frontend allowed."""
    application = create_app(
        make_settings(
            database_url,
            public_base_url="https://crm.example.com",
            cors_origins=f"{APP_ORIGIN}, http://localhost:5173",
        )
    )
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def deployed(served: Any) -> AsyncIterator[Org]:
    transport = httpx.ASGITransport(app=served, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://crm.example.com") as http:
        yield await new_org(served, http)


async def answers(org: Org, headers: dict[str, str] | None = None) -> dict[str, httpx.Response]:
    """One response of each kind a client can run into."""
    client, auth = org.client, {**org.headers, **(headers or {})}
    bare = headers or {}
    contact = await client.post(
        "/v1/contacts", json={"first_name": "Ada", "last_name": "Head"}, headers=auth
    )
    assert contact.status_code == 201, contact.text
    return {
        "login (a token)": await client.post(
            "/v1/auth/login", json={"email": org.admin_email, "password": PASSWORD}, headers=bare
        ),
        "created": contact,
        "read": await client.get(contact.headers["location"], headers=auth),
        "health": await client.get("/healthz", headers=bare),
        "no token": await client.get("/v1/contacts", headers=bare),
        "unknown path": await client.get("/v1/nothing-here", headers=auth),
        "unknown record": await client.get(
            "/v1/contacts/00000000-0000-4000-8000-000000000000", headers=auth
        ),
        "wrong method": await client.put("/v1/contacts", headers=auth),
        "bad input": await client.post("/v1/contacts", json={"email": 5}, headers=auth),
        "too large": await client.post(
            "/v1/contacts", content=b"{" + b" " * 1_100_000 + b"}", headers=auth
        ),
    }


async def test_every_answer_carries_the_security_headers(deployed: Org) -> None:
    found = await answers(deployed)
    statuses = [response.status_code for response in found.values()]
    assert statuses == [200, 201, 200, 200, 401, 404, 404, 405, 422, 413]
    for kind, response in found.items():
        assert response.headers["cache-control"] == "no-store", kind
        assert response.headers["x-content-type-options"] == "nosniff", kind
        assert response.headers["referrer-policy"] == "no-referrer", kind
        assert response.headers["strict-transport-security"] == HSTS, kind


async def test_without_https_there_is_no_hsts_and_without_origins_no_cors(org: Org) -> None:
    found = await answers(org, {"Origin": APP_ORIGIN})
    for kind, response in found.items():
        assert response.headers["cache-control"] == "no-store", kind
        assert response.headers["x-content-type-options"] == "nosniff", kind
        assert "strict-transport-security" not in response.headers, kind
        assert not [h for h in response.headers if h.startswith("access-control-")], kind
    preflight = await org.client.options(
        "/v1/contacts", headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert_problem(preflight, 405)
    assert not [h for h in preflight.headers if h.startswith("access-control-")]


async def test_an_unhandled_failure_still_carries_them(tmp_path: Path) -> None:
    """A database whose `users` table is not this service's (a missing schema would be a 503
    naming `crm-service migrate`): the query fails unforeseen, the last-resort 500."""
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE users (id TEXT)")
    unmigrated = f"sqlite+aiosqlite:///{foreign}"
    application = create_app(
        make_settings(
            unmigrated, public_base_url="https://crm.example.com", cors_origins=APP_ORIGIN
        )
    )
    async with (
        LifespanManager(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="https://crm.example.com"
        ) as client,
    ):
        response = await client.post(
            "/v1/auth/login",
            json={"email": "ada@example.com", "password": PASSWORD},
            headers={"Origin": APP_ORIGIN},
        )
    assert_problem(response, 500)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["strict-transport-security"] == HSTS
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN


async def test_a_listed_origin_can_read_answers_and_errors(deployed: Org) -> None:
    found = await answers(deployed, {"Origin": APP_ORIGIN})
    for kind, response in found.items():
        assert response.headers["access-control-allow-origin"] == APP_ORIGIN, kind
        exposed = response.headers["access-control-expose-headers"]
        assert {name.strip().lower() for name in exposed.split(",")} == EXPOSED, kind
        assert "origin" in response.headers["vary"].lower(), kind
        # Tokens travel in Authorization, so credentials (cookies) are never allowed.
        assert "access-control-allow-credentials" not in response.headers, kind


async def test_an_origin_that_is_not_listed_sees_no_cors_header(deployed: Org) -> None:
    for origin in ("https://evil.example", "https://app.example.com.evil.example", "null"):
        found = await answers(deployed, {"Origin": origin})
        for kind, response in found.items():
            cors = [name for name in response.headers if name.startswith("access-control-")]
            assert cors == [], (origin, kind)


async def test_a_preflight_from_a_listed_origin_states_the_policy(deployed: Org) -> None:
    response = await deployed.client.options(
        "/v1/contacts/00000000-0000-4000-8000-000000000000",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, content-type, if-match",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {h.strip() for h in allowed.split(",")} == {
        "authorization",
        "content-type",
        "if-match",
        "x-request-id",
    }
    assert int(response.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_preflight_from_another_origin_gets_no_cors_header(deployed: Org) -> None:
    response = await deployed.client.options(
        "/v1/contacts",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    # An ordinary OPTIONS request, which no path answers: the browser refuses the call.
    assert_problem(response, 405)
    assert not [h for h in response.headers if h.startswith("access-control-")]
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "origins",
    ["*", "https://app.example.com,*", "null", "app.example.com", "https://app.example.com/path"],
)
def test_a_wildcard_or_anything_but_an_origin_is_refused_at_start(origins: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        make_settings("sqlite+aiosqlite:///./var/never.db", cors_origins=origins)


def test_origins_are_compared_as_browsers_send_them() -> None:
    settings = make_settings(
        "sqlite+aiosqlite:///./var/never.db",
        cors_origins="HTTPS://App.Example.com:443/, http://[::1]:8080",
    )
    assert settings.cors_origins == ["https://app.example.com", "http://[::1]:8080"]
