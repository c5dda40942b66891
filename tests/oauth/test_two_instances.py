"""Two instances on one PostgreSQL and one Redis: limits are counted once, on Redis's clock,
and a revocation on one instance holds on the other at the next request."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey
from redis.asyncio import Redis

from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.main import create_app
from crm_service.security.ratelimit import Policy, RedisCounter
from tests.conftest import REDIS_URL, TestDatabases, make_settings, new_org, service_missing
from tests.oauth.conftest import parse_list, register, token

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def _redis_or_skip() -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        await redis.ping()
    except Exception as exc:  # noqa: BLE001 - no server to test on
        service_missing(f"Redis at {REDIS_URL}", str(exc))
    finally:
        await redis.aclose()


@pytest.fixture
async def instances(databases: TestDatabases) -> AsyncIterator[list[Any]]:
    await _redis_or_skip()
    url = await databases.new("postgresql")
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    prefix = f"test:{uuid.uuid4().hex}:"
    async with AsyncExitStack() as stack:
        apps = []
        for _ in range(2):
            app = create_app(make_settings(url, redis_url=REDIS_URL))
            await stack.enter_async_context(LifespanManager(app))
            # Every test its own keys, so parallel runs never meet.
            app.state.rate_limiter.counter = RedisCounter(app.state.redis, prefix=prefix)
            apps.append(app)
        yield apps
        redis = Redis.from_url(REDIS_URL)
        keys = [key async for key in redis.scan_iter(f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


def _http(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_2n_requests_over_two_instances_get_exactly_n_through(instances: list[Any]) -> None:
    first, second = instances
    async with _http(first) as one, _http(second) as two:
        org = await new_org(first, one)
        n = 7
        partner = await register(
            org,
            rate_limits={
                "burst": {"limit": n, "window_seconds": 120},
                "concurrency": {"limit": 100},
            },
        )
        bearer = await token(one, partner)
        calls = [(one if i % 2 else two).get("/v1/leads", headers=bearer) for i in range(2 * n)]
        responses = await asyncio.gather(*calls)
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] * n + [429] * n
        remaining = sorted(
            parse_list(r.headers["ratelimit"])["burst"]["r"]
            for r in responses
            if r.status_code == 200
        )
        # Each passing request saw its own count: one counter for both instances.
        assert remaining == list(range(n))


async def test_a_token_revoked_on_one_instance_is_dead_on_the_other(instances: list[Any]) -> None:
    first, second = instances
    async with _http(first) as one, _http(second) as two:
        org = await new_org(first, one)
        partner = await register(org)
        bearer = await token(one, partner)
        assert (await two.get("/v1/leads", headers=bearer)).status_code == 200
        access_token = bearer["Authorization"].removeprefix("Bearer ")
        revoked = await one.post(
            "/oauth/revoke", data={"token": access_token}, headers=partner.basic
        )
        assert revoked.status_code == 200
        dead = await two.get("/v1/leads", headers=bearer)
        assert dead.status_code == 401
        assert 'error="invalid_token"' in dead.headers["www-authenticate"]


async def test_a_jti_used_on_one_instance_is_refused_on_the_other(instances: list[Any]) -> None:
    first, second = instances
    async with _http(first) as one, _http(second) as two:
        org = await new_org(first, one)
        key = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
        public = {**key.as_dict(private=False), "kid": "k1"}
        partner = await register(org, jwks={"keys": [public]})
        now = int(time.time())
        claims = {
            "iss": partner.client_id,
            "sub": partner.client_id,
            "aud": "http://127.0.0.1:8000/oauth/token",
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        }
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": jwt.encode({"alg": "ES256", "kid": "k1"}, claims, key),
        }
        answers = await asyncio.gather(
            one.post("/oauth/token", data=form), two.post("/oauth/token", data=form)
        )
        assert sorted(a.status_code for a in answers) == [200, 401]


async def test_the_redis_script_checks_every_policy_in_one_step(instances: list[Any]) -> None:
    counter = instances[0].state.rate_limiter.counter
    key = f"script:{uuid.uuid4().hex}"
    policies = (Policy.burst(5, 60), Policy.daily(2), Policy.concurrency(10))
    first = await counter.acquire(key, policies, lease_seconds=30)
    second = await counter.acquire(key, policies, lease_seconds=30)
    third = await counter.acquire(key, policies, lease_seconds=30)
    assert first.allowed and second.allowed and not third.allowed
    assert third.violated == ["daily"]
    # The refused request counted nowhere: burst still shows two used, concurrency two held.
    by_name = {state.policy.name: state for state in third.states}
    assert by_name["burst"].remaining == 3 and by_name["concurrency"].remaining == 8
    assert 1 <= by_name["daily"].reset_seconds <= 86400
    await counter.release(key, first.slot)
    await counter.release(key, second.slot)
    again = await counter.acquire(key, (Policy.concurrency(1),), lease_seconds=30)
    assert again.allowed
