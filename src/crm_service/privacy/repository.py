"""SQL of erasure: a data subject's rows across leads and contacts (live and in the recycle
bin), their scrubbing and deletion, receipts. Always scoped by organization."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access.models import RecordShare
from crm_service.audit.models import RecordHistoryEntry
from crm_service.crypto.blind_index import IndexKind
from crm_service.kit.modules import Module
from crm_service.privacy.models import ErasureReceipt
from crm_service.records.contacts.models import Contact
from crm_service.records.leads.models import Lead
from crm_service.records.models import LegalBasisEntry, SubjectProcessingLock

# The person modules, in the order their rows are removed (a lead points at its contact).
PERSON_MODELS: dict[Module, Any] = {Module.LEADS: Lead, Module.CONTACTS: Contact}


@dataclass(frozen=True)
class SubjectRow:
    module: Module
    id: uuid.UUID
    binned: bool
    identifiers: frozenset[tuple[str, str]]  # (kind, blind index) of its emails and phones


def _blockable(model: Any) -> dict[str, IndexKind]:
    return {
        field: kind
        for field, kind in model.__indexed_fields__.items()
        if kind in (IndexKind.EMAIL, IndexKind.PHONE)
    }


async def subject_rows(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> list[SubjectRow]:
    rows: list[SubjectRow] = []
    for module, model in PERSON_MODELS.items():
        indexed = _blockable(model)
        columns = [getattr(model, f"{field}_bidx") for field in indexed]
        result = await session.execute(
            select(model.id, model.deleted_at, *columns).where(
                model.organization_id == organization_id, model.subject_id == subject_id
            )
        )
        for row in result.all():
            found = frozenset(
                (kind.value, value)
                for kind, value in zip(indexed.values(), row[2:], strict=True)
                if value is not None
            )
            rows.append(SubjectRow(module, row[0], row[1] is not None, found))
    return rows


async def subject_of_record(
    session: AsyncSession, organization_id: uuid.UUID, module: Module, record_id: uuid.UUID
) -> uuid.UUID | None:
    model = PERSON_MODELS[module]
    return (
        await session.execute(
            select(model.subject_id).where(
                model.organization_id == organization_id, model.id == record_id
            )
        )
    ).scalar_one_or_none()


async def subjects_with(
    session: AsyncSession, organization_id: uuid.UUID, kind: IndexKind, value: str
) -> set[uuid.UUID]:
    """Every data subject with a lead or contact whose email (or phone) has this index."""
    found: set[uuid.UUID] = set()
    for model in PERSON_MODELS.values():
        for field, field_kind in _blockable(model).items():
            if field_kind is not kind:
                continue
            result = await session.execute(
                select(model.subject_id).where(
                    model.organization_id == organization_id,
                    getattr(model, f"{field}_bidx") == value,
                )
            )
            found.update(result.scalars())
    return found


async def history_of(
    session: AsyncSession, organization_id: uuid.UUID, module: Module, record_ids: list[uuid.UUID]
) -> list[RecordHistoryEntry]:
    if not record_ids:
        return []
    result = await session.execute(
        select(RecordHistoryEntry).where(
            RecordHistoryEntry.organization_id == organization_id,
            RecordHistoryEntry.module == module.value,
            RecordHistoryEntry.record_id.in_(record_ids),
            RecordHistoryEntry.changes_sealed.is_not(None),
        )
    )
    return list(result.scalars())


async def remove_rows(
    session: AsyncSession, organization_id: uuid.UUID, module: Module, record_ids: list[uuid.UUID]
) -> int:
    """Delete records for good with their history, shares and legal-basis entries."""
    if not record_ids:
        return 0
    model = PERSON_MODELS[module]
    await session.execute(
        delete(RecordHistoryEntry).where(
            RecordHistoryEntry.organization_id == organization_id,
            RecordHistoryEntry.module == module.value,
            RecordHistoryEntry.record_id.in_(record_ids),
        )
    )
    result = await session.execute(
        delete(model)
        .where(model.organization_id == organization_id, model.id.in_(record_ids))
        .returning(model.id)
    )
    return len(result.all())


async def forget_links(
    session: AsyncSession, organization_id: uuid.UUID, module: Module, record_ids: list[uuid.UUID]
) -> None:
    """Shares and legal-basis entries (whose assessment is plain text) of the records."""
    if not record_ids:
        return
    await session.execute(
        delete(RecordShare).where(
            RecordShare.organization_id == organization_id,
            RecordShare.module == module.value,
            RecordShare.record_id.in_(record_ids),
        )
    )
    await session.execute(
        delete(LegalBasisEntry).where(
            LegalBasisEntry.organization_id == organization_id,
            LegalBasisEntry.subject_type == module.value,
            LegalBasisEntry.subject_id.in_(record_ids),
        )
    )


async def scrub_rows(
    session: AsyncSession,
    organization_id: uuid.UUID,
    module: Module,
    record_ids: list[uuid.UUID],
    *,
    now: datetime,
) -> int:
    """Empty every value column and blind index of live records, keeping the row (its id,
    owner, dates and links) so that it answers as erased and an account's links hold."""
    if not record_ids:
        return 0
    model = PERSON_MODELS[module]
    table = model.__table__
    emptied: dict[str, Any] = {}
    for field in model.__sealed_fields__:
        emptied[field] = None  # the stored column is named as the field
        if field in model.__indexed_fields__:
            emptied[f"{field}_bidx"] = None
    result = await session.execute(
        update(table)
        .where(table.c.organization_id == organization_id, table.c.id.in_(record_ids))
        .values(**emptied, legal_basis=None, version=table.c.version + 1, updated_at=now)
        .returning(table.c.id)
    )
    return len(result.all())


async def forget_processing_locks(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> None:
    await session.execute(
        delete(SubjectProcessingLock).where(
            SubjectProcessingLock.organization_id == organization_id,
            SubjectProcessingLock.subject_id == subject_id,
        )
    )


def add_receipt(
    session: AsyncSession,
    *,
    receipt_id: uuid.UUID,
    organization_id: uuid.UUID,
    subject_id: uuid.UUID,
    erased_at: datetime,
    actor_type: str,
    actor_id: uuid.UUID | None,
    erased: dict[str, Any],
    reapplied_at: datetime | None = None,
) -> ErasureReceipt:
    receipt = ErasureReceipt(
        id=receipt_id,
        organization_id=organization_id,
        subject_id=subject_id,
        erased_at=erased_at,
        actor_type=actor_type,
        actor_id=actor_id,
        erased=json.dumps(erased, sort_keys=True),
        reapplied_at=reapplied_at,
    )
    session.add(receipt)
    return receipt


async def receipt(
    session: AsyncSession, organization_id: uuid.UUID, receipt_id: uuid.UUID
) -> ErasureReceipt | None:
    return (
        await session.execute(
            select(ErasureReceipt).where(
                ErasureReceipt.organization_id == organization_id,
                ErasureReceipt.id == receipt_id,
            )
        )
    ).scalar_one_or_none()
