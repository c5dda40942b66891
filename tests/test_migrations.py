"""Migrations are the only way the schema is made: they go up, down and up again on both
databases, and what they build matches the ORM models exactly."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Uuid, column, inspect, table, text

from crm_service import models  # noqa: F401 - registers every table
from crm_service.db.base import Base, UTCDateTime
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


@pytest.mark.parametrize("kind", KINDS)
async def test_upgrading_a_database_in_use_keeps_its_users_and_sessions(
    kind: str, databases: TestDatabases
) -> None:
    """The access-control migration rebuilds `users` on SQLite; nothing referencing a user
    (sessions) may be lost on the way, and users get the profile matching is_admin."""
    engine = make_engine(await databases.new(kind))
    try:
        await upgrade(engine, "20261123_audit_log")
        org_id, admin_id, user_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        organizations = table(
            "organizations",
            column("id", Uuid()),
            column("name"),
            column("key_generation"),
            column("mfa_required"),
        )
        users = table(
            "users",
            *(column(name, Uuid()) for name in ("id", "organization_id")),
            *(
                column(name)
                for name in ("email", "password_hash", "is_admin", "is_active", "mfa_failed_count")
            ),
        )
        sessions_table = table(
            "auth_sessions",
            *(column(name, Uuid()) for name in ("id", "organization_id", "user_id")),
            column("token_hash"),
            *(column(name, UTCDateTime()) for name in ("created_at", "last_used_at", "expires_at")),
        )
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            await connection.execute(
                organizations.insert().values(
                    id=org_id, name="Org", key_generation=1, mfa_required=False
                )
            )
            for id_, email, admin in (
                (admin_id, "a@example.com", True),
                (user_id, "u@example.com", False),
            ):
                await connection.execute(
                    users.insert().values(
                        id=id_,
                        organization_id=org_id,
                        email=email,
                        password_hash="x",
                        is_admin=admin,
                        is_active=True,
                        mfa_failed_count=0,
                    )
                )
            await connection.execute(
                sessions_table.insert().values(
                    id=uuid.uuid4(),
                    organization_id=org_id,
                    user_id=user_id,
                    token_hash="h",
                    created_at=now,
                    last_used_at=now,
                    expires_at=now,
                )
            )
        await upgrade(engine)
        async with engine.connect() as connection:
            sessions = (
                await connection.execute(text("SELECT count(*) FROM auth_sessions"))
            ).scalar_one()
            profiles = dict(
                (
                    await connection.execute(
                        text(
                            "SELECT u.email, p.builtin FROM users u"
                            " JOIN profiles p ON p.id = u.profile_id"
                        )
                    )
                ).all()
            )
        assert sessions == 1
        assert profiles == {"a@example.com": "administrator", "u@example.com": "standard"}
    finally:
        await engine.dispose()


SHIPPED = Path(__file__).parent.parent / "migrations" / "SHIPPED"


def test_no_shipped_migration_is_edited() -> None:
    """A migration that reached main is frozen: databases out there ran it as it was. A change
    is a new, corrective migration; `migrations/SHIPPED` holds each shipped file's SHA-256, and
    a migration joins it when it ships (its line never changes after)."""
    versions = SHIPPED.parent / "versions"
    for line in SHIPPED.read_text().splitlines():
        digest, name = line.split()
        actual = hashlib.sha256((versions / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name} was edited after it shipped: write a new migration"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_database_upgraded_before_roles_had_an_allowlist_gets_the_column(
    kind: str, databases: TestDatabases
) -> None:
    engine = make_engine(await databases.new(kind))
    try:
        await upgrade(engine, "20261201_processing_locks")
        # As a database upgraded before the column was written into the shipped migration.
        async with engine.begin() as connection:
            await connection.execute(text("ALTER TABLE roles DROP COLUMN ip_allowlist"))
        await upgrade(engine)
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: [c["name"] for c in inspect(sync).get_columns("roles")]
            )
        assert "ip_allowlist" in columns
    finally:
        await engine.dispose()
