"""Runs a server command with counters of what it asks of PostgreSQL, for the harness to read.

    CRM_BENCH_PROBE_DIR=/tmp/probe python -m bench.probe crm-service serve --port 8001
    CRM_BENCH_PROBE_DIR=/tmp/probe python -m bench.probe uvicorn bench.bare:app --port 8002

The command runs in this process (and, for `serve --workers N`, in each worker uvicorn
spawns, which imports this module again) after two counters are installed:

- SQL statements: SQLAlchemy's `before_cursor_execute`, on every engine, also by verb and
  first table (`SELECT contacts`).
- Round trips: every asyncpg connection's protocol is wrapped, and each exchange it starts
  with the server is counted by kind: `prepare` (a statement not yet in the connection's
  cache), `bind_execute` (a prepared statement run), `query` (a simple query: BEGIN, COMMIT,
  ROLLBACK, asyncpg's pool reset), and the rest. SQLAlchemy's pool pre-ping outside a
  transaction is three: BEGIN, a `bind_execute` of `;`, ROLLBACK.

A daemon thread answers on the Unix socket `<CRM_BENCH_PROBE_DIR>/<pid>.sock` with the
counts so far as one JSON object. Nothing here changes what the server does; the cost is a
counter increment per statement and per round trip.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import socket
import sys
import threading
from collections import Counter
from typing import Any

PROBE_DIR_VARIABLE = "CRM_BENCH_PROBE_DIR"
# The protocol methods that send a message and wait for the server's answer.
ROUND_TRIPS = frozenset(
    {
        "prepare",
        "bind_execute",
        "bind_execute_many",
        "bind",
        "execute",
        "query",
        "copy_in",
        "copy_out",
        "close_statement",
        "close_portal",
    }
)

statements = 0
# Statements by verb and first table ("SELECT contacts"), to see where a request's go.
statement_kinds: Counter[str] = Counter()
round_trips: Counter[str] = Counter()
# Simple queries by their first word: BEGIN, COMMIT, ROLLBACK, SAVEPOINT, SELECT (a reset).
simple_queries: Counter[str] = Counter()


def snapshot() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "statements": statements,
        "statements_by_kind": dict(statement_kinds),
        "round_trips": sum(round_trips.values()),
        "round_trips_by_kind": dict(round_trips),
        "simple_queries": dict(simple_queries),
    }


def read(path: str) -> dict[str, Any] | None:
    """The counts of the process serving `path`, or None if it is gone."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(path)
            chunks = []
            while chunk := client.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    return json.loads(b"".join(chunks))


def read_all(directory: str) -> list[dict[str, Any]]:
    """The counts of every live probed process whose socket is in `directory`."""
    found = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".sock"):
            counts = read(os.path.join(directory, name))
            if counts is not None:
                found.append(counts)
    return found


class _CountingProtocol:
    """Forwards everything to an asyncpg protocol, counting the calls that reach the server."""

    __slots__ = ("_counted", "_inner")

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_counted", {})

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in ROUND_TRIPS:
            return attribute
        counted = self._counted.get(name)
        if counted is None:

            def counted(*args: Any, **kwargs: Any) -> Any:
                round_trips[name] += 1
                if name == "query" and args and isinstance(args[0], str):
                    simple_queries[args[0].strip().rstrip(";").split(" ", 1)[0].upper()] += 1
                return attribute(*args, **kwargs)

            self._counted[name] = counted
        return counted

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


_TABLE_AFTER = {
    "SELECT": r"\bFROM\s+",
    "INSERT": r"\bINTO\s+",
    "UPDATE": r"^UPDATE\s+",
    "DELETE": r"\bFROM\s+",
}


@functools.lru_cache(maxsize=4096)
def statement_kind(statement: str) -> str:
    verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
    pattern = _TABLE_AFTER.get(verb)
    found = (
        re.search(pattern + r'"?([A-Za-z_][A-Za-z0-9_]*)', statement.lstrip(), re.IGNORECASE)
        if pattern
        else None
    )
    return f"{verb} {found.group(1)}" if found else verb


def _count_statement(_connection: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
    global statements
    statements += 1
    statement_kinds[statement_kind(statement)] += 1


def _install_counters() -> None:
    import asyncpg.connection
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "before_cursor_execute", _count_statement)
    original_init = asyncpg.connection.Connection.__init__

    def init(self: Any, protocol: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, _CountingProtocol(protocol), *args, **kwargs)

    asyncpg.connection.Connection.__init__ = init  # type: ignore[method-assign]


def _serve_counts(path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen()
        while True:
            connection, _ = server.accept()
            with connection:
                connection.sendall(json.dumps(snapshot()).encode())


def install() -> None:
    directory = os.environ.get(PROBE_DIR_VARIABLE)
    if not directory:
        raise SystemExit(f"{PROBE_DIR_VARIABLE} must name a directory for the probe sockets")
    _install_counters()
    path = os.path.join(directory, f"{os.getpid()}.sock")
    threading.Thread(target=_serve_counts, args=(path,), name="bench-probe", daemon=True).start()
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))


COMMANDS = {
    "crm-service": ("crm_service.cli", "app"),
    "uvicorn": ("uvicorn.main", "main"),
}


def run(argv: list[str]) -> None:
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: python -m bench.probe {{{'|'.join(COMMANDS)}}} ARGS...")
    module_name, attribute = COMMANDS[argv[0]]
    module = __import__(module_name, fromlist=[attribute])
    sys.argv = argv
    getattr(module, attribute)()


# Uvicorn's worker processes are spawned and import the main module as __mp_main__.
if __name__ in ("__main__", "__mp_main__"):
    install()

if __name__ == "__main__":
    run(sys.argv[1:])
