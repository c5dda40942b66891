"""Re-sealing records in batches, online: after a field is reclassified (every row of the
module) and after key rotation (rows still under an older key generation).

Each batch is its own transaction; stored values describe themselves (sealed or plain, and
under which key), so an interrupted run is simply run again: nothing is lost and nothing is
applied twice. A row changed by a request in the meantime makes its batch retry.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from crm_service.crypto.models import DataKeyRecord, DataKeyStatus
from crm_service.crypto.service import key_generation
from crm_service.db.base import utcnow
from crm_service.db.session import commit
from crm_service.kit.modules import Module
from crm_service.records.accounts.repository import AccountRepository
from crm_service.records.contacts.repository import ContactRepository
from crm_service.records.leads.repository import LeadRepository
from crm_service.records.repository import RecordRepository

logger = structlog.get_logger("crm_service.jobs.resealing")

REPOSITORIES: dict[Module, type[RecordRepository[Any]]] = {
    Module.LEADS: LeadRepository,
    Module.CONTACTS: ContactRepository,
    Module.ACCOUNTS: AccountRepository,
}
_MAX_RETRIES = 5
# Rows written within this much before the job began are visited again (clock skew).
_CLOCK_MARGIN = timedelta(seconds=5)
_SETTLE_SWEEPS = 10


def _selection(repository: RecordRepository[Any], generation: int | None) -> Any:
    model = repository.model
    statement = repository.scoped()
    if generation is not None:
        # Rows under an older generation whose key still exists (an erased row stays as is).
        older_keys = select(DataKeyRecord.id).where(
            DataKeyRecord.organization_id == repository.organization_id,
            DataKeyRecord.generation < generation,
            DataKeyRecord.status != DataKeyStatus.DESTROYED.value,
        )
        statement = statement.where(model.data_key_id.in_(older_keys))
    return statement


async def count_to_reseal(
    session: AsyncSession, organization_id: uuid.UUID, module: Module, *, stale_keys_only: bool
) -> int:
    repository = REPOSITORIES[module](session, organization_id)
    generation = await key_generation(session, organization_id) if stale_keys_only else None
    subquery = _selection(repository, generation).subquery()
    return int((await session.execute(select(func.count()).select_from(subquery))).scalar_one())


async def reseal_records(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    organization_id: uuid.UUID,
    module: Module,
    stale_keys_only: bool,
    batch_size: int = 200,
    max_batches: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    settle_seconds: float = 0.5,
) -> int:
    """Re-seal a module's rows under the current classification and newest key generation.

    `stale_keys_only` (rotation) takes rows under an older generation until none is left, so
    a request that sealed under the old generation while the job ran is caught too. Otherwise
    (reclassification) every row is visited in id order, then rows written since the job
    began are visited again: a request that read the old classification is caught that way.
    Returns how many rows were re-sealed.
    """
    started = utcnow() - _CLOCK_MARGIN
    passes = [None] if stale_keys_only else [None, started]
    done, batches = 0, 0
    if stale_keys_only:
        # Until a sweep after a quiet moment finds nothing: a write that read the old
        # generation just before the rotation began may commit after a sweep (SQLite has no
        # FOR SHARE to make the rotation wait for it).
        passes += [None] * _SETTLE_SWEEPS
    for number, written_since in enumerate(passes):
        if max_batches is not None and batches >= max_batches:
            break  # an interrupted run: the rest is for the next one
        if number and stale_keys_only:
            await asyncio.sleep(settle_seconds)
            async with sessionmaker() as session:
                if not await count_to_reseal(
                    session, organization_id, module, stale_keys_only=True
                ):
                    break
        after: uuid.UUID | None = None
        while max_batches is None or batches < max_batches:
            rows = await _reseal_batch(
                sessionmaker,
                organization_id=organization_id,
                module=module,
                stale_keys_only=stale_keys_only,
                after=after,
                written_since=written_since,
                batch_size=batch_size,
            )
            if not rows:
                break
            # Stale rows leave the selection once re-sealed; a full pass walks the ids.
            after = None if stale_keys_only else rows[-1]
            done += len(rows)
            batches += 1
            if on_batch is not None:
                on_batch(len(rows))
    logger.info("reseal_done", module=module.value, rows=done, stale_keys_only=stale_keys_only)
    return done


async def _reseal_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    organization_id: uuid.UUID,
    module: Module,
    stale_keys_only: bool,
    after: uuid.UUID | None,
    written_since: datetime | None,
    batch_size: int,
) -> list[uuid.UUID]:
    """Re-seal one batch in one transaction; returns the ids done (empty when none left)."""
    for attempt in range(_MAX_RETRIES):
        try:
            async with sessionmaker() as session:
                repository = REPOSITORIES[module](session, organization_id)
                model = repository.model
                generation = (
                    await key_generation(session, organization_id) if stale_keys_only else None
                )
                statement = _selection(repository, generation)
                if after is not None:
                    statement = statement.where(model.id > after)
                if written_since is not None:
                    statement = statement.where(model.updated_at >= written_since)
                rows = list(
                    (
                        await session.execute(statement.order_by(model.id).limit(batch_size))
                    ).scalars()
                )
                await repository.storage.reveal(rows)
                for row in rows:
                    if not row.erased:
                        await repository.save(row, reseal=True)
                await commit(session)
                return [row.id for row in rows]
        except StaleDataError:
            # A request changed one of these rows meanwhile; read the batch again.
            logger.info("reseal_batch_retry", module=module.value, attempt=attempt + 1)
    raise RuntimeError("re-sealing kept colliding with concurrent writes; run it again")
