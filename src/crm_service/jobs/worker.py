"""`crm-service worker`: the one process for periodic jobs.

Each job runs in one transaction that holds its `worker_jobs` row: on PostgreSQL the row is
claimed with FOR UPDATE SKIP LOCKED, so a second worker skips a job another is running; on
SQLite the first write takes the database's write lock, and the second worker, once it gets
it, finds the job no longer due. Either way no job's work is done twice.

A job that fails is logged (its error type, never the message), counted in the job metrics
and reported as "failed"; the other jobs still run, and so does the worker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.auth.throttle import forget_old_attempts
from crm_service.config import Settings
from crm_service.db.engine import checkpoint_sqlite
from crm_service.db.repository import insert_ignoring_conflicts
from crm_service.db.session import commit
from crm_service.jobs.models import WorkerJob
from crm_service.metrics import declare_jobs, observe_job

logger = structlog.get_logger("crm_service.worker")

BATCH_SIZE = 200


async def _purge_recycle_bin(session: AsyncSession, settings: Settings, now: datetime) -> int:
    from crm_service.records.recycle_bin import purge_expired

    retention = timedelta(days=settings.recycle_bin_retention_days)
    return await purge_expired(session, now=now, retention=retention, batch_size=BATCH_SIZE)


async def _purge_audit_log(session: AsyncSession, settings: Settings, now: datetime) -> int:
    from crm_service.audit.repository import organizations_with_events
    from crm_service.audit.service import purge_expired

    retention = timedelta(days=settings.audit_retention_days)
    purged = 0
    for organization_id in await organizations_with_events(session):
        purged += await purge_expired(session, organization_id, retention=retention, now=now)
    return purged


async def _send_mail(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> int:
    from crm_service.mail.dispatcher import send_due_mail

    return await send_due_mail(sessionmaker, settings, now)


async def _purge_settled_mail(session: AsyncSession, settings: Settings, now: datetime) -> int:
    from crm_service.mail.dispatcher import purge_settled_mail

    return await purge_settled_mail(session, now, settings.mail_keep_days)


async def _deliver_webhooks(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> int:
    from crm_service.integrations.delivery import BATCH_SIZE, deliver_due

    return await deliver_due(sessionmaker, settings, now, limit=BATCH_SIZE)


async def _forget_sign_in_attempts(session: AsyncSession, settings: Settings, now: datetime) -> int:
    return await forget_old_attempts(session, now)


async def _take_backup(session: AsyncSession, settings: Settings, now: datetime) -> int:
    from crm_service.backups.service import scheduled_backup
    from crm_service.metrics import observe_backup

    made = await scheduled_backup(settings, session.info["key_provider"], now=now)
    observe_backup(succeeded_at=time.time(), size=made.size)
    logger.info("backup_taken", file=made.path.name, size=made.size)
    return -(-made.size // 1024)  # the job's result: the backup's size in KiB


def _backup_interval(settings: Settings) -> timedelta | None:
    hours = settings.backup_interval_hours
    return None if hours is None else timedelta(hours=hours)


async def _forget_expired_tokens(session: AsyncSession, settings: Settings, now: datetime) -> int:
    from crm_service.oauth.service import forget_expired

    return await forget_expired(session, now)


async def _consent_deadlines(session: AsyncSession, settings: Settings, now: datetime) -> int:
    from crm_service.consent.requests import mark_no_response

    return await mark_no_response(session, now, BATCH_SIZE)


async def _consent_reminders(session: AsyncSession, settings: Settings, now: datetime) -> int:
    from crm_service.consent.requests import send_reminders

    return await send_reminders(session, settings, now, BATCH_SIZE)


async def _purge_webform_submissions(
    session: AsyncSession, settings: Settings, now: datetime
) -> int:
    from crm_service.consent.jobs import purge_public_state

    return await purge_public_state(session, now, BATCH_SIZE)


async def _forget_portal_sign_ins(session: AsyncSession, settings: Settings, now: datetime) -> int:
    from crm_service.portal.repository import forget_expired

    idle = timedelta(seconds=settings.portal_session_idle_seconds)
    return await forget_expired(session, now, idle=idle)


async def _purge_packages(session: AsyncSession, settings: Settings, now: datetime) -> int:
    from crm_service.privacy.package import purge_packages

    return await purge_packages(session, now, BATCH_SIZE)


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    run: Callable[[Any, Settings, datetime], Awaitable[int]]
    # A run that did a full batch is due again at once: there may be more.
    batch_size: int | None = None
    # A job whose period is a setting: None switches it off.
    interval: Callable[[Settings], timedelta | None] | None = None
    # A job that waits on the outside world (SMTP) opens its own short transactions, so
    # neither its job row nor SQLite's write lock is held meanwhile: `run` gets the
    # sessionmaker, not a session, and claims its own rows (several workers may run it).
    own_transactions: bool = False
    # A job that destroys data keys (or deletes what they sealed): after a run that did
    # something, SQLite's WAL is checkpointed so no page image of it stays in `-wal`.
    forgets: bool = False


JOBS: tuple[Job, ...] = (
    Job(
        "purge_recycle_bin",
        timedelta(hours=1),
        _purge_recycle_bin,
        batch_size=BATCH_SIZE,
        forgets=True,
    ),
    Job("purge_audit_log", timedelta(days=1), _purge_audit_log),
    Job("forget_sign_in_attempts", timedelta(hours=1), _forget_sign_in_attempts),
    Job("send_mail", timedelta(0), _send_mail, own_transactions=True),
    Job("purge_settled_mail", timedelta(hours=1), _purge_settled_mail),
    Job("forget_expired_tokens", timedelta(hours=1), _forget_expired_tokens),
    Job(
        "deliver_webhooks",
        timedelta(seconds=0),
        _deliver_webhooks,
        own_transactions=True,
    ),
    Job("consent_deadlines", timedelta(minutes=1), _consent_deadlines, batch_size=BATCH_SIZE),
    Job("consent_reminders", timedelta(minutes=15), _consent_reminders, batch_size=BATCH_SIZE),
    Job(
        "purge_webform_submissions",
        timedelta(minutes=15),
        _purge_webform_submissions,
        batch_size=BATCH_SIZE,
        forgets=True,
    ),
    Job("purge_packages", timedelta(minutes=15), _purge_packages, batch_size=BATCH_SIZE),
    Job("forget_portal_sign_ins", timedelta(minutes=15), _forget_portal_sign_ins),
    # Last: a backup holds what the jobs before it did.
    Job("backup", timedelta(hours=24), _take_backup, interval=_backup_interval),
)


async def _ensure_rows(session: AsyncSession) -> None:
    await session.execute(
        insert_ignoring_conflicts(session, WorkerJob, [{"name": job.name} for job in JOBS])
    )
    await commit(session)


async def _claim(session: AsyncSession, job: Job) -> WorkerJob | None:
    """Lock the job's row for this transaction; None when another worker holds it."""
    statement = select(WorkerJob).where(WorkerJob.name == job.name)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    else:
        # Take SQLite's write lock before reading, so the read below is the latest.
        await session.execute(
            update(WorkerJob)
            .where(WorkerJob.name == job.name)
            .values(last_started_at=WorkerJob.last_started_at)
        )
    return (
        await session.execute(statement.execution_options(populate_existing=True))
    ).scalar_one_or_none()


