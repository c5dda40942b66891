"""SQL for organization settings."""

from __future__ import annotations

from sqlalchemy import delete

from crm_service.db.repository import OrganizationRepository
from crm_service.orgs.models import FieldClassification
from crm_service.records.models import Module


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
