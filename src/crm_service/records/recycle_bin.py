"""The recycle bin: deleted leads, contacts and accounts, listed, restored or purged.

`DELETE /v1/{module}/{id}` moves a record here; the worker purges what has been here longer
than CRM_RECYCLE_BIN_RETENTION_DAYS. Restoring needs what deleting needs (the module's delete
scope and operation, and write access under the sharing rules). Purging is for good (see
`purge_record`).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Query, Request, Response, status
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access.repository import RecordShareRepository
from crm_service.audit.actions import AuditAction
from crm_service.audit.history import HistoryAction
from crm_service.audit.repository import delete_history
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.crypto.service import keyring_for
from crm_service.db.engine import checkpoint_sqlite
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import Forbidden, NotFound, problem_responses
from crm_service.kit.modules import Module
from crm_service.privacy.blocklist import audited_refusal, identifiers_of, refuse_blocklisted
from crm_service.records.accounts.service import accounts
from crm_service.records.contacts.repository import ContactRepository
from crm_service.records.contacts.service import contacts
from crm_service.records.leads.repository import LeadRepository
from crm_service.records.leads.service import leads
from crm_service.records.paging import Cursor, RecordSort
from crm_service.records.processing import Change
from crm_service.records.repository import LegalBasisRepository, RecordRepository, expired_in_bin
from crm_service.records.schemas import CursorText, QueryPaging, RecycleBinEntry, RecycleBinPage
from crm_service.records.service import RecordService, require_operation
from crm_service.security.permissions import Operation
from crm_service.security.principal import InsufficientScope, Principal, require
from crm_service.security.scopes import Scope

SERVICES: dict[Module, RecordService[Any]] = {
    Module.LEADS: leads,
    Module.CONTACTS: contacts,
    Module.ACCOUNTS: accounts,
}


# Any signed-in caller; the module's scopes are checked per module below.
Caller = Annotated[Principal, Depends(require())]


def _scoped(principal: Principal, module: Module, operation: str) -> bool:
    return principal.has(Scope(f"crm.{module.value}.{operation}"))


def _require_delete_scope(principal: Principal, module: Module) -> None:
    if not _scoped(principal, module, "delete"):
        raise InsufficientScope([f"crm.{module.value}.delete"])


class RecycleBinQuery(QueryPaging):
    module: Module | None = Field(default=None, description="Only this module.")
    cursor: CursorText | None = None


async def list_bin(
    *, session: AsyncSession, principal: Principal, query: RecycleBinQuery, retention: timedelta
) -> RecycleBinPage:
    """What the caller may see in the bin, most recently deleted first, across modules."""
    after = None
    if query.cursor is not None:
        decoded = Cursor.decode(query.cursor, RecordSort.UPDATED_DESC)
        after = (decoded.value, decoded.id)
    found: list[tuple[Module, Any]] = []
    for module, service in SERVICES.items():
        if query.module not in (None, module):
            continue
        if not _scoped(principal, module, "read") or (
            principal.permissions is not None
            and not principal.permissions.can(module, Operation.READ)
        ):
            continue
        repository = await service.repository(session, principal)
        rows = await repository.binned_page(after=after, limit=query.limit + 1)
        found.extend((module, row) for row in rows)
    found.sort(key=lambda item: (item[1].deleted_at, item[1].id), reverse=True)
    page, more = found[: query.limit], len(found) > query.limit
    next_cursor = None
    if more:
        last = page[-1][1]
        next_cursor = Cursor(RecordSort.UPDATED_DESC, last.deleted_at, last.id).encode()
    return RecycleBinPage(
        data=[
            RecycleBinEntry(
                module=module.value,
                id=row.id,
                owner_id=row.owner_id,
                deleted_at=row.deleted_at,
                deleted_by_id=row.deleted_by_id,
                purge_after=row.deleted_at + retention,
            )
            for module, row in page
        ],
        next_cursor=next_cursor,
    )


async def _binned_for_change(
    session: AsyncSession,
    principal: Principal,
    module: Module,
    record_id: uuid.UUID,
    change: Change,
) -> tuple[RecordService[Any], Any, RecordRepository[Any]]:
    _require_delete_scope(principal, module)
    service = SERVICES[module]
    require_operation(principal, module, change.operation)
    repository = await service.repository(session, principal)
    record = await repository.get(record_id, binned=True)
    if record is None:
        raise NotFound(f"No such {service.noun} in the recycle bin.")
    if not await repository.writable(record_id):
        raise Forbidden(f"The sharing rules do not let you change this {service.noun}.")
    await service.check_change(session, record, change)
    return service, record, repository


async def restore(
    *, session: AsyncSession, principal: Principal, module: Module, record_id: uuid.UUID
) -> None:
    service, record, repository = await _binned_for_change(
        session, principal, module, record_id, Change.RESTORE
    )
    # Its email or phone may have been erased (as another subject's) since it was deleted.
    with audited_refusal(principal, target_type=service.noun, target_id=record_id):
        await refuse_blocklisted(session, principal.organization_id, identifiers_of(record))
    record.deleted_at = None
    record.deleted_by_id = None
    await repository.save(record)
    await service.note(session, principal, repository, record, HistoryAction.RESTORED, {})
    audit(
        session,
        principal,
        AuditAction.RECORD_RESTORED,
        target_type=service.noun,
        target_id=record_id,
    )


async def purge(
    *, session: AsyncSession, principal: Principal, module: Module, record_id: uuid.UUID
) -> None:
    service, record, repository = await _binned_for_change(
        session, principal, module, record_id, Change.PURGE
    )
    await purge_record(session, Actor.of(principal), repository, record, noun=service.noun)


async def purge_record(
    session: AsyncSession,
    actor: Actor,
    repository: RecordRepository[Any],
    record: Any,
    *,
    noun: str,
) -> None:
    """Delete a binned record for good: its row, shares and history; and, when no other
    record is the same data subject, the subject's keys, so no copy anywhere stays readable."""
    module = repository.module.value
    await RecordShareRepository(session, record.organization_id).delete_for_record(
        module, record.id
    )
    await delete_history(session, record.organization_id, module, record.id)
    await LegalBasisRepository(session, record.organization_id).delete_for(
        repository.module, record.id
    )
    subject_id = getattr(record, "subject_id", None)
    await session.delete(record)
    await session.flush()
    if subject_id is not None:
        # A lead and the contact it became are one data subject.
        still_used = [
            await other(session, record.organization_id).subject_in_use(
                subject_id, except_id=record.id
            )
            for other in (LeadRepository, ContactRepository)
        ]
        if not any(still_used):
            await keyring_for(session, record.organization_id).destroy_subject_keys(subject_id)
    audit(session, actor, AuditAction.RECORD_PURGED, target_type=noun, target_id=record.id)


