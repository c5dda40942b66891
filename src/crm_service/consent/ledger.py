"""Purposes and the consent ledger: record consent events, derive the current state per
purpose, issue signed receipts, and settle the consent requests an answer ends.

The ledger belongs to the data subject (`subject_id`), not to one record: a lead and the
contact it was converted into are one subject, so conversion carries the ledger over without
copying a row, and the contact shows every event given on the lead. Each event names the
record it was recorded on.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.consent import receipts
from crm_service.consent.models import (
    ConsentChannel,
    ConsentEvent,
    ConsentPurpose,
    ConsentStatus,
    RequestStatus,
)
from crm_service.consent.repository import (
    ConsentEventRepository,
    ConsentRequestRepository,
    PurposeRepository,
)
from crm_service.consent.schemas import (
    ConsentEventRead,
    ConsentLedger,
    ConsentReceipt,
    ConsentRecord,
    PurposeCreate,
    PurposeState,
    person_module,
)
from crm_service.consent.sealing import open_json, seal_json
from crm_service.crypto.codec import FieldContext
from crm_service.db.tenancy import Organization
from crm_service.errors import Conflict, FieldProblem, Forbidden, NotFound, ValidationFailed
from crm_service.kit.modules import Module
from crm_service.records.contacts.service import contacts as contact_service
from crm_service.records.disclosure import note_partner_disclosure
from crm_service.records.leads.service import leads as lead_service
from crm_service.records.models import LegalBasis, ProcessingLockKind
from crm_service.records.processing import Read, check_processable, check_readable
from crm_service.records.repository import (
    LegalBasisRepository,
    ProcessingLockRepository,
    RecordRepository,
)
from crm_service.records.service import RecordService, require_operation
from crm_service.security.permissions import Operation
from crm_service.security.principal import Principal

SERVICES: dict[Module, RecordService[Any]] = {
    Module.LEADS: lead_service,
    Module.CONTACTS: contact_service,
}


def evidence_context(event: ConsentEvent) -> FieldContext:
    return FieldContext(event.organization_id, "consent_events", "evidence_sealed", event.id)


def unknown_purpose(field: str) -> ValidationFailed:
    return ValidationFailed(
        f"`{field}` names no consent purpose of this organization.",
        errors=[FieldProblem(field=f"body.{field}", rule="not_found", message="no such purpose")],
    )


# --- purposes ----------------------------------------------------------------------------------


async def create_purpose(
    *, session: AsyncSession, principal: Principal, payload: PurposeCreate, now: datetime
) -> ConsentPurpose:
    repository = PurposeRepository(session, principal.organization_id)
    current = await repository.current(payload.key)
    if current is not None and current.notice_version == payload.notice_version:
        raise Conflict(
            "This purpose already has this notice version; a new version needs a new "
            "`notice_version`."
        )
    if current is not None:
        current.superseded_at = now
    purpose = await repository.add(
        ConsentPurpose(
            organization_id=principal.organization_id,
            key=payload.key,
            version=1 if current is None else current.version + 1,
            name=payload.name,
            description=payload.description,
            notice_version=payload.notice_version,
            notice_url=payload.notice_url,
            marketing=payload.marketing,
            created_at=now,
            created_by_id=principal.user_id,
        )
    )
    audit(
        session,
        principal,
        AuditAction.CONSENT_PURPOSE_CREATED,
        target_type="consent_purpose",
        target_id=purpose.id,
        fields=["key", "name", "description", "notice_version", "notice_url", "marketing"],
    )
    return purpose


async def list_purposes(*, session: AsyncSession, principal: Principal) -> list[ConsentPurpose]:
    return await PurposeRepository(session, principal.organization_id).current_all()


async def purpose_versions(
    *, session: AsyncSession, principal: Principal, key: str
) -> list[ConsentPurpose]:
    versions = await PurposeRepository(session, principal.organization_id).versions(key)
    if not versions:
        raise NotFound("No such consent purpose.")
    return versions


# --- the subject a ledger belongs to -----------------------------------------------------------


async def person(
    session: AsyncSession, principal: Principal, module: Module, record_id: uuid.UUID, op: Operation
) -> tuple[Any, RecordRepository[Any]]:
    """A lead or contact the caller may see (404) and, to record, change (403). What the
    consent routes then answer is the data subject's (their consent, its evidence), so a
    partner client is noted as one of the subject's recipients (Art. 19)."""
    service = SERVICES[module]
    require_operation(principal, module, op)
    repository = await service.repository(session, principal)
    record = await service.visible(repository, record_id)
    if op is not Operation.READ and not await repository.writable(record_id):
        raise Forbidden(f"The sharing rules do not let you change this {module.noun}.")
    note_partner_disclosure(session, principal, [record.subject_id])
    return record, repository


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """The record an event is recorded on, and the data subject it belongs to."""

    organization_id: uuid.UUID
    module: Module
    record: Any
    repository: RecordRepository[Any]

    @property
    def subject_id(self) -> uuid.UUID:
        return self.record.subject_id


