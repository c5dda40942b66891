"""Helpers of the privacy-request tests: a clock that stands still, requests filed and
driven through the API, mail read from the outbox as the requester would read it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from crm_service.clock import FixedClock
from tests.conftest import Org, unique_email
from tests.integrations.conftest import receiver  # noqa: F401 - the loopback receiver fixture


@pytest.fixture
def clock(app: Any) -> Iterator[FixedClock]:
    """The app's clock, standing at the real time until moved."""
    original = app.state.clock
    fixed = FixedClock(datetime.now(UTC))
    app.state.clock = fixed
    try:
        yield fixed
    finally:
        app.state.clock = original


async def make_contact(org: Org, email: str | None = None, **fields: Any) -> dict[str, Any]:
    response = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Tanaka", "email": email or unique_email(), **fields},
        headers=org.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def file(
    org: Org, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await org.client.post("/v1/privacy/requests", json=body, headers=headers or org.headers)


async def filed(org: Org, body: dict[str, Any]) -> dict[str, Any]:
    response = await file(org, body)
    assert response.status_code == 201, response.text
    return response.json()


async def act(
    org: Org, request_id: str, action: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await org.client.post(
        f"/v1/privacy/requests/{request_id}/{action}", json=body, headers=org.headers
    )


async def verified(org: Org, body: dict[str, Any]) -> dict[str, Any]:
    created = await filed(org, body)
    response = await act(org, created["id"], "verify", {"note": "passport seen at the desk"})
    assert response.status_code == 200, response.text
    return response.json()


async def completed(org: Org, request_id: str) -> dict[str, Any]:
    response = await act(org, request_id, "complete")
    assert response.status_code == 200, response.text
    return response.json()


async def completion_mail(org: Org) -> tuple[Any, Any]:
    """The organization's one `privacy_request_completed` message, and its content (None once
    its key is gone)."""
    from sqlalchemy import select

    from crm_service.mail.models import OutboxMessage
    from crm_service.mail.outbox import open_content

    async with org.app.state.sessionmaker() as session:
        (message,) = (
            await session.execute(
                select(OutboxMessage).where(
                    OutboxMessage.organization_id == org.id,
                    OutboxMessage.template == "privacy_request_completed",
                )
            )
        ).scalars()
        return message, await open_content(session, message)
