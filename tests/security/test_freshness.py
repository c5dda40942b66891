"""Nothing about who a caller is, is cached past the request: a sign-out, a disabled user, a
changed IP allowlist or profile, made through one instance, holds on the very next request
to another instance of the service on the same database. (The principal is read in one round
trip per request: session, user, profile and both address lists together.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from crm_service.main import create_app
from tests.access.conftest import create_profile
from tests.conftest import (
    PASSWORD,
    assert_problem,
    create_user,
    make_settings,
    new_org,
    unique_email,
)

OFFICE = "198.51.100.0/24"


@asynccontextmanager
async def instance(
    database_url: str, address: str = "203.0.113.7"
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def signed_in_user(org: Any, client: httpx.AsyncClient, **fields: Any) -> dict[str, str]:
    email = unique_email("fresh")
    created = await create_user(org, {"email": email, "password": PASSWORD, **fields})
    assert created.status_code == 201, created.text
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}", "id": created.json()["id"]}


async def test_changes_on_one_instance_hold_on_the_next_request_to_another(
    database_url: str,
) -> None:
    async with instance(database_url) as first, instance(database_url) as second:
        org = await new_org(first.app, first)  # type: ignore[attr-defined]

        # Sign-out on the first instance: the token is dead on the second.
        user = await signed_in_user(org, first)
        headers = {"Authorization": user["Authorization"]}
        assert (await second.get("/v1/me", headers=headers)).status_code == 200
        assert (await first.post("/v1/auth/logout", headers=headers)).status_code == 204
        assert_problem(await second.get("/v1/me", headers=headers), 401)

        # A user disabled on the first instance is refused by the second at once.
        user = await signed_in_user(org, first)
        headers = {"Authorization": user["Authorization"]}
        assert (await second.get("/v1/me", headers=headers)).status_code == 200
        disabled = await first.patch(
            f"/v1/users/{user['id']}", json={"is_active": False}, headers=org.headers
        )
        assert disabled.status_code == 200, disabled.text
        assert_problem(await second.get("/v1/me", headers=headers), 401)

        # A profile narrowed on the first instance: the second refuses what it no longer allows.
        profile = await create_profile(org, {"contacts": ["create", "read"]})
        user = await signed_in_user(org, first, profile_id=profile)
        headers = {"Authorization": user["Authorization"]}
        body = {"last_name": "Lovelace", "email": unique_email("ada")}
        assert (await second.post("/v1/contacts", json=body, headers=headers)).status_code == 201
        narrowed = await first.patch(
            f"/v1/profiles/{profile}", json={"modules": {"contacts": ["read"]}}, headers=org.headers
        )
        assert narrowed.status_code == 200, narrowed.text
        assert_problem(await second.post("/v1/contacts", json=body, headers=headers), 403)

        # The organization's IP allowlist switched on at the first instance: the second
        # refuses a caller outside it on their next request.
        user = await signed_in_user(org, first)
        headers = {"Authorization": user["Authorization"]}
        assert (await second.get("/v1/me", headers=headers)).status_code == 200
        allowlist = await first.put(
            "/v1/settings/ip-allowlist",
            json={"enabled": True, "cidrs": [OFFICE], "confirm_self_lockout": True},
            headers=org.headers,
        )
        assert allowlist.status_code == 200, allowlist.text
        assert_problem(await second.get("/v1/me", headers=headers), 403)
        async with instance(database_url, "198.51.100.9") as office:
            assert (await office.get("/v1/me", headers=headers)).status_code == 200
