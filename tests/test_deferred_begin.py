"""The app's PostgreSQL sessions open their transaction at the first statement that needs one
(db/engine.py): plain reads cost no BEGIN/COMMIT, and everything from the first write on is
one transaction that a failure rolls back whole."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text, update

from crm_service.auth.models import AuthSession
from crm_service.db.tenancy import Organization
from tests.conftest import Org

# PostgreSQL only: SQLite's driver already begins a transaction only before a write.
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


def in_transaction(session: Any) -> Any:
    async def check() -> bool:
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        return bool(raw.driver_connection.is_in_transaction())

    return check()


async def test_reads_run_outside_a_transaction_and_the_first_write_opens_one(org: Org) -> None:
    assert org.app.state.engine.dialect.name == "postgresql"
    async with org.app.state.sessionmaker() as session:
        await session.execute(select(Organization.name).where(Organization.id == org.id))
        assert not await in_transaction(session)
        # A locking read holds its lock to the end of a transaction: it opens one.
        await session.execute(
            select(Organization.id).where(Organization.id == org.id).with_for_update(read=True)
        )
        assert await in_transaction(session)
        # From then on every statement, reads too, is inside it.
        await session.execute(select(AuthSession.id).where(AuthSession.organization_id == org.id))
        assert await in_transaction(session)
        await session.rollback()
    async with org.app.state.sessionmaker() as session:
        await session.execute(select(Organization.name).where(Organization.id == org.id))
        assert not await in_transaction(session)


async def test_writes_after_reads_roll_back_together(org: Org) -> None:
    async with org.app.state.sessionmaker() as session:
        before = await session.scalar(select(Organization.name).where(Organization.id == org.id))
        await session.execute(
            update(Organization).where(Organization.id == org.id).values(name="first change")
        )
        await session.execute(text("SELECT 1"))
        await session.execute(
            update(Organization).where(Organization.id == org.id).values(name="second change")
        )
        await session.rollback()
    async with org.app.state.sessionmaker() as session:
        after = await session.scalar(select(Organization.name).where(Organization.id == org.id))
    assert after == before
