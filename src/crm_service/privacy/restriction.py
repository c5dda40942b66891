"""Restriction of processing (GDPR Art. 18): a data subject's records are kept, not processed.

:func:`restrict_subject` sets the restriction (completing a restriction request calls it);
from then on the one processing lock (`records/processing.py`) refuses every change of the
subject's leads and contacts with 423 `processing-restricted`, lists, searches, exports and
the recycle bin leave them out, their events queue no webhook, and a direct read answers 423
unless the caller holds `view_restricted` (then it is audited).

:func:`lift_restriction` ends it. Art. 18(3) says the subject is told before the restriction
is lifted, so the mail that tells them is queued in the outbox first and the lock is deleted
after it, in the same transaction: no lifted restriction without its mail, no mail for a
lift that rolled back. A subject none of whose records has an email is recorded as not told.
Neither the lock nor the audit events carry a value: subjects are named by id, reasons by code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.db.tenancy import Organization
from crm_service.errors import NotFound
from crm_service.kit.modules import Module
from crm_service.mail.outbox import enqueue
from crm_service.privacy import repository
from crm_service.privacy.schemas import RestrictionQuery
from crm_service.records.contacts.repository import ContactRepository
from crm_service.records.leads.repository import LeadRepository
from crm_service.records.models import ProcessingLockKind, SubjectProcessingLock
from crm_service.records.paging import Cursor, RecordSort
from crm_service.records.repository import ProcessingLockRepository, RecordRepository

TARGET_TYPE = "data_subject"
MAIL_TEMPLATE = "restriction_lifted"
# Where the subject's address is looked for first: the contact a lead became carries it on.
_REPOSITORIES: dict[Module, type[RecordRepository[Any]]] = {
    Module.CONTACTS: ContactRepository,
    Module.LEADS: LeadRepository,
}


async def restrict_subject(
    session: AsyncSession,
    organization_id: uuid.UUID,
    subject_id: uuid.UUID,
    *,
    reason: str,
    request_id: uuid.UUID | None,
    actor: Actor,
    now: datetime,
) -> SubjectProcessingLock:
    """Restrict the data subject (404 when the organization holds no lead or contact of
    theirs); restricting again says anew why, since when and by which request. `reason` is a
    value-free code (it reaches listings and audit events). Audited."""
    if not await repository.subject_rows(session, organization_id, subject_id):
        raise NotFound("No such data subject.")
    lock = await ProcessingLockRepository(session, organization_id).set(
        subject_id, ProcessingLockKind.RESTRICTED, reason=reason, since=now, request_id=request_id
    )
    audit(
        session,
        actor,
        AuditAction.PROCESSING_RESTRICTED,
        target_type=TARGET_TYPE,
        target_id=subject_id,
        reason=reason,
    )
    return lock


@dataclass(frozen=True)
class LiftedRestriction:
    subject_id: uuid.UUID
    lifted_at: datetime
    subject_told: bool


async def _subject_email(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> str | None:
    """The subject's email from their records: a live contact's, else a live lead's, else one
    in the recycle bin (a restricted subject's binned records are kept too)."""
    rows = await repository.subject_rows(session, organization_id, subject_id)
    order = list(_REPOSITORIES)
    rows.sort(key=lambda row: (row.binned, order.index(row.module)))
    for row in rows:
        found = await _REPOSITORIES[row.module](session, organization_id).get(
            row.id, binned=row.binned
        )
        if found is not None and not found.erased and found.email:
            return str(found.email)
    return None


async def lift_restriction(
    session: AsyncSession,
    organization_id: uuid.UUID,
    subject_id: uuid.UUID,
    *,
    actor: Actor,
    now: datetime,
    language: str = "en",
) -> LiftedRestriction:
    """Tell the subject, then lift their restriction (404 when they are not restricted, or not
    the organization's). Audited, with whether they could be told."""
    locks = ProcessingLockRepository(session, organization_id)
    restriction = next(
        (
            lock
            for lock in await locks.of_subject(subject_id)
            if lock.kind == ProcessingLockKind.RESTRICTED.value
        ),
        None,
    )
    if restriction is None:
        raise NotFound("No such restricted data subject.")
    email = await _subject_email(session, organization_id, subject_id)
    if email is not None:
        organization = await session.get(Organization, organization_id)
        assert organization is not None
        await enqueue(
            session,
            organization_id=organization_id,
            to=email,
            template=MAIL_TEMPLATE,
            context={
                "organization_name": organization.name,
                "since": restriction.since.strftime("%Y-%m-%d"),
            },
            language=language,
            subject_id=subject_id,
        )
        # Written before the lock goes: the subject is told first (Art. 18(3)).
        await session.flush()
    await locks.lift(subject_id, ProcessingLockKind.RESTRICTED)
    audit(
        session,
        actor,
        AuditAction.RESTRICTION_LIFTED,
        target_type=TARGET_TYPE,
        target_id=subject_id,
        reason="subject_told" if email is not None else "subject_unreachable",
    )
    return LiftedRestriction(subject_id=subject_id, lifted_at=now, subject_told=email is not None)


async def list_restrictions(
    session: AsyncSession, organization_id: uuid.UUID, query: RestrictionQuery
) -> tuple[list[SubjectProcessingLock], str | None]:
    """The organization's restricted subjects, most recently restricted first; the cursor of
    the next page."""
    after = None
    if query.cursor is not None:
        decoded = Cursor.decode(query.cursor, RecordSort.CREATED_DESC)
        after = (decoded.value, decoded.id)
    rows = await ProcessingLockRepository(session, organization_id).restricted_page(
        after=after, limit=query.limit + 1
    )
    if len(rows) <= query.limit:
        return rows, None
    rows = rows[: query.limit]
    last = rows[-1]
    return rows, Cursor(RecordSort.CREATED_DESC, last.since, last.subject_id).encode()
