"""Key rotation. Data keys: a new generation is active at once, then every row still under
an older generation is re-sealed (resealing.py). Master keys: every data key wrapped by an
older master key is re-wrapped by the active one. Both resume where they stopped."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor, record
from crm_service.crypto.master import KeyProvider
from crm_service.crypto.models import DataKeyRecord
from crm_service.crypto.service import keyring_for, keyring_material_rewrap
from crm_service.db.session import commit
from crm_service.db.tenancy import Organization
from crm_service.orgs.repository import lock_organization_for_storage_change


async def organization_ids(session: AsyncSession) -> list[uuid.UUID]:
    return list(
        (await session.execute(select(Organization.id).order_by(Organization.id))).scalars()
    )


async def begin_data_key_rotation(session: AsyncSession, organization_id: uuid.UUID) -> int:
    """Raise the organization's key generation; new writes seal under it from now on."""
    organization = await lock_organization_for_storage_change(session, organization_id)
    organization.key_generation += 1
    record(
        session,
        Actor.system(organization_id),
        AuditAction.KEYS_ROTATED,
        target_type="organization",
        target_id=organization_id,
    )
    await session.flush()
    # The organization key of the new generation exists before any request needs it.
    await keyring_for(session, organization_id).organization_key(organization.key_generation)
    return organization.key_generation


def _wrapped_by_older_master(provider: KeyProvider):  # noqa: ANN202 - a select()
    return select(DataKeyRecord).where(
        DataKeyRecord.wrapped.is_not(None),
        DataKeyRecord.master_key_id != provider.active_key_id,
    )


async def count_to_rewrap(session: AsyncSession, provider: KeyProvider) -> int:
    subquery = _wrapped_by_older_master(provider).subquery()
    return int((await session.execute(select(func.count()).select_from(subquery))).scalar_one())


async def rewrap_data_keys(
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: KeyProvider,
    *,
    batch_size: int = 500,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    done = 0
    while True:
        async with sessionmaker() as session:
            records = list(
                (
                    await session.execute(
                        _wrapped_by_older_master(provider)
                        .order_by(DataKeyRecord.id)
                        .limit(batch_size)
                        .with_for_update(skip_locked=True)
                    )
                ).scalars()
            )
            for record in records:
                keyring_material_rewrap(record, provider)
            await commit(session)
        if not records:
            await _audit_master_rotation(sessionmaker)
            return done
        done += len(records)
        if on_batch is not None:
            on_batch(len(records))


async def _audit_master_rotation(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        for organization_id in await organization_ids(session):
            record(
                session,
                Actor.system(organization_id),
                AuditAction.MASTER_KEY_ROTATED,
                target_type="organization",
                target_id=organization_id,
            )
        await commit(session)
