"""Re-sealing records in batches, online: after a field is reclassified (every row of the
module) and after key rotation (rows still under an older key generation).

Each batch is its own transaction; stored values describe themselves (sealed or plain, and
under which key), so an interrupted run is simply run again: nothing is lost and nothing is
applied twice. A row changed by a request in the meantime makes its batch retry.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from crm_service.crypto.models import DataKeyRecord
from crm_service.records.accounts.repository import AccountRepository
from crm_service.records.contacts.repository import ContactRepository
from crm_service.records.leads.repository import LeadRepository
from crm_service.records.models import Module
from crm_service.records.repository import RecordRepository
from crm_service.records.storage import key_generation

logger = structlog.get_logger("crm_service.jobs.resealing")

REPOSITORIES: dict[Module, type[RecordRepository[Any]]] = {
    Module.LEADS: LeadRepository,
    Module.CONTACTS: ContactRepository,
    Module.ACCOUNTS: AccountRepository,
}
_MAX_RETRIES = 5


def _selection(repository: RecordRepository[Any], generation: int | None) -> Any:
    model = repository.model
    statement = repository.scoped()
    if generation is not None:
        older_keys = select(DataKeyRecord.id).where(
            DataKeyRecord.organization_id == repository.organization_id,
            DataKeyRecord.generation < generation,
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
) -> int:
    """Re-seal a module's rows under the current classification and newest key generation.

    `stale_keys_only` limits the run to rows under an older key generation (rotation).
    Returns how many rows were re-sealed.
    """
    done, batches = 0, 0
    after: uuid.UUID | None = None
    while max_batches is None or batches < max_batches:
        for attempt in range(_MAX_RETRIES):
            try:
                async with sessionmaker() as session:
                    repository = REPOSITORIES[module](session, organization_id)
                    generation = (
                        await key_generation(session, organization_id) if stale_keys_only else None
                    )
                    statement = _selection(repository, generation)
                    if after is not None:
                        statement = statement.where(repository.model.id > after)
                    rows = list(
                        (
                            await session.execute(
                                statement.order_by(repository.model.id).limit(batch_size)
                            )
                        ).scalars()
                    )
                    await repository.storage.reveal(rows)
                    for row in rows:
                        if not row.erased:
                            await repository.save(row, reseal=True)
                    await session.commit()
                break
            except StaleDataError:
                # A request changed one of these rows meanwhile; read the batch again.
                logger.info("reseal_batch_retry", module=module.value, attempt=attempt + 1)
        else:
            raise RuntimeError("re-sealing kept colliding with concurrent writes; run it again")
        if not rows:
            break
        after = rows[-1].id
        done += len(rows)
        batches += 1
        if on_batch is not None:
            on_batch(len(rows))
    logger.info("reseal_done", module=module.value, rows=done, stale_keys_only=stale_keys_only)
    return done
