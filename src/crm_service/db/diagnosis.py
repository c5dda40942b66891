"""Database failures told in an operator's words: unreachable, refused, or not migrated yet.

The CLI prints these reasons, the HTTP layer answers 503 for them, and the test harness uses
them as skip reasons. They come from the driver's own error (server and database names,
never a row's values: connecting and finding a table involve none).
"""

from __future__ import annotations

import re
import socket
import sqlite3
from collections.abc import Iterator

from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# PostgreSQL SQLSTATEs that mean "this server or database cannot be used", not "this query
# is wrong": connection exceptions (class 08), authorization (28), no such database (3D000),
# too many connections (53300), starting up / shutting down (57P01-57P03).
_UNAVAILABLE_STATES = ("08", "28", "3D000", "53300", "57P01", "57P02", "57P03")
_UNDEFINED_TABLE = "42P01"
_SQLITE_NO_TABLE = re.compile(r"no such table: (\w+)")
_PG_NO_TABLE = re.compile(r'relation "([^"]+)" does not exist')
_DRIVER_MODULES = ("asyncpg", "aiosqlite", "sqlalchemy", "sqlite3")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error, what SQLAlchemy wrapped (`orig`) and its causes, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(nested, BaseException):
                todo.append(nested)


def _raised_by_driver(exc: BaseException) -> bool:
    """A socket error is the database's only when a driver raised it (not, say, Redis)."""
    traceback = exc.__traceback__
    while traceback is not None:
        module = str(traceback.tb_frame.f_globals.get("__name__", ""))
        if module.split(".", 1)[0] in _DRIVER_MODULES:
            return True
        traceback = traceback.tb_next
    return False


def unreachable_reason(exc: BaseException) -> str | None:
    """Why the database cannot be used at all (e.g. "connection refused"), or None when
    `exc` is about something else."""
    for error in _chain(exc):
        state = str(getattr(error, "sqlstate", "") or "")
        if state.startswith(_UNAVAILABLE_STATES):
            return str(error).strip().splitlines()[0]
        if isinstance(error, PoolTimeoutError):
            return "every pooled connection stayed busy for the pool's whole timeout"
        if isinstance(error, sqlite3.OperationalError) and "unable to open" in str(error):
            return "the SQLite file cannot be opened (does its directory exist and is it writable?)"
        if isinstance(error, OSError) and _raised_by_driver(error):
            if isinstance(error, ConnectionRefusedError):
                return "connection refused (is the server running on that host and port?)"
            if isinstance(error, socket.gaierror):
                return "the server's host name does not resolve"
            if isinstance(error, TimeoutError):
                return "timed out connecting to the server"
            return (error.strerror or type(error).__name__).lower()
    return None


def missing_table(exc: BaseException) -> str | None:
    """The table a query needed that the schema lacks (migrations not run), or None."""
    for error in _chain(exc):
        if str(getattr(error, "sqlstate", "")) == _UNDEFINED_TABLE:
            match = _PG_NO_TABLE.search(str(error))
            return match.group(1) if match else "a table"
        if isinstance(error, sqlite3.OperationalError):
            match = _SQLITE_NO_TABLE.search(str(error))
            if match:
                return match.group(1)
    return None