async def append_event(
    session: AsyncSession,
    subject: Subject,
    *,
    actor: Actor,
    purpose: ConsentPurpose,
    status: ConsentStatus,
    channel: ConsentChannel,
    notice_version: str,
    now: datetime,
    evidence: dict[str, Any] | None,
    recorded_by_id: uuid.UUID | None = None,
    recorded_by_client_id: str | None = None,
    request_id: uuid.UUID | None = None,
    form_id: uuid.UUID | None = None,
) -> ConsentEvent:
    """Append one event (its evidence sealed under the subject's key), audit it, and settle
    the consent requests it answers."""
    event = ConsentEvent(
        id=uuid.uuid4(),
        organization_id=subject.organization_id,
        subject_id=subject.subject_id,
        module=subject.module.value,
        record_id=subject.record.id,
        purpose_id=purpose.id,
        purpose_key=purpose.key,
        notice_version=notice_version,
        status=status.value,
        channel=channel.value,
        recorded_at=now,
        recorded_by_id=recorded_by_id,
        recorded_by_client_id=recorded_by_client_id,
        request_id=request_id,
        form_id=form_id,
    )
    if evidence:
        event.evidence_sealed = await seal_json(
            session, subject.organization_id, subject.subject_id, evidence_context(event), evidence
        )
    await ConsentEventRepository(session, subject.organization_id).add(event)
    audit(
        session,
        actor,
        AuditAction.CONSENT_RECORDED,
        target_type=subject.module.noun,
        target_id=subject.record.id,
        fields=[f"consent:{purpose.key}:{status.value}"],
    )
    await settle_requests(session, subject, actor=actor, event=event)
    return event


async def settle_requests(
    session: AsyncSession, subject: Subject, *, actor: Actor, event: ConsentEvent
) -> None:
    """An answer for a purpose answers every open request of the subject that asked for it.
    When the last unanswered request past its deadline is answered, the consent lock ends
    (the one lock, `records/processing.py`); a grant also makes consent the record's legal
    basis, so its legal-basis history shows how the lock ended."""
    requests = ConsentRequestRepository(session, subject.organization_id)
    open_requests = await requests.open_of_subject(subject.subject_id)
    was_late = False
    for request in open_requests:
        if str(event.purpose_id) not in json.loads(request.purpose_ids) and (
            event.request_id != request.id
        ):
            continue
        was_late = was_late or request.status == RequestStatus.NO_RESPONSE.value
        request.status = RequestStatus.ANSWERED.value
        request.answered_at = event.recorded_at
        audit(
            session,
            actor,
            AuditAction.CONSENT_REQUEST_ANSWERED,
            target_type="consent_request",
            target_id=request.id,
            reason="late" if was_late else None,
        )
    await session.flush()
    still_unanswered = any(
        request.status == RequestStatus.NO_RESPONSE.value for request in open_requests
    )
    if not was_late or still_unanswered:
        return
    locks = ProcessingLockRepository(session, subject.organization_id)
    if not await locks.lift(subject.subject_id, ProcessingLockKind.LOCKED):
        return
    audit(
        session,
        actor,
        AuditAction.PROCESSING_UNLOCKED,
        target_type=subject.module.noun,
        target_id=subject.record.id,
        reason="consent_recorded",
    )
    record = subject.record
    if event.status == ConsentStatus.GRANTED.value and record.legal_basis != LegalBasis.CONSENT:
        await LegalBasisRepository(session, subject.organization_id).append(
            record,
            subject.module,
            basis=LegalBasis.CONSENT.value,
            assessment=None,
            set_by_id=event.recorded_by_id,
            set_by_client_id=event.recorded_by_client_id,
        )
        await subject.repository.save(record)


