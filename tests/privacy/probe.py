"""Where a data subject's values could hide: the database file and its WAL, a pg_dump, every
table's rows. Each probe looks for the raw value, its lowercase and its hex."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from crm_service.db.base import Base
from tests.conftest import file_bytes_unlocked


@dataclass
class Subject:
    """A person with distinctive values, none of which occurs anywhere by chance."""

    first_name: str
    last_name: str
    email: str
    former_email: str
    phone: str
    mobile: str
    company: str
    title: str
    description: str

    @classmethod
    def new(cls) -> Subject:
        tag = secrets.token_hex(4)
        digits = str(secrets.randbelow(9000) + 1000)
        return cls(
            first_name=f"Zephyrine{tag}",
            last_name=f"Quillfeather{tag}",
            email=f"zephyrine.{tag}@example.com",
            former_email=f"old.zephyrine.{tag}@example.com",
            phone=f"+44 20 7946 {digits}",
            mobile=f"+44 7700 90{digits}",
            company=f"Quillworks {tag} Ltd",
            title=f"Archivist{tag}",
            description=f"Met at the fair, likes {tag} tea",
        )

    def values(self) -> list[str]:
        return [
            self.first_name,
            self.last_name,
            self.email,
            self.former_email,
            self.phone,
            self.phone.replace(" ", ""),
            self.mobile.replace(" ", ""),
            self.company,
            self.title,
            self.description,
        ]


def needles(values: list[str]) -> list[bytes]:
    found: list[bytes] = []
    for value in values:
        for variant in (value, value.lower()):
            found += [variant.encode(), variant.encode().hex().encode()]
    return found


def hits(blob: bytes, values: list[str]) -> list[str]:
    """Which values occur in `blob` (raw, lowercased or hex)."""
    lowered = blob.lower()
    return [value for value in values if any(n.lower() in lowered for n in needles([value]))]


def sqlite_files(database_url: str) -> list[Path]:
    path = Path(make_url(database_url).database or "")
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal")) if p.exists()]


def pg_dump(database_url: str) -> bytes:
    url = make_url(database_url)
    return subprocess.run(
        ["pg_dump", "-h", url.host or "127.0.0.1", "-U", url.username or "postgres",
         "-p", str(url.port or 5432), "-d", url.database or ""],
        check=True, capture_output=True, timeout=120,
    ).stdout  # fmt: skip


def storage_hits(database_url: str, values: list[str]) -> dict[str, list[str]]:
    """What the database's files (SQLite) or a pg_dump (PostgreSQL) still hold."""
    if database_url.startswith("sqlite"):
        return {
            path.name: found
            for path in sqlite_files(database_url)
            if (found := hits(file_bytes_unlocked(path), values))
        }
    found = hits(pg_dump(database_url), values)
    return {"pg_dump": found} if found else {}


async def table_hits(engine: Any, values: list[str]) -> dict[str, list[str]]:
    """Every row of every table, as text and bytes."""
    found: dict[str, list[str]] = {}
    async with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            rows = (await connection.execute(text(f'SELECT * FROM "{table.name}"'))).all()
            blob = b"\n".join(
                (bytes(cell) if isinstance(cell, bytes | memoryview) else str(cell).encode())
                for row in rows
                for cell in row
            )
            if matched := hits(blob, values):
                found[table.name] = matched
    return found
