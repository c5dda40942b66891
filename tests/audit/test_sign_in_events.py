"""Sign-in leaves a trail an administrator can follow: who signed in and how, wrong
passwords, and refusals by the IP allowlist, each written even when the request itself is
refused. An unknown email names no organization, so it writes nothing to any log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import text

from tests.conftest import PASSWORD, Org, assert_problem, unique_email

ADMIN_ADDRESS = "203.0.113.7"  # the address the shared test client connects from
OFFICE = "198.51.100.0/24"
OFFICE_ADDRESS = "198.51.100.9"


@asynccontextmanager
async def client_from(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def events(
    org: Org, client: httpx.AsyncClient | None = None, **params: str
) -> list[dict[str, Any]]:
    response = await (client or org.client).get(
        "/v1/audit-events", params={"limit": 200, **params}, headers=org.headers
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def all_audit_events(app: Any) -> int:
    """Every organization's events, counted straight from the table."""
    async with app.state.engine.connect() as connection:
        return int(
            (await connection.execute(text("SELECT count(*) FROM audit_events"))).scalar_one()
        )


def by_request(found: list[dict[str, Any]], response: httpx.Response) -> dict[str, Any]:
    (event,) = [e for e in found if e["request_id"] == response.headers["x-request-id"]]
    return event


async def test_a_password_sign_in_is_recorded_with_how_it_passed(org: Org) -> None:
    response = await org.client.post(
        "/v1/auth/login", json={"email": org.admin_email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text

    event = by_request(await events(org, action="auth.login_succeeded"), response)
    assert event["reason"] == "password"
    assert event["outcome"] == "success"
    assert (event["actor_type"], event["actor_id"]) == ("user", str(org.admin_id))
    assert (event["target_type"], event["target_id"]) == ("user", str(org.admin_id))
    assert event["client_ip"] == ADMIN_ADDRESS


async def test_a_wrong_password_is_refused_and_recorded_as_a_failure(org: Org) -> None:
    response = await org.client.post(
        "/v1/auth/login", json={"email": org.admin_email, "password": "not the password at all"}
    )
    assert_problem(response, 401)
    assert "Bearer" in response.headers["www-authenticate"]

    event = by_request(await events(org, action="auth.login_failed"), response)
    assert event["outcome"] == "failure"
    assert event["reason"] == "wrong_password"
    assert event["target_id"] == str(org.admin_id)
    assert event["client_ip"] == ADMIN_ADDRESS
    # And nobody was signed in by it.
    assert by_request(await events(org), response)["action"] == "auth.login_failed"


async def test_an_unknown_email_writes_no_event_anywhere(org: Org) -> None:
    before = await all_audit_events(org.app)
    response = await org.client.post(
        "/v1/auth/login", json={"email": unique_email("nobody"), "password": PASSWORD}
    )
    assert_problem(response, 401)
    assert await all_audit_events(org.app) == before


async def test_a_sign_in_from_outside_the_allowlist_is_refused_and_recorded(
    org: Org, app: Any
) -> None:
    saved = await org.client.put(
        "/v1/settings/ip-allowlist",
        json={"enabled": True, "cidrs": [OFFICE], "confirm_self_lockout": True},
        headers=org.headers,
    )
    assert saved.status_code == 200, saved.text

    blocked = await org.client.post(
        "/v1/auth/login", json={"email": org.admin_email, "password": PASSWORD}
    )
    assert assert_problem(blocked, 403)["type"].endswith("/ip-not-allowed")
    # A session opened earlier is refused outside the list too, on every request.
    refused = await org.client.get("/v1/contacts", headers=org.headers)
    assert_problem(refused, 403)

    async with client_from(app, OFFICE_ADDRESS) as office:
        found = await events(org, office, action="auth.ip_blocked")
        changes = await events(org, office, action="settings.ip_allowlist_changed")
    for response in (blocked, refused):
        event = by_request(found, response)
        assert event["outcome"] == "denied"
        assert event["reason"] == "ip_not_allowed"
        assert (event["actor_id"], event["target_id"]) == (str(org.admin_id), str(org.admin_id))
        assert event["client_ip"] == ADMIN_ADDRESS
    # No session came of the refused sign-in.
    async with client_from(app, OFFICE_ADDRESS) as office:
        signed_in = await events(org, office, action="auth.login_succeeded")
    assert blocked.headers["x-request-id"] not in {e["request_id"] for e in signed_in}
    assert [e["fields"] for e in changes] == [["cidrs", "enabled"]]
