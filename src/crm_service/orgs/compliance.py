"""Compliance settings: which classifications each channel data leaves by withholds.

The disclosure policy reads them (`records.disclosure.withheld_classifications`) for every
response to a partner client (`api`), every export (`export`) and every webhook delivery
(`integrations`); this module reads and changes them. A change is audited and holds from the
next request on, on every instance (nothing is cached in a process).
"""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import record as audit
from crm_service.orgs.repository import compliance_settings, set_compliance_settings
from crm_service.orgs.schemas import ComplianceSettingsBody, ComplianceWithhold
from crm_service.records.disclosure import parse_withhold
from crm_service.security.principal import Principal


def _body(text: str | None) -> ComplianceSettingsBody:
    withhold = parse_withhold(text)
    return ComplianceSettingsBody(
        withhold=ComplianceWithhold.model_validate(
            {channel.value: names for channel, names in withhold.items()}
        )
    )


async def get_compliance(*, session: AsyncSession, principal: Principal) -> ComplianceSettingsBody:
    found = await compliance_settings(session, principal.organization_id)
    return _body(None if found is None else found.withhold)


async def set_compliance(
    *, session: AsyncSession, principal: Principal, payload: ComplianceSettingsBody
) -> ComplianceSettingsBody:
    """Replace the settings; the channels whose withheld classes changed are audited."""
    before = (await get_compliance(session=session, principal=principal)).withhold.model_dump()
    after = {
        channel: sorted({value.value for value in values})
        for channel, values in payload.withhold.model_dump().items()
    }
    changed = [
        channel
        for channel in after
        if sorted(str(value) for value in before[channel]) != after[channel]
    ]
    if changed:
        await set_compliance_settings(
            session, principal.organization_id, json.dumps(after, sort_keys=True)
        )
        audit(
            session,
            principal,
            AuditAction.COMPLIANCE_CHANGED,
            target_type="organization",
            target_id=principal.organization_id,
            fields=changed,
        )
    return _body(json.dumps(after))
