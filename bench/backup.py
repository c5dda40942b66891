"""Backup and restore of a large organization: wall time and peak memory of the commands.

    .venv/bin/python -m bench.backup [--contacts 100000] [--sqlite]

Seeds `--contacts` contacts (each its own data subject and key, sealed by the storage layer,
as `make bench` does) into a throw-away PostgreSQL database (CRM_BENCH_POSTGRES_URL, default
the local test server) or, with `--sqlite`, a SQLite file; then runs `crm-service backup
create`, `backup verify` and `backup restore --yes` (into a second, empty database) as
subprocesses under /usr/bin/time, and prints a JSON report: seconds and peak resident memory
(MiB, the largest of the command and its children, pg_dump/pg_restore included), the backup's
size, and the database's size. Peak memory should not grow with the database: the dump is
streamed through the encryption in 1 MiB chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.run import CRM_SERVICE, DEFAULT_POSTGRES_URL, POSTGRES_URL_VARIABLE, seed_contacts
from crm_service.db.engine import make_engine


async def _new_database(kind: str, directory: Path) -> str:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{directory / f'bench-{uuid.uuid4().hex[:8]}.db'}"
    admin_url = os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL)
    name = f"crm_bench_backup_{uuid.uuid4().hex[:8]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def _drop(url: str) -> None:
    if url.startswith("sqlite"):
        return
    admin = make_engine(
        os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as connection:
        name = url.rsplit("/", 1)[1]
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


def _environment(url: str, master_key: str, backup_dir: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    environment.update(
        CRM_DATABASE_URL=url, CRM_MASTER_KEY=master_key, CRM_BACKUP_DIR=str(backup_dir),
        CRM_LOG_LEVEL="WARNING",
    )  # fmt: skip
    return environment


def _measured(arguments: list[str], environment: dict[str, str]) -> dict[str, Any]:
    started = time.monotonic()
    finished = subprocess.run(
        ["/usr/bin/time", "-f", "%M", CRM_SERVICE, *arguments],
        env=environment, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed: {finished.stderr.strip()}")
    peak_kib = int(finished.stderr.strip().splitlines()[-1])
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "stdout": finished.stdout.strip(),
    }


async def _size(url: str) -> int:
    if url.startswith("sqlite"):
        return Path(url.split("///", 1)[1]).stat().st_size
    engine = make_engine(url)
    async with engine.connect() as connection:
        size = (
            await connection.execute(text("SELECT pg_database_size(current_database())"))
        ).scalar()
    await engine.dispose()
    return int(size or 0)


async def main(contacts: int, kind: str) -> dict[str, Any]:
    from crm_service import models  # noqa: F401 - registers every table
    from crm_service.config import Settings
    from crm_service.crypto.master import key_provider_from_settings
    from crm_service.crypto.service import session_info
    from crm_service.db.engine import make_sessionmaker
    from crm_service.db.migrations import upgrade
    from crm_service.db.session import commit
    from crm_service.orgs.service import bootstrap_organization

    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    with tempfile.TemporaryDirectory(prefix="crm-bench-backup-") as scratch:
        directory = Path(scratch)
        source, target = await _new_database(kind, directory), await _new_database(kind, directory)
        try:
            engine = make_engine(source)
            await upgrade(engine)
            settings = Settings(database_url=source, master_key=master_key)
            sessionmaker = make_sessionmaker(
                engine, info=session_info(key_provider_from_settings(settings), phone_region=None)
            )
            async with sessionmaker() as session:
                created = await bootstrap_organization(
                    session=session, org_name="Bench", admin_email="bench@example.com",
                    password="benchmark password 123",
                )  # fmt: skip
                await commit(session)
            await engine.dispose()
            started = time.monotonic()
            await seed_contacts(
                source, master_key, created.organization.id, created.admin.id, contacts
            )
            seeded = time.monotonic() - started
            environment = _environment(source, master_key, directory / "backups")
            made = _measured(["backup", "create"], environment)
            path = json.loads(made.pop("stdout"))["file"]
            verified = _measured(["backup", "verify", path], environment)
            verified.pop("stdout")
            restored = _measured(
                ["backup", "restore", path, "--yes"],
                _environment(target, master_key, directory / "backups"),
            )
            restored.pop("stdout")
            return {
                "database": kind,
                "contacts": contacts,
                "seed_seconds": round(seeded, 1),
                "database_bytes": await _size(source),
                "backup_bytes": Path(path).stat().st_size,
                "create": made,
                "verify": verified,
                "restore": restored,
                "python": sys.version.split()[0],
            }
        finally:
            await _drop(source)
            await _drop(target)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    print(
        json.dumps(
            asyncio.run(main(args.contacts, "sqlite" if args.sqlite else "postgresql")), indent=2
        )
    )
