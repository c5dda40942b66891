"""Organization settings rules: how each field of each module is classified."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import record as audit
from crm_service.errors import FieldProblem, ValidationFailed
from crm_service.kit.modules import Module
from crm_service.orgs.repository import (
    FieldClassificationRepository,
    lock_organization_for_storage_change,
)
from crm_service.orgs.schemas import FieldClassificationRead, ModuleFields, ModuleFieldsUpdate
from crm_service.records.fields import CATALOG, field_names
from crm_service.records.storage import classifications
from crm_service.security.principal import Principal


@dataclass(frozen=True)
class ClassificationChange:
    fields: ModuleFields
    changed: bool  # stored values must be re-sealed


async def module_fields(
    *, session: AsyncSession, principal: Principal, module: Module
) -> ModuleFields:
    current = await classifications(session, principal.organization_id, module)
    return ModuleFields(
        module=module,
        fields=[
            FieldClassificationRead(
                name=spec.name,
                label=spec.label,
                classification=current[spec.name],
                default=spec.default,
                searchable=spec.index is not None,
            )
            for spec in CATALOG[module]
        ],
    )


async def classify_fields(
    *, session: AsyncSession, principal: Principal, module: Module, payload: ModuleFieldsUpdate
) -> ClassificationChange:
    known = set(field_names(module))
    unknown = sorted(set(payload.fields) - known)
    if unknown:
        raise ValidationFailed(
            f"{module.value} has no such field.",
            errors=[
                FieldProblem(
                    field=f"body.fields.{name}", rule="unknown_field", message="no such field"
                )
                for name in unknown
            ],
        )
    await lock_organization_for_storage_change(session, principal.organization_id)
    before = await classifications(session, principal.organization_id, module)
    repository = FieldClassificationRepository(session, principal.organization_id)
    defaults = {spec.name: spec.default for spec in CATALOG[module]}
    changed = False
    reclassified = [name for name, value in payload.fields.items() if before[name] is not value]
    if reclassified:
        audit(
            session,
            principal,
            AuditAction.FIELDS_CLASSIFIED,
            target_type="module",
            target_id=module.value,
            fields=reclassified,
        )
    for name, classification in payload.fields.items():
        if before[name] is classification:
            continue
        changed = changed or before[name].sealed != classification.sealed
        override = None if classification is defaults[name] else classification.value
        await repository.set(module, name, override)
    fields = await module_fields(session=session, principal=principal, module=module)
    return ClassificationChange(
        fields=fields.model_copy(update={"resealing": changed}), changed=changed
    )
