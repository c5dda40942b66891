"""Consent requests: ask a data subject to grant or refuse purposes by a deadline.

- `email`: a mail with a link to the public page `GET /consent/{token}`; links are 256-bit
  random tokens kept only as hashes, working until the deadline or the first answer (every
  link of the request dies with the answer: single use). Reminders before the deadline
  (`CRM_CONSENT_REMINDER_HOURS`) each carry a new link.
- `portal`: kept pending for the privacy portal to show.
- `phone`: staff call and record the answer in the ledger.

At the deadline the worker marks an unanswered request `no_response` and locks the data
subject through the one processing lock (`records/processing.py`): every change of their
records answers 423 `processing-locked` until consent is recorded (`ledger.settle_requests`)
or an administrator records another legal basis (`records/legal_basis.py`).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.config import Settings
from crm_service.consent import mailing
from crm_service.consent.ledger import SERVICES, Subject, append_event, person, unknown_purpose
from crm_service.consent.models import (
    ConsentChannel,
    ConsentLink,
    ConsentPurpose,
    ConsentRequest,
    ConsentStatus,
    RequestChannel,
    RequestStatus,
)
from crm_service.consent.repository import ConsentRequestRepository, PurposeRepository
from crm_service.consent.schemas import (
    ConsentRequestCreate,
    ConsentRequestQuery,
    ConsentRequestRead,
    Language,
    PurposeRead,
    person_module,
)
from crm_service.consent.sealing import new_token, token_hash
from crm_service.consent.system_repository import (
    pending_email_requests_due_before,
    requests_past_deadline,
)
from crm_service.errors import FieldProblem, NotFound, ProcessingLocked, ValidationFailed
from crm_service.kit.modules import Module
from crm_service.records.models import ProcessingLockKind
from crm_service.records.paging import Cursor, RecordSort
from crm_service.records.processing import check_processable
from crm_service.records.repository import ProcessingLockRepository
from crm_service.security.permissions import Operation
from crm_service.security.principal import Principal


def _problem(field: str, rule: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message, errors=[FieldProblem(field=f"body.{field}", rule=rule, message=message)]
    )


def consent_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/consent/{token}"


async def _issue_link(
    session: AsyncSession, request: ConsentRequest, now: datetime, base_url: str
) -> str:
    token, hashed = new_token()
    await ConsentRequestRepository(session, request.organization_id).add_link(
        ConsentLink(
            token_hash=hashed,
            organization_id=request.organization_id,
            request_id=request.id,
            expires_at=request.deadline,
            created_at=now,
        )
    )
    return consent_link(base_url, token)


async def purposes_of(session: AsyncSession, request: ConsentRequest) -> list[ConsentPurpose]:
    ids = [uuid.UUID(value) for value in json.loads(request.purpose_ids)]
    found = await PurposeRepository(session, request.organization_id).by_ids(ids)
    return [found[id_] for id_ in ids if id_ in found]


async def create_request(
    *,
    session: AsyncSession,
    principal: Principal,
    payload: ConsentRequestCreate,
    now: datetime,
    base_url: str,
) -> ConsentRequest:
    module = Module(payload.module)
    record, _ = await person(session, principal, module, payload.record_id, Operation.UPDATE)
    try:
        await check_processable(session, record, noun=module.noun)
    except ProcessingLocked:
        # A subject locked for want of an answer may be asked again: that is how it ends.
        pass
    if payload.deadline <= now:
        raise _problem("deadline", "in_the_past", "`deadline` must be in the future.")
    purposes = await PurposeRepository(session, principal.organization_id).current_of(
        payload.purposes
    )
    if set(payload.purposes) - set(purposes):
        raise unknown_purpose("purposes")
    channel = RequestChannel(payload.channel)
    if channel is RequestChannel.EMAIL and not record.email:
        raise _problem("record_id", "no_email", "The record has no email address to write to.")
    request = await ConsentRequestRepository(session, principal.organization_id).add(
        ConsentRequest(
            id=uuid.uuid4(),
            organization_id=principal.organization_id,
            module=module.value,
            record_id=record.id,
            subject_id=record.subject_id,
            purpose_ids=json.dumps(
                [str(purposes[key].id) for key in dict.fromkeys(payload.purposes)]
            ),
            channel=channel.value,
            language=payload.language.value,
            status=RequestStatus.PENDING.value,
            deadline=payload.deadline,
            created_at=now,
            created_by_id=principal.user_id,
            created_by_client_id=principal.client_id,
            reminders_sent=0,
        )
    )
    if channel is RequestChannel.EMAIL:
        await mailing.send_consent_request(
            session,
            organization_id=principal.organization_id,
            subject_id=record.subject_id,
            to=record.email,
            link=await _issue_link(session, request, now, base_url),
            purposes=list(purposes.values()),
            deadline=request.deadline,
            language=request.language,
            reminder=False,
        )
    audit(
        session,
        principal,
        AuditAction.CONSENT_REQUEST_CREATED,
        target_type="consent_request",
        target_id=request.id,
        fields=[f"channel:{channel.value}", f"{module.noun}:{record.id}"],
    )
    return request


async def present(session: AsyncSession, request: ConsentRequest) -> ConsentRequestRead:
    return ConsentRequestRead(
        id=request.id,
        module=person_module(request.module),
        record_id=request.record_id,
        subject_id=request.subject_id,
        purposes=[PurposeRead.model_validate(p) for p in await purposes_of(session, request)],
        channel=RequestChannel(request.channel),
        language=Language(request.language),
        status=RequestStatus(request.status),
        deadline=request.deadline,
        created_at=request.created_at,
        created_by_id=request.created_by_id,
        answered_at=request.answered_at,
        no_response_at=request.no_response_at,
        reminders_sent=request.reminders_sent,
    )


async def get_request(
    *, session: AsyncSession, principal: Principal, request_id: uuid.UUID
) -> ConsentRequest:
    request = await ConsentRequestRepository(session, principal.organization_id).get(request_id)
    if request is None:
        raise NotFound("No such consent request.")
    # Only for those who may see the record it is about.
    try:
        await person(session, principal, Module(request.module), request.record_id, Operation.READ)
    except NotFound:
        raise NotFound("No such consent request.") from None
    return request


async def list_requests(
    *, session: AsyncSession, principal: Principal, query: ConsentRequestQuery
) -> tuple[list[ConsentRequest], str | None]:
    after = None
    if query.cursor is not None:
        decoded = Cursor.decode(query.cursor, RecordSort.CREATED_DESC)
        after = (decoded.value, decoded.id)
    rows = await ConsentRequestRepository(session, principal.organization_id).page(
        status=None if query.status is None else query.status.value,
        record_id=query.record_id,
        after=after,
        limit=query.limit,
    )
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        next_cursor = Cursor(RecordSort.CREATED_DESC, rows[-1].created_at, rows[-1].id).encode()
    visible = []
    for request in rows:
        try:
            await person(
                session, principal, Module(request.module), request.record_id, Operation.READ
            )
        except NotFound:
            continue
        visible.append(request)
    return visible, next_cursor


# --- the public page ------------------------------------------------------------------------


async def open_link(
    session: AsyncSession, token: str, now: datetime
) -> tuple[ConsentRequest, list[ConsentPurpose]] | None:
    """The pending request a live link belongs to, or None (unknown, used or expired)."""
    link = await session.get(ConsentLink, token_hash(token))
    if link is None or link.expires_at <= now:
        return None
    request = await session.get(ConsentRequest, link.request_id)
    if request is None or request.status != RequestStatus.PENDING.value or request.deadline <= now:
        return None
    return request, await purposes_of(session, request)


async def answer(
    session: AsyncSession,
    *,
    token: str,
    answers: dict[str, ConsentStatus],
    now: datetime,
    client_ip: str | None,
    user_agent: str | None,
) -> bool:
    """Record the person's answer per purpose (channel email); False when the link is dead.
    Purposes left unanswered are recorded as refused: silence is no consent."""
    opened = await open_link(session, token, now)
    if opened is None:
        return False
    request, purposes = opened
    return await record_answer(
        session,
        request,
        purposes,
        answers=answers,
        channel=ConsentChannel.EMAIL,
        actor=Actor.system(request.organization_id),
        now=now,
        client_ip=client_ip,
        user_agent=user_agent,
    )


async def record_answer(
    session: AsyncSession,
    request: ConsentRequest,
    purposes: list[ConsentPurpose],
    *,
    answers: dict[str, ConsentStatus],
    channel: ConsentChannel,
    actor: Actor,
    now: datetime,
    client_ip: str | None,
    user_agent: str | None,
) -> bool:
    """One event per purpose asked (unanswered ones refused), the visitor's IP and user
    agent as sealed evidence; every link of the request then dies. The consent page (channel
    email) and the privacy portal (portal) answer through here. False when the record is
    gone or erased."""
    module = Module(request.module)
    repository = SERVICES[module].repository_class(session, request.organization_id)
    record = await repository.get(request.record_id)
    if record is None or record.erased:
        return False
    subject = Subject(request.organization_id, module, record, repository)
    evidence = {
        "ip": client_ip,
        "user_agent": (user_agent or "")[:500],
        "answered_at": now.isoformat(),
        "request_id": str(request.id),
    }
    for purpose in purposes:
        await append_event(
            session,
            subject,
            actor=actor,
            purpose=purpose,
            status=answers.get(purpose.key, ConsentStatus.REFUSED),
            channel=channel,
            notice_version=purpose.notice_version,
            now=now,
            evidence=evidence,
            request_id=request.id,
        )
    # Single use: every link of the request dies with the answer.
    await session.execute(delete(ConsentLink).where(ConsentLink.request_id == request.id))
    return True


# --- the worker -----------------------------------------------------------------------------


async def mark_no_response(session: AsyncSession, now: datetime, batch_size: int) -> int:
    """Requests past their deadline become `no_response` and lock their data subject."""
    due = await requests_past_deadline(session, now, batch_size)
    for request in due:
        request.status = RequestStatus.NO_RESPONSE.value
        request.no_response_at = now
        await session.execute(delete(ConsentLink).where(ConsentLink.request_id == request.id))
        await ProcessingLockRepository(session, request.organization_id).set(
            request.subject_id,
            ProcessingLockKind.LOCKED,
            reason="consent_unanswered",
            since=now,
            request_id=request.id,
        )
        actor = Actor.system(request.organization_id)
        audit(
            session,
            actor,
            AuditAction.CONSENT_REQUEST_NO_RESPONSE,
            target_type="consent_request",
            target_id=request.id,
        )
        audit(
            session,
            actor,
            AuditAction.PROCESSING_LOCKED,
            target_type=Module(request.module).noun,
            target_id=request.record_id,
            reason="consent_unanswered",
        )
    await session.flush()
    return len(due)


async def send_reminders(
    session: AsyncSession, settings: Settings, now: datetime, batch_size: int
) -> int:
    """One reminder per configured offset before the deadline, each with a fresh link."""
    offsets = sorted({hours for hours in settings.consent_reminder_hours if hours > 0})
    if not offsets:
        return 0
    candidates = await pending_email_requests_due_before(
        session, now + timedelta(hours=offsets[-1]), now, batch_size
    )
    sent = 0
    for request in candidates:
        due = sum(1 for hours in offsets if request.deadline - timedelta(hours=hours) <= now)
        if request.reminders_sent >= due:
            continue
        module = Module(request.module)
        record: Any = (
            await SERVICES[module]
            .repository_class(session, request.organization_id)
            .get(request.record_id)
        )
        request.reminders_sent = due
        request.last_reminded_at = now
        # A restricted subject (GDPR Art. 18) is not written to: that would be processing.
        if record is None or record.erased or not record.email or record.processing_restricted:
            continue
        await mailing.send_consent_request(
            session,
            organization_id=request.organization_id,
            subject_id=request.subject_id,
            to=record.email,
            link=await _issue_link(session, request, now, settings.public_base_url),
            purposes=await purposes_of(session, request),
            deadline=request.deadline,
            language=request.language,
            reminder=True,
        )
        audit(
            session,
            Actor.system(request.organization_id),
            AuditAction.CONSENT_REQUEST_REMINDED,
            target_type="consent_request",
            target_id=request.id,
        )
        sent += 1
    await session.flush()
    return sent
