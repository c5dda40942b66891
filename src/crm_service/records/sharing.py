"""Sharing one lead, contact or account with a group, to read or to read and write.

Whoever may change a record may share it; a share widens what the sharing defaults let the
group's members see (the repositories apply it). Shares name groups, never a record's values.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access.models import RecordShare
from crm_service.access.repository import GroupRepository, RecordShareRepository
from crm_service.access.visibility import ShareAccess
from crm_service.audit.actions import AuditAction
from crm_service.audit.service import record as audit
from crm_service.errors import NotFound
from crm_service.records.processing import Change, Read
from crm_service.records.service import RecordService, require_operation
from crm_service.security.permissions import Operation
from crm_service.security.principal import Principal


async def shares(
    *,
    service: RecordService[Any],
    session: AsyncSession,
    principal: Principal,
    record_id: uuid.UUID,
) -> list[RecordShare]:
    require_operation(principal, service.module, Operation.READ)
    repository = await service.repository(session, principal)
    await service.readable(session, principal, repository, record_id, Read.SHARES)
    return await RecordShareRepository(session, principal.organization_id).of_record(
        service.module.value, record_id
    )


async def share(
    *,
    service: RecordService[Any],
    session: AsyncSession,
    principal: Principal,
    record_id: uuid.UUID,
    group_id: uuid.UUID,
    access: ShareAccess,
    now: datetime,
) -> RecordShare:
    """Share the record with a group, or change the access of its share."""
    await service.get_for_change(
        session=session, principal=principal, record_id=record_id, change=Change.SHARE
    )
    if await GroupRepository(session, principal.organization_id).get(group_id) is None:
        raise NotFound("No such group.")
    repository = RecordShareRepository(session, principal.organization_id)
    found = await repository.find(service.module.value, record_id, group_id)
    if found is None:
        found = await repository.add(
            RecordShare(
                organization_id=principal.organization_id,
                module=service.module.value,
                record_id=record_id,
                group_id=group_id,
                access=access.value,
                created_at=now,
                created_by_id=principal.user_id,
            )
        )
    else:
        found.access = access.value
    audit(
        session,
        principal,
        AuditAction.RECORD_SHARED,
        target_type=service.noun,
        target_id=record_id,
        reason=access.value,
    )
    await session.flush()
    return found


async def unshare(
    *,
    service: RecordService[Any],
    session: AsyncSession,
    principal: Principal,
    record_id: uuid.UUID,
    group_id: uuid.UUID,
) -> None:
    await service.get_for_change(
        session=session, principal=principal, record_id=record_id, change=Change.UNSHARE
    )
    repository = RecordShareRepository(session, principal.organization_id)
    found = await repository.find(service.module.value, record_id, group_id)
    if found is None:
        raise NotFound("The record is not shared with this group.")
    await repository.delete(found)
    audit(
        session,
        principal,
        AuditAction.RECORD_UNSHARED,
        target_type=service.noun,
        target_id=record_id,
    )
