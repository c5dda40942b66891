"""SQL of access and portability packages: what the CRM holds on data subjects (their leads
and contacts, live and in the recycle bin; their consent requests) and the stored packages'
parts. Always scoped by organization, except :func:`expired_part_ids`, the worker's one query
across organizations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.consent.models import ConsentRequest
from crm_service.privacy.package_models import StoredPackagePart
from crm_service.records.repository import RecordRepository


async def records_of_subjects(
    repository: RecordRepository[Any], subject_ids: Sequence[uuid.UUID]
) -> list[Any]:
    """Every lead (or contact) of the subjects, live and in the recycle bin, oldest first,
    revealed (an erased one says so)."""
    model = repository.model
    statement = (
        select(model)
        .where(
            model.organization_id == repository.organization_id,
            model.subject_id.in_(list(subject_ids)),
        )
        .order_by(model.created_at, model.id)
    )
    records = list((await repository.session.execute(statement)).scalars())
    await repository.storage.reveal(records)
    return records


async def consent_requests_of_subjects(
    session: AsyncSession, organization_id: uuid.UUID, subject_ids: Sequence[uuid.UUID]
) -> list[ConsentRequest]:
    result = await session.execute(
        select(ConsentRequest)
        .where(
            ConsentRequest.organization_id == organization_id,
            ConsentRequest.subject_id.in_(list(subject_ids)),
        )
        .order_by(ConsentRequest.created_at, ConsentRequest.id)
    )
    return list(result.scalars())


async def parts_of_request(
    session: AsyncSession, organization_id: uuid.UUID, request_id: uuid.UUID
) -> list[StoredPackagePart]:
    result = await session.execute(
        select(StoredPackagePart).where(
            StoredPackagePart.organization_id == organization_id,
            StoredPackagePart.request_id == request_id,
        )
    )
    return list(result.scalars())


async def delete_parts_of_request(
    session: AsyncSession, organization_id: uuid.UUID, request_id: uuid.UUID
) -> int:
    result = await session.execute(
        delete(StoredPackagePart)
        .where(
            StoredPackagePart.organization_id == organization_id,
            StoredPackagePart.request_id == request_id,
        )
        .returning(StoredPackagePart.id)
    )
    return len(result.all())


async def delete_parts_of_subject(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> int:
    result = await session.execute(
        delete(StoredPackagePart)
        .where(
            StoredPackagePart.organization_id == organization_id,
            StoredPackagePart.subject_id == subject_id,
        )
        .returning(StoredPackagePart.id)
    )
    return len(result.all())


async def add_part(session: AsyncSession, part: StoredPackagePart) -> None:
    session.add(part)
    await session.flush()


async def expired_part_ids(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    """Parts of every organization past their time (the worker's purge)."""
    result = await session.execute(
        select(StoredPackagePart.id)
        .where(StoredPackagePart.expires_at <= now)
        .order_by(StoredPackagePart.expires_at, StoredPackagePart.id)
        .limit(limit)
    )
    return list(result.scalars())


async def delete_parts(session: AsyncSession, part_ids: Sequence[uuid.UUID]) -> int:
    if not part_ids:
        return 0
    result = await session.execute(
        delete(StoredPackagePart)
        .where(StoredPackagePart.id.in_(list(part_ids)))
        .returning(StoredPackagePart.id)
    )
    return len(result.all())
