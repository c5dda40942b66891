"""SQL of privacy requests: the requests of one organization, their subjects' sealed copies,
and the audit events that show which partner clients touched a subject's records. Always
scoped by organization."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from crm_service.audit.models import AuditEvent
from crm_service.audit.repository import names_target
from crm_service.db.repository import OrganizationRepository
from crm_service.privacy.models import PrivacyRequest, PrivacyRequestStatus, PrivacyRequestSubject

OPEN_STATUSES = (
    PrivacyRequestStatus.AWAITING_VERIFICATION.value,
    PrivacyRequestStatus.IN_PROGRESS.value,
)


class PrivacyRequestRepository(OrganizationRepository[PrivacyRequest]):
    model = PrivacyRequest

    async def subjects_of(
        self, request_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, list[PrivacyRequestSubject]]:
        found: dict[uuid.UUID, list[PrivacyRequestSubject]] = {id_: [] for id_ in request_ids}
        if not request_ids:
            return found
        result = await self.session.execute(
            select(PrivacyRequestSubject)
            .where(
                PrivacyRequestSubject.organization_id == self.organization_id,
                PrivacyRequestSubject.request_id.in_(request_ids),
            )
            .order_by(PrivacyRequestSubject.subject_id)
        )
        for row in result.scalars():
            found[row.request_id].append(row)
        return found

    def add_subject(self, row: PrivacyRequestSubject) -> None:
        self.session.add(row)

    async def for_email(self, email_bidx: str, subject_ids: set[uuid.UUID]) -> list[PrivacyRequest]:
        """Requests filed with this email, or for any of these subjects; newest first."""
        clauses: list[Any] = [PrivacyRequest.email_bidx == email_bidx]
        if subject_ids:
            clauses.append(
                PrivacyRequest.id.in_(
                    select(PrivacyRequestSubject.request_id).where(
                        PrivacyRequestSubject.organization_id == self.organization_id,
                        PrivacyRequestSubject.subject_id.in_(subject_ids),
                    )
                )
            )
        result = await self.session.execute(
            self.scoped()
            .where(or_(*clauses))
            .order_by(PrivacyRequest.filed_at.desc(), PrivacyRequest.id.desc())
        )
        return list(result.scalars())

    async def page(
        self,
        *,
        status: str | None,
        type_: str | None,
        overdue: bool | None,
        now: datetime,
        due_before: datetime | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[PrivacyRequest]:
        """Newest received first (keyset-paged by received_at, id); `limit + 1` rows."""
        statement = self.scoped()
        if status is not None:
            statement = statement.where(PrivacyRequest.status == status)
        if type_ is not None:
            statement = statement.where(PrivacyRequest.type == type_)
        late = and_(PrivacyRequest.status.in_(OPEN_STATUSES), PrivacyRequest.due_at < now)
        if overdue is True:
            statement = statement.where(late)
        elif overdue is False:
            statement = statement.where(~late)
        if due_before is not None:
            statement = statement.where(
                PrivacyRequest.status.in_(OPEN_STATUSES), PrivacyRequest.due_at < due_before
            )
        if after is not None:
            value, id_ = after
            statement = statement.where(
                or_(
                    PrivacyRequest.received_at < value,
                    and_(PrivacyRequest.received_at == value, PrivacyRequest.id < id_),
                )
            )
        statement = statement.order_by(
            PrivacyRequest.received_at.desc(), PrivacyRequest.id.desc()
        ).limit(limit + 1)
        return list((await self.session.execute(statement)).scalars())

    async def partner_clients_of(self, record_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        """Partner clients the audit log shows acting on any of the records (reads that
        revealed a value, and writes), first seen first."""
        if not record_ids:
            return []
        result = await self.session.execute(
            select(AuditEvent.actor_id)
            .where(
                AuditEvent.organization_id == self.organization_id,
                AuditEvent.actor_type == "client",
                AuditEvent.actor_id.is_not(None),
                or_(*(names_target(str(id_)) for id_ in record_ids)),
            )
            .order_by(AuditEvent.occurred_at)
        )
        seen: list[uuid.UUID] = []
        for actor_id in result.scalars():
            if actor_id is not None and actor_id not in seen:
                seen.append(actor_id)
        return seen
