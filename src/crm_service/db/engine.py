"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import structlog
from sqlalchemy import event, text
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


# A SELECT that locks rows holds its locks until the transaction ends: it needs one.
_LOCKING_READ = re.compile(r"\bFOR\s+(?:UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b", re.I)


@lru_cache(maxsize=4096)
def _reads_only(statement: str) -> bool:
    """A plain SELECT: no write, no row lock, no data-modifying CTE (those start with WITH)."""
    return statement.lstrip()[:6].upper() == "SELECT" and _LOCKING_READ.search(statement) is None


def _defer_begin(engine: AsyncEngine) -> None:
    """PostgreSQL: no BEGIN until the first statement that needs a transaction.

    A session's plain reads run outside a transaction (each SELECT sees what was committed
    when it started, exactly what it sees inside a READ COMMITTED transaction), and its first
    write, locking read, savepoint or server-side cursor opens the transaction, which then
    holds every later statement until the commit. A request that only reads thus costs
    neither a BEGIN nor a COMMIT round trip; one that writes (an audit event of a read
    included) commits as before, all its writes in one transaction.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _deferred(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # A connection comes back from the pool rolled back: no transaction is open.
        if not dbapi_connection.autocommit:
            dbapi_connection.autocommit = True
            record.info["deferred_begin"] = True

    @event.listens_for(engine.sync_engine, "checkin")
    def _undeferred(dbapi_connection: Any, record: Any) -> None:
        if record.info.pop("deferred_begin", False) and dbapi_connection is not None:
            dbapi_connection.autocommit = False

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _begin_when_needed(
        connection: Any,
        cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        fairy = connection.connection
        if not fairy.info.get("deferred_begin"):
            return
        # A server-side cursor lives only inside a transaction.
        if _reads_only(statement) and not getattr(cursor, "server_side", False):
            return
        # From here on this checkout is an ordinary transaction (BEGIN comes with this
        # statement); it is deferred again only at the next checkout.
        fairy.info["deferred_begin"] = False
        fairy.dbapi_connection.autocommit = False


def make_engine(database_url: str, *, defer_begin: bool = False, **kwargs: Any) -> AsyncEngine:
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
    elif defer_begin and engine.dialect.driver == "asyncpg":
        _defer_begin(engine)
    return engine


def make_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions without autoflush (the storage layer decides when sealed values are written);
    `info` hands every session what its repositories need, such as the key provider."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info or {})


async def checkpoint_sqlite(engine: AsyncEngine) -> None:
    """Move SQLite's WAL into the database file and truncate it, so no page image of a value
    just erased, or of a data key just destroyed, stays in `-wal` (a no-op on PostgreSQL).
    Run after the commit of whatever erased or destroyed."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as connection:
        busy = (await connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))).first()
    if busy is not None and busy[0]:
        structlog.get_logger("crm_service.db").warning("wal_checkpoint_busy")
