"""The interim administration path of erasure and the blocklist, until privacy requests
carry them out (`POST /v1/privacy/requests/{id}/complete` will call :func:`erase`)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.crypto.blind_index import IndexKind, blind_index
from crm_service.crypto.service import keyring_for
from crm_service.errors import NotFound
from crm_service.kit.modules import Module
from crm_service.privacy import blocklist, erasers, repository  # noqa: F401 - erasers register
from crm_service.privacy.erasure import erase_subject
from crm_service.privacy.schemas import (
    BlocklistEntryRead,
    BlocklistPage,
    BlocklistQuery,
    ErasureCreate,
    ErasureReceiptRead,
)
from crm_service.records.paging import Cursor, RecordSort
from crm_service.security.principal import Principal


async def subjects_to_erase(
    session: AsyncSession, organization_id: uuid.UUID, payload: ErasureCreate
) -> list[uuid.UUID]:
    """The data subjects the payload names (404 when none)."""
    if payload.email is not None:
        key = await keyring_for(session, organization_id).index_key()
        index = blind_index(key, IndexKind.EMAIL, payload.email, phone_region=None)
        subjects = await repository.subjects_with(session, organization_id, IndexKind.EMAIL, index)
        if not subjects:
            raise NotFound("No lead or contact of this organization has this email.")
        return sorted(subjects)
    assert payload.module is not None and payload.record_id is not None
    subject = await repository.subject_of_record(
        session, organization_id, Module(payload.module.value), payload.record_id
    )
    if subject is None:
        raise NotFound(f"No such {Module(payload.module.value).noun}.")
    return [subject]


async def erase(
    *, session: AsyncSession, principal: Principal, payload: ErasureCreate, now: datetime
) -> list[uuid.UUID]:
    """Erase every data subject the payload names; the receipts' ids."""
    actor = Actor.of(principal)
    receipts = []
    for subject_id in await subjects_to_erase(session, principal.organization_id, payload):
        receipt = await erase_subject(
            session, principal.organization_id, subject_id, actor=actor, now=now
        )
        receipts.append(receipt.id)
    return receipts


async def get_receipt(
    *, session: AsyncSession, principal: Principal, receipt_id: uuid.UUID
) -> ErasureReceiptRead:
    found = await repository.receipt(session, principal.organization_id, receipt_id)
    if found is None:
        raise NotFound("No such erasure receipt.")
    erased = json.loads(found.erased)
    return ErasureReceiptRead(
        id=found.id,
        subject_id=found.subject_id,
        erased_at=found.erased_at,
        actor_type=found.actor_type,
        actor_id=found.actor_id,
        records=erased["records"],
        counts=erased["counts"],
        reapplied_at=found.reapplied_at,
    )


async def list_blocklist(
    *, session: AsyncSession, principal: Principal, query: BlocklistQuery
) -> BlocklistPage:
    after = None
    if query.cursor is not None:
        decoded = Cursor.decode(query.cursor, RecordSort.CREATED_DESC)
        after = (decoded.value, decoded.id)
    rows = await blocklist.entries(
        session, principal.organization_id, after=after, limit=query.limit + 1
    )
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        next_cursor = Cursor(RecordSort.CREATED_DESC, rows[-1].created_at, rows[-1].id).encode()
    return BlocklistPage(
        data=[
            BlocklistEntryRead(
                id=row.id, kind=row.kind, created_at=row.created_at, receipt_id=row.receipt_id
            )
            for row in rows
        ],
        next_cursor=next_cursor,
    )


async def remove_blocklist_entry(
    *, session: AsyncSession, principal: Principal, entry_id: uuid.UUID
) -> None:
    """The person came back of their own accord: their email or phone may be entered again."""
    if not await blocklist.remove_entry(session, principal.organization_id, entry_id):
        raise NotFound("No such blocklist entry.")
    audit(
        session,
        principal,
        AuditAction.BLOCKLIST_ENTRY_REMOVED,
        target_type="blocklist_entry",
        target_id=entry_id,
    )
