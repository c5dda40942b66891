"""The client address the service records and checks is an IP address, whatever a client or
a proxy writes into X-Forwarded-For: a hop that is not an address is never believed nor
stored, a failed sign-in behind it is still audited (with no address), and nothing answers
500 — on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from crm_service.main import create_app
from tests.conftest import PASSWORD, Org, assert_problem, make_settings

PROXIES = ["10.0.0.0/8", "2001:db8:ffff::/48"]
BALANCER = "10.0.0.5"


@pytest.fixture(scope="module")
async def proxied(database_url: str) -> AsyncIterator[Any]:
    """The app behind load balancers in CRM_TRUSTED_PROXIES, on the same database."""
    application = create_app(make_settings(database_url, trusted_proxies=PROXIES))
    async with LifespanManager(application):
        yield application


@asynccontextmanager
async def client_from(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def failed_login(org: Org, client: httpx.AsyncClient, *forwarded_for: str) -> str | None:
    """A wrong password sent with these X-Forwarded-For lines; the address its audit event
    recorded."""
    response = await client.post(
        "/v1/auth/login",
        json={"email": org.admin_email, "password": "not the password at all"},
        headers=[("X-Forwarded-For", value) for value in forwarded_for],
    )
    assert_problem(response, 401)
    listed = await org.client.get(
        "/v1/audit-events",
        params={"action": "auth.login_failed", "limit": 200},
        headers=org.headers,
    )
    assert listed.status_code == 200, listed.text
    (event,) = [
        e for e in listed.json()["data"] if e["request_id"] == response.headers["x-request-id"]
    ]
    # Past five wrong passwords from one address the account is locked there: "denied".
    assert event["outcome"] in {"failure", "denied"} and event["target_id"] == str(org.admin_id)
    return event["client_ip"]


@pytest.mark.parametrize(
    "hop",
    [
        "garbage",
        "unknown",
        "1" * 46,
        "203.0.113.7" + "x" * 40,
        "2001:db8:0:0:0:0:0:1:2001:db8:0:0:0:0:0:1",
        "203.0.113.7:99999",
        "fe80::1%eth0",
        "203.0.113.0/24",
        "'; DROP TABLE audit_events; --",
        "[203.0.113.7]",
    ],
)
async def test_a_hop_that_is_not_an_address_is_neither_believed_nor_stored(
    org: Org, proxied: Any, hop: str
) -> None:
    async with client_from(proxied, BALANCER) as balancer:
        # The balancer passed on a hop it was handed: the client is unknown, not the balancer.
        assert await failed_login(org, balancer, f"{hop}, {BALANCER}") is None
        assert await failed_login(org, balancer, hop, "10.0.0.3") is None


async def test_an_unknown_client_is_not_admitted_as_the_proxy_it_came_through(
    org: Org, proxied: Any
) -> None:
    allowed = await org.client.put(
        "/v1/settings/ip-allowlist",
        json={"enabled": True, "cidrs": ["10.0.0.0/8", "203.0.113.7"]},
        headers=org.headers,
    )
    assert allowed.status_code == 200, allowed.text
    async with client_from(proxied, BALANCER) as balancer:

        async def login(forwarded_for: str) -> httpx.Response:
            return await balancer.post(
                "/v1/auth/login",
                json={"email": org.admin_email, "password": PASSWORD},
                headers={"X-Forwarded-For": forwarded_for},
            )

        # A caller inside the trusted (and allowed) network is admitted as itself...
        assert (await login("10.1.2.3")).status_code == 200
        # ...but a client nobody could name is not admitted as the balancer's address.
        assert_problem(await login("unknown"), 403)


@pytest.mark.parametrize(
    ("hop", "recorded"),
    [
        ("198.51.100.9", "198.51.100.9"),
        ("198.51.100.9:4711", "198.51.100.9"),
        (" 198.51.100.9 ", "198.51.100.9"),
        ("2001:DB8:0:0::5", "2001:db8::5"),
        ("[2001:db8::5]", "2001:db8::5"),
        ("[2001:db8::5]:443", "2001:db8::5"),
        ("::ffff:198.51.100.9", "198.51.100.9"),
    ],
)
async def test_ipv4_and_ipv6_hops_are_recorded_in_canonical_form(
    org: Org, proxied: Any, hop: str, recorded: str
) -> None:
    async with client_from(proxied, BALANCER) as balancer:
        assert await failed_login(org, balancer, hop) == recorded
    async with client_from(proxied, "2001:db8:ffff::1") as ipv6_balancer:
        assert await failed_login(org, ipv6_balancer, hop) == recorded


async def test_the_right_most_untrusted_hop_is_the_client_whatever_came_before(
    org: Org, proxied: Any
) -> None:
    async with client_from(proxied, BALANCER) as balancer:
        # What the client wrote itself is on the left, and is ignored.
        assert await failed_login(org, balancer, "203.0.113.99, 198.51.100.9") == "198.51.100.9"
        assert await failed_login(org, balancer, "garbage, 198.51.100.9") == "198.51.100.9"
        assert await failed_login(org, balancer, "1" * 500 + ", 198.51.100.9") == "198.51.100.9"
        # Trusted proxies on the way are skipped, however the header lines were split.
        chain = "203.0.113.99, 198.51.100.9, 10.0.0.3"
        assert await failed_login(org, balancer, chain) == "198.51.100.9"
        lines = ("198.51.100.9", "10.0.0.3, 10.0.0.4")
        assert await failed_login(org, balancer, *lines) == "198.51.100.9"
        # Only trusted hops: the left-most of them called (a host inside the trusted network).
        assert await failed_login(org, balancer, "10.0.0.3") == "10.0.0.3"
        # No header: the balancer itself called.
        assert await failed_login(org, balancer) == BALANCER


async def test_an_untrusted_peer_cannot_choose_its_address(
    org: Org, proxied: Any, app: Any
) -> None:
    for application in (proxied, app):
        async with client_from(application, "198.51.100.20") as direct:
            for header in ("203.0.113.7", "10.0.0.3", "garbage", "1" * 46):
                assert await failed_login(org, direct, header) == "198.51.100.20"
