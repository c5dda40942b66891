"""A service of its own per test (its own database and backup directory), since restores
replace the whole database; started, stopped and started again over the restored one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from crm_service.config import Settings
from crm_service.crypto.master import key_provider_from_settings
from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.main import create_app
from tests.conftest import CLIENT_IP, TestDatabases, make_settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def fresh_database(databases: TestDatabases, kind: str, *, migrated: bool = True) -> str:
    url = await databases.new(kind)
    if migrated:
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
    return url


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    application = create_app(settings)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=(CLIENT_IP, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


def settings_for(url: str, backup_dir: Path) -> Settings:
    return make_settings(url, backup_dir=backup_dir)


def provider_of(settings: Settings) -> Any:
    return key_provider_from_settings(settings)
