"""Taking, listing, verifying and restoring backups, and replaying the forget-log.

SQLite is copied with its online backup API (a consistent snapshot while the service writes)
into a private temporary file beside the database, which is streamed through the encryption
and removed; PostgreSQL's `pg_dump -Fc` is read from its pipe chunk by chunk, so the dump is
never whole in memory or on disk in plaintext. A file becomes visible under its final name only
when complete and fsynced.

A restore first verifies the whole file and the forget-log's chain, then replaces the database
(SQLite: the decrypted copy is written beside it and moved over it; PostgreSQL: the schema is
dropped and `pg_restore` reads the decrypted stream from a pipe), migrates it forward to this
version's head and, before anything serves it, erases again every subject the forget-log
names (idempotently), restoring their blocklist entries and receipts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.backups.container import (
    CHUNK_BYTES,
    BackupError,
    BackupWriter,
    Manifest,
    read_manifest,
    read_stream,
    verify,
)
from crm_service.backups.forget_log import ForgetLog, ForgetLogError
from crm_service.config import Settings
from crm_service.crypto.master import KeyProvider
from crm_service.db.engine import checkpoint_sqlite, make_engine
from crm_service.db.migrations import upgrade
from crm_service.db.session import commit
from crm_service.db.tenancy import Organization
from crm_service.privacy import erasers  # noqa: F401 - what other features hold is erased too
from crm_service.privacy.erasure import reapply_erasure

logger = structlog.get_logger("crm_service.backups")

SUFFIX = ".crmbak"


class RestoreRefused(Exception):
    """A restore that would lose something (the message says what and how to proceed)."""


@dataclass(frozen=True)
class BackupFile:
    path: Path
    size: int
    manifest: Manifest


@dataclass(frozen=True)
class RestoreReport:
    manifest: Manifest
    reapplied: int  # erasures the forget-log applied again
    forget_log_entries: int
    without_forget_log: bool


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_path(url: str) -> Path:
    return Path(make_url(url).database or "")


def _pg_arguments(url: str) -> tuple[list[str], dict[str, str]]:
    parsed = make_url(url)
    arguments = ["-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432)]
    if parsed.username:
        arguments += ["-U", parsed.username]
    environment = dict(os.environ)
    if parsed.password:
        environment["PGPASSWORD"] = parsed.password
    return [*arguments, "-d", parsed.database or ""], environment


def _private_file(directory: Path, name: str) -> Path:
    """A new file only its owner can read (the plaintext SQLite copy, a partial backup)."""
    path = directory / name
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# -- facts for the manifest ------------------------------------------------------------------


def _sqlite_facts(path: Path) -> tuple[str | None, int]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        count = connection.execute("SELECT count(*) FROM organizations").fetchone()[0]
    return (revision[0] if revision else None), int(count)


async def _database_facts(url: str) -> tuple[str | None, int]:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            revision = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar_one_or_none()
            count = (await connection.execute(text("SELECT count(*) FROM organizations"))).scalar()
    finally:
        await engine.dispose()
    return revision, int(count or 0)


# -- create ----------------------------------------------------------------------------------


def _sqlite_snapshot(database: Path) -> Path:
    """A consistent copy through SQLite's online backup API (the service keeps writing)."""
    copy = _private_file(database.parent, f".crm-backup-{uuid.uuid4().hex}.tmp")
    with (
        contextlib.closing(sqlite3.connect(database)) as source,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
    return copy


def _stream_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _write_backup(
    settings: Settings, provider: KeyProvider, directory: Path, created_at: datetime,
    pg_facts: tuple[str | None, int] | None,
) -> BackupFile:  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"crm-backup-{created_at:%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:8]}{SUFFIX}"
    partial = _private_file(directory, f".{name}.partial")
    try:
        with partial.open("wb") as handle:
            writer = BackupWriter(handle, provider)
            if _is_sqlite(settings.database_url):
                snapshot = _sqlite_snapshot(_sqlite_path(settings.database_url))
                try:
                    revision, organizations = _sqlite_facts(snapshot)
                    for chunk in _stream_file(snapshot):
                        writer.write(chunk)
                finally:
                    snapshot.unlink()
                kind = "sqlite"
            else:
                assert pg_facts is not None
                revision, organizations = pg_facts
                _pg_dump_into(settings.database_url, writer)
                kind = "postgresql"
            manifest = writer.close(
                created_at=created_at.isoformat(),
                database=kind,
                schema_revision=revision,
                organization_count=organizations,
            )
            handle.flush()
            os.fsync(handle.fileno())
        final = directory / name
        os.replace(partial, final)
        _fsync_directory(directory)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupFile(final, final.stat().st_size, manifest)


def _pg_dump_into(url: str, writer: BackupWriter) -> None:
    arguments, environment = _pg_arguments(url)
    process = subprocess.Popen(
        ["pg_dump", "-Fc", "--no-owner", "--no-privileges", *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    while chunk := process.stdout.read(CHUNK_BYTES):
        writer.write(chunk)
    error = process.stderr.read()
    if process.wait() != 0:
        # pg_dump's messages name objects, never row values.
        first = error.decode(errors="replace").strip().splitlines()[:1]
        raise BackupError(f"pg_dump failed: {first[0] if first else 'no message'}")


async def create_backup(
    settings: Settings, provider: KeyProvider, *, now: datetime, to: Path | None = None
) -> BackupFile:
    ForgetLog(settings.forget_log_path, provider).ensure()
    pg_facts = (
        None if _is_sqlite(settings.database_url) else await _database_facts(settings.database_url)
    )
    return await asyncio.to_thread(
        _write_backup, settings, provider, to or settings.backup_dir, now, pg_facts
    )


# -- list, verify, retention -----------------------------------------------------------------


def backup_files(directory: Path) -> list[Path]:
    """Backups in `directory`, oldest first (their names sort by creation time)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.is_file())


def describe(path: Path, provider: KeyProvider) -> BackupFile:
    return BackupFile(path, path.stat().st_size, read_manifest(path, provider))


def verify_file(path: Path, provider: KeyProvider) -> Manifest:
    return verify(path, provider)


def prune(directory: Path, keep: int) -> int:
    """Delete the oldest backups beyond `keep`; how many were deleted."""
    files = backup_files(directory)
    doomed = files[: max(0, len(files) - keep)]
    for path in doomed:
        path.unlink()
    return len(doomed)


# -- restore ---------------------------------------------------------------------------------


async def _organization_count(url: str) -> int:
    """Organizations in the current database (0 when it has no schema yet)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            try:
                return int(
                    (await connection.execute(text("SELECT count(*) FROM organizations"))).scalar()
                    or 0
                )
            except Exception:  # noqa: BLE001 - no such table: an empty database
                return 0
    finally:
        await engine.dispose()


def _restore_sqlite(path: Path, provider: KeyProvider, database: Path) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    copy = _private_file(database.parent, f".crm-restore-{uuid.uuid4().hex}.tmp")
    try:
        with copy.open("wb") as handle:
            for item in read_stream(path, provider):
                if isinstance(item, bytes):
                    handle.write(item)
            handle.flush()
            os.fsync(handle.fileno())
        for stale in (Path(f"{database}-wal"), Path(f"{database}-shm")):
            stale.unlink(missing_ok=True)
        os.replace(copy, database)
        _fsync_directory(database.parent)
    except BaseException:
        copy.unlink(missing_ok=True)
        raise


async def _reset_postgres_schema(url: str) -> None:
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


def _restore_postgres(path: Path, provider: KeyProvider, url: str) -> None:
    arguments, environment = _pg_arguments(url)
    process = subprocess.Popen(
        ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", *arguments],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment,
    )  # fmt: skip
    assert process.stdin is not None and process.stderr is not None
    try:
        for item in read_stream(path, provider):
            if isinstance(item, bytes):
                process.stdin.write(item)
    finally:
        process.stdin.close()
    error = process.stderr.read()
    if process.wait() != 0:
        first = error.decode(errors="replace").strip().splitlines()[:1]
        raise BackupError(f"pg_restore failed: {first[0] if first else 'no message'}")


async def replay_forget_log(
    sessionmaker: async_sessionmaker[AsyncSession], forget_log: ForgetLog, *, now: datetime
) -> tuple[int, int]:
    """Erase again every subject the forget-log names whose organization the database holds.
    Returns (entries re-applied because the database still held something of them, entries)."""
    entries = forget_log.entries() if forget_log.exists() else []
    reapplied = 0
    for entry in entries:
        async with sessionmaker() as session:
            known = await session.get(Organization, entry.organization_id)
            if known is None:
                continue
            changed = await reapply_erasure(
                session,
                entry.organization_id,
                entry.subject_id,
                identifiers=set(entry.identifiers),
                receipt_id=entry.receipt_id,
                erased_at=entry.erased_at,
                now=now,
            )
            await commit(session)
            reapplied += int(changed)
    return reapplied, len(entries)


async def restore_backup(
    settings: Settings,
    provider: KeyProvider,
    sessionmaker_factory: object,
    path: Path,
    *,
    now: datetime,
    overwrite: bool,
    without_forget_log: bool,
) -> RestoreReport:
    """Restore `path` into the configured database, then replay the forget-log (see the module
    docstring). `sessionmaker_factory()` returns (engine, sessionmaker) for the database."""
    manifest = await asyncio.to_thread(verify, path, provider)
    kind = "sqlite" if _is_sqlite(settings.database_url) else "postgresql"
    if manifest.database != kind:
        raise RestoreRefused(f"this is a {manifest.database} backup and CRM_DATABASE_URL is {kind}")
    forget_log = ForgetLog(settings.forget_log_path, provider)
    if forget_log.exists():
        forget_log.entries()  # the chain must hold before anything changes
    elif not without_forget_log:
        raise RestoreRefused(
            f"no forget-log at {settings.forget_log_path}: restoring without it would bring "
            "back every subject erased since the backup; put it back, or pass "
            "--without-forget-log if it is truly lost"
        )
    present = await _organization_count(settings.database_url)
    if present and not overwrite:
        raise RestoreRefused(
            f"the database holds {present} organization(s); restoring replaces all of it "
            "(confirm, or pass --yes)"
        )
    if kind == "sqlite":
        await asyncio.to_thread(
            _restore_sqlite, path, provider, _sqlite_path(settings.database_url)
        )
    else:
        await _reset_postgres_schema(settings.database_url)
        await asyncio.to_thread(_restore_postgres, path, provider, settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine)  # an older schema revision migrates forward
    finally:
        await engine.dispose()

    engine, sessionmaker = sessionmaker_factory()  # type: ignore[operator]
    try:
        reapplied, entries = await replay_forget_log(sessionmaker, forget_log, now=now)
        async with sessionmaker() as session:
            organizations = (await session.execute(text("SELECT id FROM organizations"))).scalars()
            for organization_id in list(organizations):
                organization_id = uuid.UUID(str(organization_id))
                audit(
                    session,
                    Actor.system(organization_id),
                    AuditAction.BACKUP_RESTORED,
                    target_type="backup",
                    target_id=manifest.backup_id,
                    reason="without_forget_log"
                    if not forget_log.exists()
                    else "forget_log_replayed",
                )
            await commit(session)
        await checkpoint_sqlite(engine)
    finally:
        await engine.dispose()
    logger.info(
        "backup_restored",
        backup_id=manifest.backup_id,
        reapplied=reapplied,
        forget_log_entries=entries,
    )
    return RestoreReport(manifest, reapplied, entries, not forget_log.exists())


__all__ = [
    "BackupError",
    "BackupFile",
    "ForgetLogError",
    "RestoreRefused",
    "backup_files",
    "create_backup",
    "describe",
    "prune",
    "restore_backup",
    "verify_file",
]


async def scheduled_backup(
    settings: Settings, provider: KeyProvider, *, now: datetime
) -> BackupFile:
    """The worker's backup: taken, verified, then the oldest beyond CRM_BACKUP_KEEP deleted."""
    made = await create_backup(settings, provider, now=now)
    await asyncio.to_thread(verify, made.path, provider)
    prune(settings.backup_dir, settings.backup_keep)
    return made