def _due(row: WorkerJob, every: timedelta, now: datetime) -> bool:
    return row.last_finished_at is None or row.last_finished_at + every <= now


async def run_due_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime,
    *,
    only: set[str] | None = None,
) -> dict[str, int | str]:
    """Run each due job once; returns what each job that ran did, or "failed"."""
    declare_jobs([job.name for job in JOBS])
    async with sessionmaker() as session:
        await _ensure_rows(session)
    done: dict[str, int | str] = {}
    for job in JOBS:
        if only is not None and job.name not in only:
            continue
        if job.own_transactions:
            outcome = await _run_on_its_own(sessionmaker, settings, job, now)
            if outcome is not None:
                done[job.name] = outcome
            continue
        every = job.interval(settings) if job.interval is not None else job.every
        if every is None:
            continue
        try:
            async with sessionmaker() as session:
                row = await _claim(session, job)
                if row is None or not _due(row, every, now):
                    continue
                row.last_started_at = now
                try:
                    result = await job.run(session, settings, now)
                    row.last_result = result
                    if job.batch_size is None or result < job.batch_size:
                        row.last_finished_at = now
                    await commit(session)
                except OperationalError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one failing job stops no other
                    observe_job(job.name, succeeded_at=None)
                    logger.error("job_failed", job=job.name, error_type=type(exc).__name__)
                    done[job.name] = "failed"
                    continue
        except OperationalError:
            # SQLite: another worker held the write lock for longer than the busy timeout.
            logger.warning("job_skipped_busy", job=job.name)
            continue
        observe_job(job.name, succeeded_at=time.time())
        done[job.name] = result
        logger.info("job_done", job=job.name, result=result)
        if job.forgets and result:
            await checkpoint_sqlite(sessionmaker.kw["bind"])
    return done


async def _run_on_its_own(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, job: Job, now: datetime
) -> int | str | None:
    """Run a job that keeps its own transactions; its row only records the last run."""
    try:
        result = await job.run(sessionmaker, settings, now)
    except OperationalError:
        logger.warning("job_skipped_busy", job=job.name)
        return None
    except Exception as exc:  # noqa: BLE001 - one failing job stops no other
        observe_job(job.name, succeeded_at=None)
        logger.error("job_failed", job=job.name, error_type=type(exc).__name__)
        return "failed"
    try:
        async with sessionmaker() as session:
            await session.execute(
                update(WorkerJob)
                .where(WorkerJob.name == job.name)
                .values(last_started_at=now, last_finished_at=now, last_result=result)
            )
            await commit(session)
    except OperationalError:
        logger.warning("job_skipped_busy", job=job.name)
    observe_job(job.name, succeeded_at=time.time())
    if result:
        logger.info("job_done", job=job.name, result=result)
    return result


async def run_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Callable[[], datetime],
) -> None:
    run_id = uuid.uuid4().hex[:8]
    logger.info("worker_started", worker=run_id, jobs=[job.name for job in JOBS])
    while True:
        await run_due_jobs(sessionmaker, settings, clock())
        await asyncio.sleep(settings.worker_interval_seconds)
