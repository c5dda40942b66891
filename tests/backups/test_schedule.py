"""Scheduled backups: the worker takes one every CRM_BACKUP_INTERVAL_HOURS (none when unset),
verifies it, keeps CRM_BACKUP_KEEP, and /readyz and /metrics show the last one; two workers
at once take one backup, not two. And the CLI: `backup verify` says what is wrong, exit 1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from crm_service.backups.service import backup_files, verify_file
from crm_service.clock import Clock
from crm_service.jobs.worker import run_due_jobs
from tests.backups.conftest import fresh_database, provider_of, serving
from tests.conftest import MASTER_KEY, TestDatabases, make_settings, new_org


async def test_the_worker_takes_verifies_and_prunes_backups(
    kind: str, databases: TestDatabases, tmp_path: Path
) -> None:
    url = await fresh_database(databases, kind)
    off = make_settings(url, backup_dir=tmp_path / "backups")
    on = make_settings(url, backup_dir=tmp_path / "backups", backup_interval_hours=6, backup_keep=2)
    async with serving(on) as (app, client):
        await new_org(app, client)
        now = Clock().now()
        assert "backup" not in await run_due_jobs(app.state.sessionmaker, off, now)
        assert backup_files(on.backup_dir) == []
        assert "backup" not in (await client.get("/readyz")).json()

        # Two workers at once: one takes the backup.
        first, second = await asyncio.gather(
            run_due_jobs(app.state.sessionmaker, on, now, only={"backup"}),
            run_due_jobs(app.state.sessionmaker, on, now, only={"backup"}),
        )
        assert [done.get("backup") for done in (first, second)].count(None) == 1
        assert len(backup_files(on.backup_dir)) == 1
        later = await run_due_jobs(app.state.sessionmaker, on, now + timedelta(hours=1))
        assert "backup" not in later  # not due yet
        for hours in (6, 12, 18):
            done = await run_due_jobs(
                app.state.sessionmaker, on, now + timedelta(hours=hours), only={"backup"}
            )
            assert isinstance(done["backup"], int) and done["backup"] > 0
        kept = backup_files(on.backup_dir)
        assert len(kept) == 2
        for path in kept:
            verify_file(path, provider_of(on))

        ready = (await client.get("/readyz")).json()
        assert ready["status"] == "ok"
        assert ready["backup"]["size_bytes"] >= kept[-1].stat().st_size
        metrics = (await client.get("/metrics")).text
        assert "crm_backup_last_success_timestamp_seconds" in metrics
        size_line = next(
            line for line in metrics.splitlines() if line.startswith("crm_backup_last_size_bytes")
        )
        assert float(size_line.split()[-1]) == ready["backup"]["size_bytes"]


def _cli(*arguments: str, backup_dir: Path, database: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    environment.update(
        CRM_MASTER_KEY=MASTER_KEY, CRM_BACKUP_DIR=str(backup_dir), CRM_DATABASE_URL=database
    )
    return subprocess.run(
        [sys.executable, "-m", "crm_service.cli", "backup", *arguments],
        capture_output=True, text=True, env=environment, timeout=120,
    )  # fmt: skip


async def test_the_backup_commands(databases: TestDatabases, tmp_path: Path) -> None:
    url = await fresh_database(databases, "sqlite")
    settings = make_settings(url, backup_dir=tmp_path / "backups")
    async with serving(settings) as (app, client):
        await new_org(app, client)
    created = _cli("create", backup_dir=settings.backup_dir, database=url)
    assert created.returncode == 0, created.stderr
    [path] = backup_files(settings.backup_dir)
    listed = _cli("list", backup_dir=settings.backup_dir, database=url)
    assert path.name in listed.stdout and "revision 2026" in listed.stdout

    intact = _cli("verify", str(path), backup_dir=settings.backup_dir, database=url)
    assert intact.returncode == 0 and "intact" in intact.stdout
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x80
    broken = tmp_path / "broken.crmbak"
    broken.write_bytes(bytes(blob))
    refused = _cli("verify", str(broken), backup_dir=settings.backup_dir, database=url)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "NOT intact" in refused.stderr

    settings.forget_log_path.unlink()
    restore = _cli("restore", str(path), "--yes", backup_dir=settings.backup_dir, database=url)
    assert restore.returncode == 1 and "no forget-log" in restore.stderr
    forced = _cli(
        "restore", str(path), "--yes", "--without-forget-log",
        backup_dir=settings.backup_dir, database=url,
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert "WARNING" in forced.stderr and "restored without it" in forced.stdout
