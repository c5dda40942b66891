"""IP allowlists: enforced at sign-in and on every request, IPv4 and IPv6, on the address
the service resolves itself — a client cannot pick its own with X-Forwarded-For."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from crm_service.main import create_app
from tests.conftest import (
    PASSWORD,
    Org,
    assert_problem,
    create_user,
    error_fields,
    make_settings,
    unique_email,
)

ADMIN_ADDRESS = "203.0.113.7"  # the address the shared test client connects from


@asynccontextmanager
async def client_from(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def login(client: httpx.AsyncClient, email: str, **headers: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=headers
    )


async def allow(org: Org, cidrs: list[str], **extra: Any) -> httpx.Response:
    return await org.client.put(
        "/v1/settings/ip-allowlist",
        json={"enabled": True, "cidrs": cidrs, **extra},
        headers=org.headers,
    )


async def test_ipv4_list_admits_inside_and_blocks_outside(org: Org, app: Any) -> None:
    saved = await allow(org, ["203.0.113.0/24"])
    assert saved.status_code == 200, saved.text
    assert saved.json() == {
        "enabled": True,
        "cidrs": ["203.0.113.0/24"],
        "your_address": ADMIN_ADDRESS,
    }

    async with client_from(app, "203.0.113.50") as inside:
        assert (await login(inside, org.admin_email)).status_code == 200
    async with client_from(app, "198.51.100.9") as outside:
        blocked = await login(outside, org.admin_email)
        body = assert_problem(blocked, 403)
        assert body["type"].endswith("/ip-not-allowed")
        # A token issued inside the list is refused outside it, on every request.
        refused = await outside.get("/v1/contacts", headers=org.headers)
        assert_problem(refused, 403)
        # A wrong password from outside stays a plain 401: the list reveals nothing.
        wrong = await outside.post(
            "/v1/auth/login", json={"email": org.admin_email, "password": "not it at all"}
        )
        assert_problem(wrong, 401)
    assert (await org.client.get("/v1/contacts", headers=org.headers)).status_code == 200


async def test_ipv6_networks_and_ipv4_mapped_addresses(org: Org, app: Any) -> None:
    assert (await allow(org, ["2001:db8::/32", "203.0.113.7"])).status_code == 200
    async with client_from(app, "2001:db8:1::5") as inside:
        assert (await login(inside, org.admin_email)).status_code == 200
    async with client_from(app, "2001:db9::5") as outside:
        assert_problem(await login(outside, org.admin_email), 403)
    async with client_from(app, "::ffff:203.0.113.7") as mapped:
        assert (await login(mapped, org.admin_email)).status_code == 200


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    org: Org, app: Any
) -> None:
    assert (await allow(org, ["203.0.113.0/24"])).status_code == 200
    async with client_from(app, "198.51.100.9") as attacker:
        for header in (ADMIN_ADDRESS, f"{ADMIN_ADDRESS}, {ADMIN_ADDRESS}", "203.0.113.99"):
            response = await login(attacker, org.admin_email, **{"X-Forwarded-For": header})
            assert_problem(response, 403)
            response = await attacker.get(
                "/v1/me", headers={**org.headers, "X-Forwarded-For": header}
            )
            assert_problem(response, 403)


async def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_counts(
    org: Org, database_url: str
) -> None:
    assert (await allow(org, ["203.0.113.0/24"])).status_code == 200
    proxied = create_app(make_settings(database_url, trusted_proxies=["10.0.0.0/8"]))
    async with LifespanManager(proxied), client_from(proxied, "10.0.0.5") as balancer:
        cases = {
            "203.0.113.7": 200,  # the client, as the balancer saw it
            "198.51.100.9, 203.0.113.7": 200,  # whatever the client claimed comes first
            "203.0.113.7, 198.51.100.9": 403,  # the real client is 198.51.100.9
            "203.0.113.7, 10.0.0.3": 200,  # a chain of trusted proxies is skipped
        }
        for header, expected in cases.items():
            response = await login(balancer, org.admin_email, **{"X-Forwarded-For": header})
            assert response.status_code == expected, (header, response.text)
    # A peer outside the trusted range is not believed either, even on that app.
    async with LifespanManager(proxied), client_from(proxied, "198.51.100.9") as direct:
        response = await login(direct, org.admin_email, **{"X-Forwarded-For": "203.0.113.7"})
        assert_problem(response, 403)


async def test_a_list_that_would_lock_out_its_author_needs_confirmation(org: Org) -> None:
    refused = await allow(org, ["198.51.100.0/24"])
    body = assert_problem(refused, 409)
    assert "confirm_self_lockout" in body["detail"]
    current = await org.client.get("/v1/settings/ip-allowlist", headers=org.headers)
    assert current.json()["enabled"] is False and current.json()["cidrs"] == []

    confirmed = await allow(org, ["198.51.100.0/24"], confirm_self_lockout=True)
    assert confirmed.status_code == 200
    assert_problem(await org.client.get("/v1/me", headers=org.headers), 403)


async def test_bad_entries_are_refused_and_nothing_changes(org: Org) -> None:
    response = await allow(org, ["203.0.113.0/24", "not-a-network", "300.1.1.1/8"])
    assert error_fields(assert_problem(response, 422)) == {"body.cidrs.1", "body.cidrs.2"}
    current = await org.client.get("/v1/settings/ip-allowlist", headers=org.headers)
    assert current.json()["enabled"] is False


async def test_only_admins_manage_it_and_other_organizations_are_unaffected(
    org: Org, other_org: Org, app: Any
) -> None:
    standard = await org.add_user()
    assert_problem(await org.client.get("/v1/settings/ip-allowlist", headers=standard), 403)
    assert (await allow(org, ["203.0.113.7/32"])).status_code == 200
    async with client_from(app, "198.51.100.9") as elsewhere:
        assert_problem(await login(elsewhere, org.admin_email), 403)
        assert (await login(elsewhere, other_org.admin_email)).status_code == 200
    # Switching it off lets everyone in again.
    off = await org.client.put(
        "/v1/settings/ip-allowlist", json={"enabled": False, "cidrs": []}, headers=org.headers
    )
    assert off.status_code == 200
    async with client_from(app, "198.51.100.9") as elsewhere:
        assert (await login(elsewhere, org.admin_email)).status_code == 200


# --- narrower lists per role -------------------------------------------------------------------


async def test_a_roles_narrower_list_applies_on_top_of_the_organizations(org: Org) -> None:
    """Sales may only come from the office (v4 and v6), even though the organization allows
    anywhere; a user without the role is not affected; removing the list lifts it."""
    office = ["203.0.113.0/24", "2001:db8:5::/48"]
    role = await org.client.post(
        "/v1/roles", json={"name": "Sales", "ip_allowlist": office}, headers=org.headers
    )
    assert role.status_code == 201, role.text
    assert role.json()["ip_allowlist"] == office
    email = unique_email("rep")
    created = await create_user(
        org, {"email": email, "password": PASSWORD, "role_id": role.json()["id"]}
    )
    assert created.status_code == 201, created.text

    async def login_from(address: str) -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=org.app, client=(address, 50000)),
            base_url="http://testserver",
        ) as other:
            return await other.post("/v1/auth/login", json={"email": email, "password": PASSWORD})

    assert (await login_from("203.0.113.50")).status_code == 200
    assert (await login_from("2001:db8:5::7")).status_code == 200
    assert_problem(await login_from("198.51.100.9"), 403)
    assert_problem(await login_from("2001:db8:6::7"), 403)
    # The administrator has no role: the organization's (off) allowlist alone applies.
    assert (await org.client.get("/v1/me", headers=org.headers)).status_code == 200

    # A token obtained from the office stops working outside it.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=org.app, client=("203.0.113.50", 50000)),
        base_url="http://testserver",
    ) as office_client:
        token = (
            await office_client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        ).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=org.app, client=("198.51.100.9", 50000)),
        base_url="http://testserver",
    ) as elsewhere:
        assert_problem(await elsewhere.get("/v1/me", headers=headers), 403)
    blocked = await org.client.get(
        "/v1/audit-events",
        params={"action": "auth.ip_blocked", "actor_id": created.json()["id"]},
        headers=org.headers,
    )
    assert len(blocked.json()["data"]) == 3

    lifted = await org.client.patch(
        f"/v1/roles/{role.json()['id']}", json={"ip_allowlist": None}, headers=org.headers
    )
    assert lifted.status_code == 200 and lifted.json()["ip_allowlist"] is None
    assert (await login_from("198.51.100.9")).status_code == 200


async def test_a_role_list_that_is_not_networks_is_refused(org: Org) -> None:
    response = await org.client.post(
        "/v1/roles",
        json={"name": "Odd", "ip_allowlist": ["10.0.0.0/8", "not-a-network"]},
        headers=org.headers,
    )
    assert "body.ip_allowlist.1" in error_fields(assert_problem(response, 422))
    listed = await org.client.get("/v1/roles", headers=org.headers)
    assert [r["name"] for r in listed.json()["data"]] == []


async def test_an_admin_cannot_narrow_their_own_roles_list_to_lock_themselves_out(org: Org) -> None:
    role = (await org.client.post("/v1/roles", json={"name": "Admins"}, headers=org.headers)).json()
    second = unique_email("second.admin")
    await create_user(org, {"email": second, "password": PASSWORD, "is_admin": True})
    second_headers = await org.login(second)
    placed = await org.client.patch(
        f"/v1/users/{org.admin_id}", json={"role_id": role["id"]}, headers=second_headers
    )
    assert placed.status_code == 200, placed.text
    headers = await org.login(org.admin_email)  # the role is read at sign-in and per request

    elsewhere = {"ip_allowlist": ["198.51.100.0/24"]}
    refused = await org.client.patch(f"/v1/roles/{role['id']}", json=elsewhere, headers=headers)
    assert_problem(refused, 409)
    assert (await org.client.get(f"/v1/roles/{role['id']}", headers=headers)).json()[
        "ip_allowlist"
    ] is None

    confirmed = await org.client.patch(
        f"/v1/roles/{role['id']}", json={**elsewhere, "confirm_self_lockout": True}, headers=headers
    )
    assert confirmed.status_code == 200
    assert_problem(await org.client.get("/v1/me", headers=headers), 403)
