"""HTTP for the audit log: /v1/audit-events (administrators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from crm_service.audit import service
from crm_service.audit.schemas import AuditEventList, AuditEventQuery, AuditEventRead
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal, require_right

router = CRMRouter(prefix="/v1/audit-events", tags=["audit"])
Auditor = Annotated[Principal, Depends(require_right(Right.VIEW_AUDIT))]


@router.get(
    "",
    operation_id="listAuditEvents",
    summary="The organization's audit events, newest first, by actor, action, target, time",
    response_model=AuditEventList,
    responses=problem_responses(401, 403, 422),
)
async def list_audit_events(
    query: Annotated[AuditEventQuery, Query()], principal: Auditor, session: DbSession
) -> AuditEventList:
    """Audit events name records by id and fields by name, never values. Filter by actor, action,
    target and a time window; page with `cursor`. Needs the right `view_audit_log`.
    """
    rows, next_cursor = await service.list_events(session=session, principal=principal, query=query)
    return AuditEventList(
        data=[AuditEventRead.model_validate(row) for row in rows], next_cursor=next_cursor
    )
