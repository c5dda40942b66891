"""Legal basis of processing for leads and contacts: set it, read every earlier setting.

The current basis sits on the record for listing; every setting is appended to
`legal_basis_entries` (see `LegalBasisRepository`), so the history is kept rather than
overwritten. Setting it is a change of the record like any other: its history and the audit
log say so.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.history import HistoryAction
from crm_service.audit.service import record as audit
from crm_service.records.models import LegalBasisEntry
from crm_service.records.processing import Change
from crm_service.records.repository import LegalBasisRepository
from crm_service.records.schemas import LegalBasisSet
from crm_service.records.service import RecordService, require_operation
from crm_service.security.permissions import Operation
from crm_service.security.principal import Principal


async def set_legal_basis(
    *,
    service: RecordService[Any],
    session: AsyncSession,
    principal: Principal,
    record_id: uuid.UUID,
    payload: LegalBasisSet,
) -> LegalBasisEntry:
    record, repository = await service.get_for_change(
        session=session, principal=principal, record_id=record_id, change=Change.LEGAL_BASIS
    )
    before = record.legal_basis  # type: ignore[attr-defined]
    entry = await LegalBasisRepository(session, principal.organization_id).append(
        record,
        service.module,
        basis=payload.basis.value,
        assessment=payload.assessment,
        set_by_id=principal.user_id,
        set_by_client_id=principal.client_id,
    )
    await service.note(
        session,
        principal,
        repository,
        record,
        HistoryAction.UPDATED,
        {"legal_basis": (before, payload.basis.value)},
    )
    audit(
        session,
        principal,
        AuditAction.RECORD_UPDATED,
        target_type=service.noun,
        target_id=record_id,
        fields=["legal_basis"],
    )
    return entry


async def legal_basis_history(
    *,
    service: RecordService[Any],
    session: AsyncSession,
    principal: Principal,
    record_id: uuid.UUID,
) -> list[LegalBasisEntry]:
    """Every setting of the record's legal basis, newest first."""
    require_operation(principal, service.module, Operation.READ)
    await service.visible(await service.repository(session, principal), record_id)
    return await LegalBasisRepository(session, principal.organization_id).history(
        service.module, record_id
    )
