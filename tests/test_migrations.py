"""Migrations are the only way the schema is made: they go up, down and up again on both
databases, and what they build matches the ORM models exactly."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from crm_service import models  # noqa: F401 - registers every table
from crm_service.db.base import Base
from crm_service.db.engine import make_engine
from crm_service.db.migrations import current_revision, downgrade, head_revision, upgrade
from tests.conftest import TestDatabases

KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


async def _tables(engine: Any) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


@pytest.mark.parametrize("kind", KINDS)
async def test_upgrade_downgrade_upgrade(kind: str, databases: TestDatabases) -> None:
    engine = make_engine(await databases.new(kind))
    try:
        await upgrade(engine)
        expected = set(Base.metadata.tables)
        assert expected <= await _tables(engine)
        async with engine.connect() as connection:
            assert await current_revision(connection) == head_revision()

        await downgrade(engine, "base")
        assert await _tables(engine) - {"alembic_version"} == set()

        await upgrade(engine)
        assert expected <= await _tables(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
async def test_migrations_match_models(kind: str, databases: TestDatabases) -> None:
    engine = make_engine(await databases.new(kind))
    try:
        await upgrade(engine)
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        await engine.dispose()
