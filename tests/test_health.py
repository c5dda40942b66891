"""Operators' endpoints: liveness, readiness with real failing dependencies, metrics."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis

from crm_service.main import create_app
from tests.conftest import (
    REDIS_URL,
    Org,
    TestDatabases,
    make_settings,
    service_missing,
    unique_email,
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def _client_for(database_url: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url, **settings))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_healthz_checks_nothing_and_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_is_ok_on_a_migrated_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "redis": "not_configured"},
    }


async def test_readyz_is_503_while_migrations_are_pending(databases: TestDatabases) -> None:
    async with _client_for(await databases.new("sqlite")) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "pending"
    assert response.json()["checks"]["database"] == "ok"


async def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/nowhere"
    async with _client_for(url) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unavailable"
    assert "127.0.0.1" not in response.text


async def test_readyz_is_503_when_configured_redis_is_down(database_url: str) -> None:
    async with _client_for(
        database_url, redis_url=f"redis://127.0.0.1:{_closed_port()}/0"
    ) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "unavailable"


@pytest.mark.redis
async def test_readyz_checks_a_configured_redis(database_url: str) -> None:
    try:
        probe = Redis.from_url(REDIS_URL)
        await probe.ping()
        await probe.aclose()
    except Exception as exc:  # noqa: BLE001
        service_missing(f"Redis at {REDIS_URL}", str(exc) or type(exc).__name__)
    async with _client_for(database_url, redis_url=REDIS_URL) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"] == "ok"


async def test_metrics_count_requests_by_route_template_never_by_value(org: Org) -> None:
    email = unique_email("metrics")
    created = await org.client.post(
        "/v1/contacts", json={"last_name": "Metric", "email": email}, headers=org.headers
    )
    await org.client.get(f"/v1/contacts/{created.json()['id']}", headers=org.headers)
    await org.client.get("/v1/contacts", params={"email": email}, headers=org.headers)
    metrics = await org.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert (
        'crm_http_requests_total{method="GET",route="/v1/contacts/{record_id}",status="200"}'
        in text
    )
    assert 'route="/v1/contacts",status="201"' in text
    assert "crm_http_request_duration_seconds_bucket" in text
    assert email not in text and created.json()["id"] not in text


async def test_responses_carry_a_request_id_and_keep_a_safe_incoming_one(
    client: httpx.AsyncClient,
) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    kept = await client.get("/healthz", headers={"X-Request-ID": "lb-abc.123"})
    assert kept.headers["x-request-id"] == "lb-abc.123"
    replaced = await client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert replaced.headers["x-request-id"] != "<script>alert(1)</script>"
