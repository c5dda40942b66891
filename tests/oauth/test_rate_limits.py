"""Rate limits over HTTP: burst, daily and concurrency per partner client, burst per session,
the RateLimit header fields (parsed as structured fields) and 429 with Retry-After."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from crm_service.clock import FixedClock
from crm_service.main import create_app
from crm_service.security.ratelimit import Policy
from tests.conftest import Org, assert_problem, make_settings, new_org
from tests.oauth.conftest import Partner, parse_list, register, token


@pytest.fixture
def fixed_clock(app: Any) -> Any:
    original = app.state.clock
    # Today, a minute before midnight UTC (sessions opened now stay fresh on this clock).
    app.state.clock = FixedClock(datetime.now(UTC).replace(hour=23, minute=59, second=0))
    yield app.state.clock
    app.state.clock = original


def _limits(response: httpx.Response) -> tuple[dict[str, Any], dict[str, Any]]:
    return parse_list(response.headers["ratelimit-policy"]), parse_list(
        response.headers["ratelimit"]
    )


async def test_burst_edge_headers_and_retry_after(fixed_clock: FixedClock, org: Org) -> None:
    partner = await register(org, rate_limits={"burst": {"limit": 3, "window_seconds": 10}})
    bearer = await token(org.client, partner)
    for remaining in (2, 1, 0):
        response = await org.client.get("/v1/leads", headers=bearer)
        assert response.status_code == 200, response.text
        policy, state = _limits(response)
        assert policy == {
            "burst": {"q": 3, "w": 10},
            "daily": {"q": 25000, "w": 86400},
            "concurrency": {"q": 10, "qu": "concurrent-requests"},
        }
        assert state["burst"] == {"r": remaining, "t": 10}
        assert state["daily"] == {"r": 25000 - (3 - remaining), "t": 60}
        assert state["concurrency"] == {"r": 9}
    fixed_clock.advance(seconds=4)
    refused = await org.client.get("/v1/leads", headers=bearer)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["violated-policies"] == ["burst"] and body["status"] == 429
    assert body["type"] == "https://iana.org/assignments/http-problem-types#quota-exceeded"
    _, state = _limits(refused)
    assert state["burst"] == {"r": 0, "t": 6}
    assert int(refused.headers["retry-after"]) == state["burst"]["t"]
    # A refused request counts nowhere: the daily quota did not move.
    assert state["daily"]["r"] == 25000 - 3
    fixed_clock.advance(seconds=6)
    again = await org.client.get("/v1/leads", headers=bearer)
    assert again.status_code == 200
    assert _limits(again)[1]["burst"] == {"r": 2, "t": 10}


async def test_daily_quota_resets_at_midnight_utc(fixed_clock: FixedClock, org: Org) -> None:
    partner = await register(org, rate_limits={"daily": {"limit": 2}})
    bearer = await token(org.client, partner)
    fixed_clock.advance(seconds=50)  # 23:59:50 UTC
    for remaining in (1, 0):
        response = await org.client.get("/v1/accounts", headers=bearer)
        assert response.status_code == 200
        assert _limits(response)[1]["daily"] == {"r": remaining, "t": 10}
    refused = await org.client.get("/v1/accounts", headers=bearer)
    assert refused.status_code == 429 and refused.json()["violated-policies"] == ["daily"]
    assert refused.headers["retry-after"] == "10"
    fixed_clock.advance(seconds=10)
    after = await org.client.get("/v1/accounts", headers=bearer)
    assert after.status_code == 200
    assert _limits(after)[1]["daily"] == {"r": 1, "t": 86400}


def _key(partner: Partner) -> str:
    return f"client:{partner.client_id}"


async def test_concurrency_slots_limit_and_are_released_after_errors(
    fixed_clock: FixedClock, org: Org
) -> None:
    partner = await register(org, rate_limits={"concurrency": {"limit": 2}})
    bearer = await token(org.client, partner)
    limiter = org.app.state.rate_limiter
    policies = (Policy.concurrency(2),)
    # Requests that fail still give their slot back: each next request sees one slot taken
    # (its own) and none left over.
    for path in ("/v1/leads/not-an-id", f"/v1/leads/{partner.client_id}", "/v1/leads"):
        response = await org.client.get(path, headers=bearer)
        assert response.status_code in (200, 404, 422)
        assert _limits(response)[1]["concurrency"] == {"r": 1}
    # Two requests in flight elsewhere: the next is refused.
    first = await limiter.counter.acquire(_key(partner), policies, lease_seconds=300)
    second = await limiter.counter.acquire(_key(partner), policies, lease_seconds=300)
    assert first.allowed and second.allowed
    refused = await org.client.get("/v1/leads", headers=bearer)
    assert refused.status_code == 429
    assert refused.json()["violated-policies"] == ["concurrency"]
    assert refused.headers["retry-after"] == "1"
    await limiter.counter.release(_key(partner), first.slot)
    assert (await org.client.get("/v1/leads", headers=bearer)).status_code == 200
    # A crashed instance never releases its slot: the lease frees it.
    fixed_clock.advance(seconds=301)
    assert (await org.client.get("/v1/leads", headers=bearer)).status_code == 200
    assert (await org.client.get("/v1/leads", headers=bearer)).status_code == 200


async def test_a_client_that_disconnects_gives_its_slot_back(
    fixed_clock: FixedClock, org: Org
) -> None:
    partner = await register(org, rate_limits={"concurrency": {"limit": 1}})
    bearer = await token(org.client, partner)
    started = asyncio.Event()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.set()
            await asyncio.Event().wait()  # the client stopped reading; it never returns

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/leads",
        "raw_path": b"/v1/leads",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", bearer["Authorization"].encode())],
        "client": ("203.0.113.7", 50001),
        "server": ("testserver", 80),
        "state": {},
    }
    task = asyncio.create_task(org.app(scope, receive, send))
    await asyncio.wait_for(started.wait(), timeout=30)
    # While it hangs, its slot is taken.
    busy = await org.client.get("/v1/leads", headers=bearer)
    assert busy.status_code == 429 and busy.json()["violated-policies"] == ["concurrency"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    freed = await org.client.get("/v1/leads", headers=bearer)
    assert freed.status_code == 200, freed.text


async def test_a_signed_in_session_has_a_burst_of_its_own(database_url: str) -> None:
    application = create_app(
        make_settings(
            database_url, session_rate_limit_burst=3, session_rate_limit_window_seconds=60
        )
    )
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            org = await new_org(application, http)
            for remaining in (2, 1, 0):
                response = await http.get("/v1/me", headers=org.headers)
                assert response.status_code == 200
                policy, state = _limits(response)
                assert policy == {"burst": {"q": 3, "w": 60}}
                assert state["burst"]["r"] == remaining
            refused = await http.get("/v1/contacts", headers=org.headers)
            assert_problem(refused, 429)
            assert refused.json()["violated-policies"] == ["burst"]
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            # Another session of the same user counts apart.
            other = await new_org(application, http)
            assert (await http.get("/v1/me", headers=other.headers)).status_code == 200


async def test_without_its_counters_the_service_refuses_rather_than_serves_unlimited(
    database_url: str,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    application = create_app(
        make_settings(database_url, redis_url=f"redis://127.0.0.1:{closed_port}/0")
    )
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            org = await new_org(application, http)
            refused = await http.get("/v1/leads", headers=org.headers)
            assert_problem(refused, 503)
