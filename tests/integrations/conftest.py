"""A real HTTP receiver on loopback for webhook tests, and helpers to drive deliveries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from sqlalchemy import func, select

from crm_service.config import Settings
from crm_service.integrations.delivery import deliver_due
from crm_service.integrations.models import WebhookAttempt, WebhookDelivery
from tests.conftest import Org


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next planned status (200 once the plan runs out) and
    keeps what it received."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    plan: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self, status: int, times: int = 1, **headers: str) -> None:
        self.plan += [(status, headers)] * times

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(
            Received(
                scope["path"],
                {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                body,
            )
        )
        status, headers = self.plan.pop(0) if self.plan else (200, {})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    server = uvicorn.Server(
        uvicorn.Config(found, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    found.port = server.servers[0].sockets[0].getsockname()[1]
    yield found
    server.should_exit = True
    await serving


def loopback_settings(org: Org, **overrides: Any) -> Settings:
    """The app's settings, delivering to loopback receivers (as tests must)."""
    values = {"webhook_allow_private_targets": True, **overrides}
    return org.app.state.settings.model_copy(update=values)


def soon(seconds: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def attempts_of(org: Org) -> int:
    async with org.app.state.sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(WebhookAttempt)
            .where(WebhookAttempt.organization_id == org.id)
        )
    return int(count or 0)


async def deliver(org: Org, now: datetime | None = None, **overrides: Any) -> int:
    """One worker run (over every organization of the test database); how many delivery
    attempts it made for `org`."""
    before = await attempts_of(org)
    await deliver_due(
        org.app.state.sessionmaker, loopback_settings(org, **overrides), now or soon(), limit=500
    )
    return await attempts_of(org) - before


async def create_webhook(org: Org, url: str, events: list[str]) -> dict[str, Any]:
    response = await org.client.post(
        "/v1/webhooks",
        json={"url": url, "events": events, "description": "test receiver"},
        headers=org.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def deliveries(org: Org, webhook_id: str) -> list[WebhookDelivery]:
    async with org.app.state.sessionmaker() as session:
        result = await session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.organization_id == org.id)
            .where(WebhookDelivery.endpoint_id == uuid.UUID(webhook_id))
        )
        return list(result.scalars())
