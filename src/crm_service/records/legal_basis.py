"""Legal basis of processing for leads and contacts: set, carry on conversion, history.

The current basis sits on the record for listing; every setting is appended to
`legal_basis_entries`, so the history is kept rather than overwritten.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.db.base import utcnow
from crm_service.db.repository import OrganizationRepository
from crm_service.records.models import LegalBasisEntry, Module
from crm_service.records.schemas import LegalBasisSet
from crm_service.security.principal import Principal


class LegalBasisRepository(OrganizationRepository[LegalBasisEntry]):
    model = LegalBasisEntry

    async def history(self, subject_type: Module, subject_id: uuid.UUID) -> list[LegalBasisEntry]:
        result = await self.session.execute(
            self.scoped()
            .where(
                LegalBasisEntry.subject_type == subject_type.value,
                LegalBasisEntry.subject_id == subject_id,
            )
            .order_by(LegalBasisEntry.set_at.desc(), LegalBasisEntry.id.desc())
        )
        return list(result.scalars())

    async def delete_for(self, subject_type: Module, subject_id: uuid.UUID) -> None:
        """A purged record takes its legal-basis history along (the assessment is plain text)."""
        await self.session.execute(
            delete(LegalBasisEntry).where(
                LegalBasisEntry.organization_id == self.organization_id,
                LegalBasisEntry.subject_type == subject_type.value,
                LegalBasisEntry.subject_id == subject_id,
            )
        )


async def set_legal_basis(
    *,
    session: AsyncSession,
    principal: Principal,
    subject_type: Module,
    record: object,
    payload: LegalBasisSet,
    carried_from_lead_id: uuid.UUID | None = None,
) -> LegalBasisEntry:
    now = utcnow()
    entry = LegalBasisEntry(
        organization_id=principal.organization_id,
        subject_type=subject_type.value,
        subject_id=record.id,  # type: ignore[attr-defined]
        basis=payload.basis.value,
        assessment=payload.assessment,
        set_by_id=principal.user_id,
        set_by_client_id=principal.client_id,
        set_at=now,
        carried_from_lead_id=carried_from_lead_id,
    )
    await LegalBasisRepository(session, principal.organization_id).add(entry)
    record.legal_basis = payload.basis.value  # type: ignore[attr-defined]
    record.legal_basis_set_at = now  # type: ignore[attr-defined]
    record.legal_basis_set_by_id = principal.user_id  # type: ignore[attr-defined]
    return entry


async def legal_basis_history(
    *, session: AsyncSession, principal: Principal, subject_type: Module, subject_id: uuid.UUID
) -> list[LegalBasisEntry]:
    return await LegalBasisRepository(session, principal.organization_id).history(
        subject_type, subject_id
    )




