"""Legal basis of processing for leads and contacts: set it, read every earlier setting.

The current basis sits on the record for listing; every setting is appended to
`legal_basis_entries` (see `LegalBasisRepository`), so the history is kept rather than
overwritten. Setting it is a change of the record like any other: its history and the audit
log say so.

It is also the one change that may end a consent lock (an unanswered consent request,
`records/processing.py`): an administrator (the right `manage_privacy`) recording a basis
other than consent lifts the lock, audited as `consent.processing_unlocked`. Every other
change, and this one by anyone else, stays refused with 423; a restriction is never lifted
this way.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.history import HistoryAction
from crm_service.audit.service import record as audit
from crm_service.records.disclosure import note_partner_disclosure
from crm_service.records.models import LegalBasis, LegalBasisEntry, ProcessingLockKind
from crm_service.records.processing import Change, Read
from crm_service.records.repository import LegalBasisRepository, ProcessingLockRepository
from crm_service.records.schemas import LegalBasisSet
from crm_service.records.service import RecordService, require_operation
from crm_service.security.permissions import Operation, Right
from crm_service.security.principal import Principal


async def set_legal_basis(
    *,
    service: RecordService[Any],
    session: AsyncSession,
    principal: Principal,
    record_id: uuid.UUID,
    payload: LegalBasisSet,
) -> LegalBasisEntry:
    ends_consent_lock = payload.basis is not LegalBasis.CONSENT and principal.has_right(
        Right.MANAGE_PRIVACY
    )
    record, repository = await service.get_for_change(
        session=session,
        principal=principal,
        record_id=record_id,
        change=Change.LEGAL_BASIS,
        ends_consent_lock=ends_consent_lock,
    )
    before = record.legal_basis
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
    if ends_consent_lock and await ProcessingLockRepository(
        session, principal.organization_id
    ).lift(record.subject_id, ProcessingLockKind.LOCKED):
        audit(
            session,
            principal,
            AuditAction.PROCESSING_UNLOCKED,
            target_type=service.noun,
            target_id=record_id,
            reason="legal_basis_recorded",
        )
    return entry


async def legal_basis_history(
    *,
    service: RecordService[Any],
    session: AsyncSession,
    principal: Principal,
    record_id: uuid.UUID,
) -> list[LegalBasisEntry]:
    """Every setting of the record's legal basis, newest first. The history (the basis, the
    assessment, who set it) is the data subject's, like the record that carries it: shown to a
    partner client, it makes that client a recipient (Art. 19)."""
    require_operation(principal, service.module, Operation.READ)
    repository = await service.repository(session, principal)
    record = await service.readable(session, principal, repository, record_id, Read.LEGAL_BASIS)
    history = await LegalBasisRepository(session, principal.organization_id).history(
        service.module, record_id
    )
    if history:
        note_partner_disclosure(session, principal, [getattr(record, "subject_id", None)])
    return history
