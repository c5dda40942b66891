"""Readiness: is the database reachable, is its schema at the head migration, is Redis up."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_service.db.migrations import current_revision
from crm_service.jobs.models import WorkerJob

logger = structlog.get_logger("crm_service.health")
CHECK_TIMEOUT_SECONDS = 2.0


async def _database(engine: AsyncEngine) -> str:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return "ok"


async def _migrations(engine: AsyncEngine, head: str | None) -> str:
    async with engine.connect() as connection:
        current = await current_revision(connection)
    return "ok" if current == head else "pending"


async def last_backup(engine: AsyncEngine) -> dict[str, Any] | None:
    """The last scheduled backup that was written and verified (the worker's `backup` job
    row, shared by every instance), or None when none was yet."""
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    select(WorkerJob.last_finished_at, WorkerJob.last_result).where(
                        WorkerJob.name == "backup"
                    )
                )
            ).first()
    except Exception as exc:  # noqa: BLE001 - a detail, never a reason to fail readiness
        logger.warning("backup_status_unavailable", error_type=type(exc).__name__)
        return None
    if row is None or row[0] is None or row[1] is None:
        return None
    # The job's result is the size in KiB.
    return {"last_success_at": row[0], "size_bytes": int(row[1]) * 1024}


async def _redis(client: Any) -> str:
    await client.ping()
    return "ok"


async def _run(name: str, check: Any) -> str:
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any failure makes the check fail
        logger.warning("readiness_check_failed", check=name, error_type=type(exc).__name__)
        return "unavailable"


async def readiness(
    *, engine: AsyncEngine, head_revision: str | None, redis: Any | None
) -> dict[str, str]:
    checks = {
        "database": await _run("database", _database(engine)),
        "migrations": await _run("migrations", _migrations(engine, head_revision)),
    }
    checks["redis"] = await _run("redis", _redis(redis)) if redis is not None else "not_configured"
    return checks
