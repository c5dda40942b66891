"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    # Deleted and overwritten content is zeroed in the file, not left in free space: an
    # erased subject's plain (`none`-classified) values leave no trace behind.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def make_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
    # hide_parameters keeps bound values (personal data) out of exception messages. No
    # pre-ping: it is a round trip on every checkout. A connection the server dropped fails
    # its request with 503 (errors.py) and is discarded; recycling bounds how stale one gets.
    options: dict[str, Any] = {"hide_parameters": True}
    if not database_url.startswith("sqlite"):
        options["pool_recycle"] = 1800
    options.update(kwargs)
    engine = create_async_engine(database_url, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions without autoflush (the storage layer decides when sealed values are written);
    `info` hands every session what its repositories need, such as the key provider."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info or {})
