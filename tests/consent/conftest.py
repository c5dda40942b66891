"""Helpers of the consent tests: purposes, a controllable clock, the worker's consent jobs,
mail read from the outbox, and a second client that comes from a visitor's address."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_service.clock import FixedClock
from crm_service.db.session import commit
from crm_service.jobs.worker import JOBS
from crm_service.mail.models import OutboxMessage
from crm_service.mail.outbox import MailContent, open_content
from tests.conftest import Org
from tests.mail.conftest import smtp_server  # noqa: F401 - the real SMTP server fixture

VISITOR_IP = "198.51.100.23"  # where the public pages' visitor comes from (not the staff's)


async def create_purpose(org: Org, key: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {
        "key": key or f"newsletter-{secrets.token_hex(3)}",
        "name": "Monthly newsletter",
        "description": "News about our products, once a month.",
        "notice_version": "2026-01",
        "notice_url": "https://example.com/privacy/2026-01",
        **fields,
    }
    response = await org.client.post("/v1/consent/purposes", json=body, headers=org.headers)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"/v1/consent/purposes/{body['key']}"
    return response.json()


@pytest.fixture
def clock(app: Any) -> Iterator[FixedClock]:
    """The app's clock, standing at the real time until moved (sessions stay valid while it
    stays near it)."""
    original = app.state.clock
    fixed = FixedClock(datetime.now(UTC))
    app.state.clock = fixed
    try:
        yield fixed
    finally:
        app.state.clock = original


async def run_job(app: Any, name: str, now: datetime) -> int:
    """Run one of the worker's registered jobs at `now`, as the worker runs it (one
    transaction), without touching the worker's schedule rows other tests rely on."""
    job = next(job for job in JOBS if job.name == name)
    async with app.state.sessionmaker() as session:
        result = await job.run(session, app.state.settings, now)
        await commit(session)
    return result


async def mails(app: Any, organization_id: uuid.UUID, template: str) -> list[MailContent]:
    """The organization's queued mail of `template`, oldest first, opened."""
    async with app.state.sessionmaker() as session:
        rows = (
            await session.execute(
                select(OutboxMessage)
                .where(
                    OutboxMessage.organization_id == organization_id,
                    OutboxMessage.template == template,
                )
                .order_by(OutboxMessage.created_at)
            )
        ).scalars()
        opened = [await open_content(session, row) for row in rows]
    return [content for content in opened if content is not None]


def link_in(text: str, path: str) -> str:
    """The path (and token) of the link to `path` in a mail body."""
    match = re.search(rf"https?://[^/\s]+({re.escape(path)}[A-Za-z0-9_-]+)", text)
    assert match is not None, f"no {path} link in the mail"
    return match.group(1)


@pytest.fixture(scope="session")
async def visitor(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A member of the public: no credentials, another address than the staff's."""
    transport = httpx.ASGITransport(app=app, client=(VISITOR_IP, 50001))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