async def record_consent(
    *,
    session: AsyncSession,
    principal: Principal,
    module: Module,
    record_id: uuid.UUID,
    payload: ConsentRecord,
    now: datetime,
) -> ConsentEvent:
    """Staff record a consent they took. Not refused by the consent lock: recording consent
    is how the lock ends (and a withdrawal must always be possible). A restricted subject's
    withdrawal or refusal is recorded too (it only narrows what is done); a grant, which would
    widen processing of someone who restricted it, answers 423 `processing-restricted`."""
    record, repository = await person(session, principal, module, record_id, Operation.UPDATE)
    if payload.status is ConsentStatus.GRANTED:
        await check_processable(session, record, noun=module.noun, ends_consent_lock=True)
    versions = await PurposeRepository(session, principal.organization_id).versions(payload.purpose)
    if not versions:
        raise unknown_purpose("purpose")
    if payload.notice_version is None:
        purpose = versions[0]
    else:
        matching = [p for p in versions if p.notice_version == payload.notice_version]
        if not matching:
            raise ValidationFailed(
                "`notice_version` is no notice version of this purpose.",
                errors=[
                    FieldProblem(
                        field="body.notice_version", rule="not_found", message="no such version"
                    )
                ],
            )
        purpose = matching[0]
    evidence: dict[str, Any] = {"recorded_from_ip": principal.client_ip}
    if payload.note:
        evidence["note"] = payload.note
    return await append_event(
        session,
        Subject(principal.organization_id, module, record, repository),
        actor=Actor.of(principal),
        purpose=purpose,
        status=payload.status,
        channel=payload.channel,
        notice_version=purpose.notice_version,
        now=now,
        evidence=evidence,
        recorded_by_id=principal.user_id,
        recorded_by_client_id=principal.client_id,
    )


async def read_events(
    session: AsyncSession, organization_id: uuid.UUID, events: list[ConsentEvent]
) -> list[ConsentEventRead]:
    purposes = await PurposeRepository(session, organization_id).by_ids(
        {event.purpose_id for event in events}
    )
    shown = []
    for event in events:
        evidence = None
        erased = False
        if event.evidence_sealed is not None:
            evidence = await open_json(
                session, organization_id, event.evidence_sealed, evidence_context(event)
            )
            erased = evidence is None
        shown.append(
            ConsentEventRead(
                id=event.id,
                purpose=event.purpose_key,
                purpose_version=purposes[event.purpose_id].version,
                status=ConsentStatus(event.status),
                channel=ConsentChannel(event.channel),
                notice_version=event.notice_version,
                recorded_at=event.recorded_at,
                recorded_by_id=event.recorded_by_id,
                recorded_by_client_id=event.recorded_by_client_id,
                module=person_module(event.module),
                record_id=event.record_id,
                request_id=event.request_id,
                form_id=event.form_id,
                evidence=evidence,
                evidence_erased=erased,
            )
        )
    return shown


def current_state(events: list[ConsentEventRead]) -> list[PurposeState]:
    """The latest event per purpose (events come oldest first)."""
    latest: dict[str, ConsentEventRead] = {}
    for event in events:
        latest[event.purpose] = event
    return [
        PurposeState(
            purpose=event.purpose,
            status=event.status,
            purpose_version=event.purpose_version,
            notice_version=event.notice_version,
            recorded_at=event.recorded_at,
            event_id=event.id,
        )
        for _, event in sorted(latest.items())
    ]


async def ledger(
    *, session: AsyncSession, principal: Principal, module: Module, record_id: uuid.UUID
) -> ConsentLedger:
    record, _ = await person(session, principal, module, record_id, Operation.READ)
    await check_readable(session, principal, record, noun=module.noun, read=Read.CONSENTS)
    events = await ConsentEventRepository(session, principal.organization_id).of_subject(
        record.subject_id
    )
    shown = await read_events(session, principal.organization_id, events)
    return ConsentLedger(subject_id=record.subject_id, state=current_state(shown), events=shown)


async def receipt(
    *,
    session: AsyncSession,
    principal: Principal,
    module: Module,
    record_id: uuid.UUID,
    event_id: uuid.UUID,
    now: datetime,
    base_url: str,
) -> ConsentReceipt:
    """The signed receipt of one event of the record's subject (audited: it leaves the CRM)."""
    record, _ = await person(session, principal, module, record_id, Operation.READ)
    await check_readable(session, principal, record, noun=module.noun, read=Read.CONSENT_RECEIPT)
    event = await ConsentEventRepository(session, principal.organization_id).get(event_id)
    if event is None or event.subject_id != record.subject_id:
        raise NotFound("No such consent event.")
    purpose = (
        await PurposeRepository(session, principal.organization_id).by_ids([event.purpose_id])
    )[event.purpose_id]
    organization = await session.get(Organization, principal.organization_id)
    assert organization is not None
    body = receipts.receipt_body(
        event=event, purpose=purpose, organization=organization, issued_at=now
    )
    jws, kid = await receipts.sign(session, principal.organization_id, body, now)
    audit(
        session,
        principal,
        AuditAction.CONSENT_RECEIPT_ISSUED,
        target_type=module.noun,
        target_id=record_id,
        fields=[f"consent_event:{event.id}"],
    )
    return ConsentReceipt(
        receipt=body,
        jws=jws,
        kid=uuid.UUID(kid),
        keys_url=f"{base_url.rstrip('/')}/consent/receipt-keys/{principal.organization_id}",
    )
