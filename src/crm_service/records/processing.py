"""The processing lock: whether a record may change at all.

Every change of a record (update, delete, restore and purge from the recycle bin, conversion,
legal basis, sharing; later consent requests, exports and webhooks) names itself as a
:class:`Change` and passes `RecordService.check_change`, which asks this module whether the
record's data subject is locked, then the module's own rule (a converted lead is closed).

A lead and the contact it became are one data subject (`subject_id`), so locking the subject
locks both; an account is no data subject and is never locked. The state lives in
`subject_processing_locks`, set and lifted by the features that decide it through
`ProcessingLockRepository`:

- **locked** (423 `processing-locked`): a consent request went unanswered; it ends when consent
  is recorded or an administrator records another legal basis (the consent feature);
- **restricted** (423 `processing-restricted`): GDPR Art. 18; the subject's records are kept
  but not processed until the restriction is lifted (the privacy feature,
  `privacy/restriction.py`). Lists, searches, exports and the recycle bin leave them out (the
  repository's `listable`), their record events queue no webhook, and every read that
  discloses one record (:func:`check_readable`) answers 423 too unless the caller holds the
  right `view_restricted`, which is then audited as `record.restricted_read`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import record as audit
from crm_service.errors import ProcessingLocked, ProcessingRestricted
from crm_service.records.models import PersonColumns, ProcessingLockKind, SubjectProcessingLock
from crm_service.records.repository import ProcessingLockRepository
from crm_service.security.permissions import Operation, Right
from crm_service.security.principal import Principal


class Change(StrEnum):
    """A change of a record, and the profile operation it needs."""

    UPDATE = "update"
    DELETE = "delete"
    RESTORE = "restore"
    PURGE = "purge"
    CONVERT = "convert"
    LEGAL_BASIS = "legal_basis"
    SHARE = "share"
    UNSHARE = "unshare"

    @property
    def operation(self) -> Operation:
        # The recycle bin is part of deleting; everything else changes the record.
        if self in (Change.DELETE, Change.RESTORE, Change.PURGE):
            return Operation.DELETE
        return Operation.UPDATE


class Read(StrEnum):
    """A read that discloses one record's data, named in the audit event of a restricted read."""

    RECORD = "record"
    HISTORY = "history"
    SHARES = "shares"
    LEGAL_BASIS = "legal_basis"
    CONSENTS = "consents"
    CONSENT_RECEIPT = "consent_receipt"


def _since(lock: SubjectProcessingLock) -> str:
    return lock.since.strftime("%Y-%m-%d %H:%M UTC")


async def check_processable(
    session: AsyncSession, record: Any, *, noun: str, ends_consent_lock: bool = False
) -> None:
    """423 when the record's data subject is restricted or locked (restricted first: it is
    the stronger of the two and outlasts a consent answer).

    `ends_consent_lock`: the change is the one that ends a consent lock besides an answer,
    an administrator recording another legal basis (`legal_basis.py`); it passes a lock, never
    a restriction."""
    if not isinstance(record, PersonColumns):
        return
    locks = {
        lock.kind: lock
        for lock in await ProcessingLockRepository(session, record.organization_id).of_subject(
            record.subject_id
        )
    }
    restricted = locks.get(ProcessingLockKind.RESTRICTED.value)
    if restricted is not None:
        raise ProcessingRestricted(
            f"Processing of this {noun}'s data subject is restricted (GDPR Art. 18; reason: "
            f"{restricted.reason}) since {_since(restricted)}: their records are kept but not "
            "changed, shared or deleted. This ends when the restriction is lifted."
        )
    locked = locks.get(ProcessingLockKind.LOCKED.value)
    if locked is not None and not ends_consent_lock:
        raise ProcessingLocked(
            f"Processing of this {noun}'s data subject is locked (reason: {locked.reason}) "
            f"since {_since(locked)}: a consent request to them is unanswered. This ends when "
            "their consent is recorded or an administrator records another legal basis."
        )


async def subject_restricted(session: AsyncSession, organization_id: Any, subject_id: Any) -> bool:
    """Whether the data subject is restricted (GDPR Art. 18)."""
    return await ProcessingLockRepository(session, organization_id).is_restricted(subject_id)


async def check_readable(
    session: AsyncSession, principal: Principal, record: Any, *, noun: str, read: Read
) -> None:
    """423 `processing-restricted` when the record's data subject is restricted and the caller
    lacks the right `view_restricted` (a partner token never holds it); with it, the read is
    let through and audited. The record read by id says whether it is restricted (the same
    statement loads it); one loaded another way is looked up."""
    if not isinstance(record, PersonColumns):
        return
    restricted = record.processing_restricted
    if restricted is None:
        restricted = await subject_restricted(session, record.organization_id, record.subject_id)
    if not restricted:
        return
    if not principal.has_right(Right.VIEW_RESTRICTED):
        raise ProcessingRestricted(
            f"Processing of this {noun}'s data subject is restricted (GDPR Art. 18): their "
            "records are kept but not processed, and reading one needs the right "
            "view_restricted. This ends when the restriction is lifted."
        )
    audit(
        session,
        principal,
        AuditAction.RECORD_RESTRICTED_READ,
        target_type=noun,
        target_id=record.id,  # type: ignore[attr-defined]
        reason=read.value,
    )
