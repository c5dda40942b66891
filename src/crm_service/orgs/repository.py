"""SQL for organization settings."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access.models import Role
from crm_service.db.repository import OrganizationRepository
from crm_service.db.tenancy import Organization
from crm_service.kit.modules import Module
from crm_service.orgs.models import ComplianceSettings, FieldClassification, IpAllowlist


async def lock_organization_for_storage_change(
    session: AsyncSession, organization_id: uuid.UUID
) -> Organization:
    """Lock the organization row before changing how its values are stored (key generation,
    classification). Every write reads that row FOR SHARE before sealing, so this waits until
    writes that sealed under the old rules have committed, and later writes see the new ones.
    (SQLite serializes writers instead; the re-seal jobs' extra passes cover it there.)

    FOR NO KEY UPDATE, not FOR UPDATE: it still waits for those FOR SHARE readers, but not
    for the key-share locks every insert naming the organization takes (an audit event, say),
    which would otherwise deadlock with a transaction holding an audit chain."""
    result = await session.execute(
        select(Organization)
        .where(Organization.id == organization_id)
        .with_for_update(key_share=True)
    )
    return result.scalar_one()


class FieldClassificationRepository(OrganizationRepository[FieldClassification]):
    model = FieldClassification

    async def set(self, module: Module, field: str, classification: str | None) -> None:
        """Store an override; None returns the field to its default."""
        await self.session.execute(
            delete(FieldClassification).where(
                FieldClassification.organization_id == self.organization_id,
                FieldClassification.module == module.value,
                FieldClassification.field == field,
            )
        )
        if classification is not None:
            self.session.add(
                FieldClassification(
                    organization_id=self.organization_id,
                    module=module.value,
                    field=field,
                    classification=classification,
                )
            )
        await self.session.flush()


async def ip_allowlist(session: AsyncSession, organization_id: uuid.UUID) -> IpAllowlist | None:
    return await session.get(IpAllowlist, organization_id)


async def role_ip_allowlist(
    session: AsyncSession, organization_id: uuid.UUID, role_id: uuid.UUID
) -> str | None:
    """The narrower allowlist of a role, if it has one."""
    result = await session.execute(
        select(Role.ip_allowlist).where(Role.id == role_id, Role.organization_id == organization_id)
    )
    return result.scalar_one_or_none()


async def organization(session: AsyncSession, organization_id: uuid.UUID) -> Organization:
    result = await session.execute(select(Organization).where(Organization.id == organization_id))
    return result.scalar_one()


async def compliance_settings(
    session: AsyncSession, organization_id: uuid.UUID
) -> ComplianceSettings | None:
    return await session.get(ComplianceSettings, organization_id, populate_existing=True)


async def set_compliance_settings(
    session: AsyncSession, organization_id: uuid.UUID, withhold: str
) -> None:
    found = await session.get(ComplianceSettings, organization_id)
    if found is None:
        session.add(ComplianceSettings(organization_id=organization_id, withhold=withhold))
    else:
        found.withhold = withhold
    await session.flush()