async def purge_expired(
    session: AsyncSession, *, now: datetime, retention: timedelta, batch_size: int = 200
) -> int:
    """The worker's job: purge one batch per module of what outstayed the retention."""
    purged = 0
    for service in SERVICES.values():
        repository_class = service.repository_class
        expired = await expired_in_bin(session, repository_class.model, now - retention, batch_size)
        for row in expired:
            repository = repository_class(session, row.organization_id)
            await purge_record(
                session, Actor.system(row.organization_id), repository, row, noun=service.noun
            )
            purged += 1
    return purged


router = CRMRouter(prefix="/v1/recycle-bin", tags=["recycle bin"])


@router.get(
    "",
    operation_id="listRecycleBin",
    summary="Deleted records you may see, most recently deleted first",
    response_model=RecycleBinPage,
    responses=problem_responses(401, 403, 422),
)
async def list_recycle_bin(
    query: Annotated[RecycleBinQuery, Query()],
    principal: Caller,
    session: DbSession,
    request: Request,
) -> RecycleBinPage:
    """Deleted leads, contacts and accounts you may read, with when the worker purges each for
    good.
    """
    retention = timedelta(days=request.app.state.settings.recycle_bin_retention_days)
    return await list_bin(session=session, principal=principal, query=query, retention=retention)


@router.post(
    "/{module}/{record_id}/restore",
    operation_id="restoreFromRecycleBin",
    summary="Restore a deleted record",
    status_code=status.HTTP_204_NO_CONTENT,
    # 409 `blocklisted`: its email or phone was erased (as another subject's) meanwhile.
    responses=problem_responses(401, 403, 404, 409, 422, 423),
)
async def restore_from_recycle_bin(
    module: Module, record_id: uuid.UUID, principal: Caller, session: DbSession
) -> Response:
    """Puts a deleted record back where it was; needs the module's write scope."""
    await restore(session=session, principal=principal, module=module, record_id=record_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/{module}/{record_id}",
    operation_id="purgeFromRecycleBin",
    summary="Purge a deleted record for good",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422, 423),
)
async def purge_from_recycle_bin(
    module: Module,
    record_id: uuid.UUID,
    principal: Caller,
    session: DbSession,
    request: Request,
    background: BackgroundTasks,
) -> Response:
    """Deletes a record in the bin for good, with its history; needs the module's delete scope."""
    await purge(session=session, principal=principal, module=module, record_id=record_id)
    # After the commit: no page image of the record or of its destroyed keys stays in
    # SQLite's WAL.
    background.add_task(checkpoint_sqlite, request.app.state.engine)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
