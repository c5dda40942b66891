"""The pool does not ping before every checkout (a round trip per request), so a connection
the server dropped is found out by the request that uses it: that request answers 503 with
Retry-After, never a 500, and the next one gets a fresh connection."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.main import create_app
from tests.conftest import (
    POSTGRES_ADMIN_URL,
    Org,
    TestDatabases,
    assert_problem,
    make_settings,
    new_org,
)


@pytest.mark.postgres
async def test_a_dropped_connection_is_a_503_then_recovered(databases: TestDatabases) -> None:
    url = await databases.new("postgresql")
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    app = create_app(make_settings(url))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            org = await new_org(app, client)
            await _drop_and_recover(app, org)


async def _drop_and_recover(app: Any, org: Org) -> None:
    assert (await org.client.get("/v1/me", headers=org.headers)).status_code == 200
    database = app.state.engine.url.database
    admin = make_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": database},
        )
    await admin.dispose()

    # The pooled connection was dropped: the request that meets it answers 503...
    first = await org.client.get("/v1/me", headers=org.headers)
    assert_problem(first, 503)
    assert int(first.headers["retry-after"]) >= 1
    # ...and the pool replaces it.
    assert (await org.client.get("/v1/me", headers=org.headers)).status_code == 200
