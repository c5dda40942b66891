"""Privacy requests (GDPR Art. 12, 15-21): filed, verified, extended, completed or rejected on
a legal clock.

A request is due one calendar month after it was received (the same day of the next month,
or that month's last day when it has no such day), and may be extended by one or two months,
counted from the original due date, only before that date, with a reason mailed to the
requester. Completing it carries it out through the features' own seams: erasure
(`erasure.erase_subject`), restriction (the one processing lock), objection (the consent
ledger: marketing purposes withdrawn), rectification (the record service's ordinary update,
as the completing principal); access and portability close the request once the package is
given. Every rectification, erasure and restriction is told to those who received the
subject's data (Art. 19): webhook endpoints subscribed to `privacy.*` events, and the partner
clients the audit log shows acting on the subject's records.

The requester's email is kept as its blind index; the email itself, the details, the
corrections and the reasons are sealed under each of the request's data subjects' keys, so
erasing a subject makes their copy unreadable. The portal files requests through
:func:`file_request` (already verified: the subject proved control of the email) and lists
them through :func:`list_for_email`.
"""

from __future__ import annotations

import calendar
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.consent.sealing import open_json, seal_json
from crm_service.crypto.blind_index import IndexKind, blind_index
from crm_service.crypto.codec import FieldContext
from crm_service.crypto.service import keyring_for
from crm_service.db.base import utcnow
from crm_service.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from crm_service.kit.modules import Module
from crm_service.privacy import repository
from crm_service.privacy.models import (
    PrivacyRequest,
    PrivacyRequestStatus,
    PrivacyRequestSubject,
    PrivacyRequestType,
)
from crm_service.privacy.request_repository import PrivacyRequestRepository
from crm_service.privacy.schemas import (
    CorrectionRead,
    PrivacyRequestCreate,
    PrivacyRequestPage,
    PrivacyRequestQuery,
    PrivacyRequestRead,
    PrivacyRequestVerify,
    Recipient,
    SubjectNotice,
)
from crm_service.records.contacts.schemas import ContactUpdate
from crm_service.records.contacts.service import contacts
from crm_service.records.leads.schemas import LeadUpdate
from crm_service.records.leads.service import leads
from crm_service.records.paging import Cursor, RecordSort
from crm_service.security.principal import Principal

TARGET_TYPE = "privacy_request"
# How far ahead of the service's clock `received_at` may be (clock skew of the filer).
RECEIVED_SKEW = timedelta(minutes=5)
MAX_EXTENSION_MONTHS = 2

_UPDATES: dict[Module, type[BaseModel]] = {Module.LEADS: LeadUpdate, Module.CONTACTS: ContactUpdate}
_SERVICES: dict[Module, Any] = {Module.LEADS: leads, Module.CONTACTS: contacts}


class RequestUnverified(Conflict):
    slug, title = "request-unverified", "Identity not verified"


class RequestClosed(Conflict):
    slug, title = "request-closed", "Request closed"


class ExtensionRefused(Conflict):
    slug, title = "extension-refused", "Extension refused"


# --- the legal clock -----------------------------------------------------------------------


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` calendar months later, or that month's last day when it has no
    such day (31 January + 1 -> 28 or 29 February); the time of day is kept."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def due_date(received_at: datetime) -> datetime:
    """One calendar month after receipt (GDPR Art. 12(3))."""
    return add_months(received_at, 1)


# --- what a request says, sealed per subject ------------------------------------------------


def _context(organization_id: uuid.UUID, request_id: uuid.UUID, subject_id: uuid.UUID) -> Any:
    return FieldContext(
        organization_id, "privacy_request_subjects", f"sealed/{subject_id}", request_id
    )


async def _seal(
    session: AsyncSession, request: PrivacyRequest, subject_id: uuid.UUID, said: dict[str, Any]
) -> bytes:
    return await seal_json(
        session,
        request.organization_id,
        subject_id,
        _context(request.organization_id, request.id, subject_id),
        said,
    )


async def _open(session: AsyncSession, row: PrivacyRequestSubject) -> dict[str, Any] | None:
    """What the request says, or None once the subject was erased (the key is gone)."""
    return await open_json(
        session,
        row.organization_id,
        row.sealed,
        _context(row.organization_id, row.request_id, row.subject_id),
    )


async def _said(session: AsyncSession, rows: list[PrivacyRequestSubject]) -> dict[str, Any] | None:
    for row in rows:
        said = await _open(session, row)
        if said is not None:
            return said
    return None


async def _reseal(
    session: AsyncSession,
    request: PrivacyRequest,
    rows: list[PrivacyRequestSubject],
    change: dict[str, Any],
) -> dict[str, Any] | None:
    """Add to what the request says, in every copy whose subject still has a key (an erased
    subject's copy stays unreadable: no key is made for them again). The updated content, or
    None when no copy could be opened."""
    said = None
    for row in rows:
        current = await _open(session, row)
        if current is None:
            continue
        current.update(change)
        row.sealed = await _seal(session, request, row.subject_id, current)
        said = current
    await session.flush()
    return said


# --- filing ---------------------------------------------------------------------------------


def _problem(field: str, rule: str, message: str) -> FieldProblem:
    return FieldProblem(field=field, rule=rule, message=message)


async def _email_index(session: AsyncSession, organization_id: uuid.UUID, email: str) -> str:
    key = await keyring_for(session, organization_id).index_key()
    return blind_index(key, IndexKind.EMAIL, email, phone_region=None)


async def _subject_records(
    session: AsyncSession, organization_id: uuid.UUID, subject_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[repository.SubjectRow]]:
    return {
        subject_id: await repository.subject_rows(session, organization_id, subject_id)
        for subject_id in subject_ids
    }


def _checked_corrections(
    corrections: list[Any], records: dict[uuid.UUID, list[repository.SubjectRow]]
) -> list[dict[str, Any]]:
    """Each correction names a live lead or contact of the request's subjects and fields its
    update accepts (422 naming the correction otherwise); returned as plain JSON."""
    live = {(row.module, row.id) for rows in records.values() for row in rows if not row.binned}
    checked = []
    problems = []
    for index, correction in enumerate(corrections):
        if isinstance(correction, BaseModel):
            correction = correction.model_dump(mode="json")
        where = f"body.corrections.{index}"
        try:
            module = Module(correction["module"])
            record_id = uuid.UUID(str(correction["record_id"]))
            fields = dict(correction["fields"])
        except (KeyError, TypeError, ValueError):
            problems.append(_problem(where, "invalid", "needs module, record_id and fields"))
            continue
        if module not in _UPDATES or (module, record_id) not in live:
            problems.append(
                _problem(
                    f"{where}.record_id",
                    "not_the_subjects",
                    "names no lead or contact of this request's data subject",
                )
            )
            continue
        try:
            update = _UPDATES[module].model_validate(fields)
        except ValidationError as error:
            for item in error.errors():
                location = ".".join(str(part) for part in item["loc"])
                problems.append(
                    _problem(f"{where}.fields.{location}", item["type"], item["msg"][:200])
                )
            continue
        checked.append(
            {
                "module": module.value,
                "record_id": str(record_id),
                "fields": update.model_dump(mode="json", exclude_unset=True),
            }
        )
    if problems:
        raise ValidationFailed("A correction cannot be applied as given.", errors=problems)
    return checked


def _channel(actor: Actor, verified_by: str | None) -> str:
    if verified_by == "portal":
        return "portal"
    return "partner" if actor.type == "client" else "staff"


async def file_request(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    type: PrivacyRequestType | str,  # noqa: A002 - the request's type, as the API names it
    email: str | None,
    subject_ids: list[uuid.UUID] | None = None,
    received_at: datetime,
    details: str | None,
    actor: Actor,
    verified_by: str | None,
    corrections: list[Any] | None = None,
    module: Module | str | None = None,
    record_id: uuid.UUID | None = None,
    language: str = "en",
    now: datetime | None = None,
) -> PrivacyRequest:
    """File a request for the data subjects with `email` (every lead and contact with it),
    those of `subject_ids`, or the one of `module` + `record_id`; 404 when that names none.

    `verified_by="portal"`: the subject proved control of the email, so the request is in
    progress at once; `"staff"`: whoever files it confirmed the identity; None: it awaits
    staff verification (`verify`). Audited (`privacy.request_filed`)."""
    now = now or utcnow()
    try:
        request_type = PrivacyRequestType(type)
    except ValueError:
        raise ValidationFailed(
            "`type` is no kind of privacy request.",
            errors=[_problem("body.type", "enum", "no such request type")],
        ) from None
    if verified_by not in (None, "portal", "staff"):
        raise ValueError("verified_by is 'portal', 'staff' or None")
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    received_at = received_at.astimezone(UTC)
    if received_at > now + RECEIVED_SKEW:
        raise ValidationFailed(
            "`received_at` is in the future: give when the request reached you.",
            errors=[_problem("body.received_at", "in_future", "must not be in the future")],
        )
    if corrections and request_type is not PrivacyRequestType.RECTIFICATION:
        raise ValidationFailed(
            "Only a rectification request carries `corrections`.",
            errors=[_problem("body.corrections", "not_allowed", "rectification only")],
        )

    found: set[uuid.UUID] = set(subject_ids or ())
    email_bidx = None
    record_module = None if module is None else Module(module)
    if email is not None:
        email_bidx = await _email_index(session, organization_id, email)
        found |= await repository.subjects_with(
            session, organization_id, IndexKind.EMAIL, email_bidx
        )
        if not found:
            raise NotFound("No lead or contact of this organization has this email.")
    elif record_module is not None and record_id is not None:
        if record_module not in _SERVICES:
            raise NotFound("Privacy requests concern leads and contacts.")
        subject = await repository.subject_of_record(
            session, organization_id, record_module, record_id
        )
        if subject is None:
            raise NotFound(f"No such {record_module.noun}.")
        found.add(subject)
        record = (
            await _SERVICES[record_module].repository_class(session, organization_id).get(record_id)
        )
        # The address the requester is answered at: the record's own.
        email = None if record is None or record.erased else getattr(record, "email", None)
    records = await _subject_records(session, organization_id, sorted(found))
    if not found or any(not rows for rows in records.values()):
        raise NotFound("No such data subject.")
    checked = _checked_corrections(corrections or [], records)

    original_due = due_date(received_at)
    request = PrivacyRequest(
        id=uuid.uuid4(),
        organization_id=organization_id,
        type=request_type.value,
        status=(
            PrivacyRequestStatus.AWAITING_VERIFICATION
            if verified_by is None
            else PrivacyRequestStatus.IN_PROGRESS
        ).value,
        email_bidx=email_bidx,
        module=None if record_module is None else record_module.value,
        record_id=record_id if record_module is not None else None,
        language=language if language in ("en", "ja") else "en",
        channel=_channel(actor, verified_by),
        received_at=received_at,
        original_due_at=original_due,
        due_at=original_due,
        extended_months=0,
        filed_at=now,
        filed_by_type=actor.type,
        filed_by_id=actor.id,
        verified_at=None if verified_by is None else now,
        verified_by=verified_by,
        verified_by_id=actor.id if verified_by == "staff" else None,
        outcome=None,
        recipients=None,
        notices=None,
    )
    requests = PrivacyRequestRepository(session, organization_id)
    await requests.add(request)
    said = {"email": email, "details": details, "corrections": checked or None}
    for subject_id in sorted(found):
        requests.add_subject(
            PrivacyRequestSubject(
                request_id=request.id,
                subject_id=subject_id,
                organization_id=organization_id,
                sealed=await _seal(session, request, subject_id, said),
            )
        )
    await session.flush()
    audit(
        session,
        actor,
        AuditAction.PRIVACY_REQUEST_FILED,
        target_type=TARGET_TYPE,
        target_id=request.id,
        fields=[name for name, value in said.items() if value],
        reason=f"type={request_type.value};channel={request.channel}",
    )
    if verified_by is not None:
        audit(
            session,
            actor,
            AuditAction.PRIVACY_REQUEST_VERIFIED,
            target_type=TARGET_TYPE,
            target_id=request.id,
            reason=f"by={verified_by}",
        )
    return request


async def list_for_email(
    session: AsyncSession, organization_id: uuid.UUID, email: str
) -> list[PrivacyRequest]:
    """The requests filed with this email or for a data subject who has it, newest first."""
    email_bidx = await _email_index(session, organization_id, email)
    subjects = await repository.subjects_with(session, organization_id, IndexKind.EMAIL, email_bidx)
    return await PrivacyRequestRepository(session, organization_id).for_email(email_bidx, subjects)


# --- reading --------------------------------------------------------------------------------


def _json_list(value: str | None) -> list[Any]:
    return list(json.loads(value)) if value else []


def _json_dict(value: str | None) -> dict[str, Any]:
    return dict(json.loads(value)) if value else {}


@dataclass(frozen=True)
class Opened:
    request: PrivacyRequest
    subjects: list[PrivacyRequestSubject]
    said: dict[str, Any] | None


async def read(
    session: AsyncSession, request: PrivacyRequest, *, now: datetime
) -> PrivacyRequestRead:
    """The request as staff (and the portal) see it, its sealed parts opened."""
    rows = (
        await PrivacyRequestRepository(session, request.organization_id).subjects_of([request.id])
    )[request.id]
    return await _read(session, Opened(request, rows, await _said(session, rows)), now=now)


async def _read(session: AsyncSession, opened: Opened, *, now: datetime) -> PrivacyRequestRead:
    request, said = opened.request, opened.said or {}
    outcome = _json_dict(request.outcome)
    status = PrivacyRequestStatus(request.status)
    return PrivacyRequestRead(
        id=request.id,
        type=PrivacyRequestType(request.type),
        status=status,
        channel=request.channel,
        module=request.module,
        record_id=request.record_id,
        subject_ids=[row.subject_id for row in opened.subjects],
        email=said.get("email"),
        details=said.get("details"),
        corrections=[CorrectionRead(**item) for item in said.get("corrections") or []] or None,
        verification_note=said.get("verification_note"),
        extension_reason=said.get("extension_reason"),
        rejection_reason=said.get("rejection_reason"),
        personal_data_erased=opened.said is None,
        language=request.language,
        received_at=request.received_at,
        original_due_at=request.original_due_at,
        due_at=request.due_at,
        extended_months=request.extended_months,
        extended_at=request.extended_at,
        overdue=not status.closed and request.due_at < now,
        filed_at=request.filed_at,
        filed_by_type=request.filed_by_type,
        filed_by_id=request.filed_by_id,
        verified_at=request.verified_at,
        verified_by=request.verified_by,
        verified_by_id=request.verified_by_id,
        completed_at=request.completed_at,
        rejected_at=request.rejected_at,
        closed_by_type=request.closed_by_type,
        closed_by_id=request.closed_by_id,
        receipt_ids=outcome.pop("receipt_ids", []),
        outcome={name: value for name, value in outcome.items() if isinstance(value, int)},
        recipients=[Recipient(**item) for item in _json_list(request.recipients)],
        notices=[SubjectNotice(**item) for item in _json_list(request.notices)],
    )


async def read_many(
    session: AsyncSession, organization_id: uuid.UUID, found: list[PrivacyRequest], *, now: datetime
) -> list[PrivacyRequestRead]:
    subjects = await PrivacyRequestRepository(session, organization_id).subjects_of(
        [request.id for request in found]
    )
    shown = []
    for request in found:
        rows = subjects[request.id]
        shown.append(
            await _read(session, Opened(request, rows, await _said(session, rows)), now=now)
        )
    return shown


async def opened(
    session: AsyncSession, organization_id: uuid.UUID, request_id: uuid.UUID
) -> Opened:
    """One request of the organization (404 for another's), with what it says."""
    requests = PrivacyRequestRepository(session, organization_id)
    request = await requests.get(request_id)
    if request is None:
        raise NotFound("No such privacy request.")
    rows = (await requests.subjects_of([request.id]))[request.id]
    return Opened(request, rows, await _said(session, rows))


def require_open(request: PrivacyRequest) -> None:
    status = PrivacyRequestStatus(request.status)
    if status.closed:
        raise RequestClosed(f"This privacy request is {status.value}; it cannot change any more.")


# --- the API's operations ---------------------------------------------------------------------


async def create(
    *, session: AsyncSession, principal: Principal, payload: PrivacyRequestCreate, now: datetime
) -> PrivacyRequestRead:
    """Staff or a partner file a request; it awaits verification of the requester's identity."""
    request = await file_request(
        session,
        principal.organization_id,
        type=payload.type,
        email=payload.email,
        module=None if payload.module is None else Module(payload.module.value),
        record_id=payload.record_id,
        received_at=payload.received_at or now,
        details=payload.details,
        actor=Actor.of(principal),
        verified_by=None,
        corrections=payload.corrections,
        language=payload.language,
        now=now,
    )
    return await read(session, request, now=now)


async def get(
    *, session: AsyncSession, principal: Principal, request_id: uuid.UUID, now: datetime
) -> PrivacyRequestRead:
    return await _read(
        session, await opened(session, principal.organization_id, request_id), now=now
    )


async def list_requests(
    *, session: AsyncSession, principal: Principal, query: PrivacyRequestQuery, now: datetime
) -> PrivacyRequestPage:
    after = None
    if query.cursor is not None:
        cursor = Cursor.decode(query.cursor, RecordSort.CREATED_DESC)
        after = (cursor.value, cursor.id)
    rows = await PrivacyRequestRepository(session, principal.organization_id).page(
        status=None if query.status is None else query.status.value,
        type_=None if query.type is None else query.type.value,
        overdue=query.overdue,
        now=now,
        due_before=query.due_before,
        after=after,
        limit=query.limit,
    )
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        next_cursor = Cursor(RecordSort.CREATED_DESC, rows[-1].received_at, rows[-1].id).encode()
    return PrivacyRequestPage(
        data=await read_many(session, principal.organization_id, rows, now=now),
        next_cursor=next_cursor,
    )


async def verify(
    *,
    session: AsyncSession,
    principal: Principal,
    request_id: uuid.UUID,
    payload: PrivacyRequestVerify,
    now: datetime,
) -> PrivacyRequestRead:
    """Staff confirmed who asks: the request is in progress. Audited."""
    found = await opened(session, principal.organization_id, request_id)
    request = found.request
    require_open(request)
    if request.verified_at is not None:
        raise Conflict("This privacy request's requester is verified already.")
    request.status = PrivacyRequestStatus.IN_PROGRESS.value
    request.verified_at = now
    request.verified_by = "staff"
    request.verified_by_id = principal.user_id or _client_uuid(principal)
    said = found.said
    if payload.note:
        said = await _reseal(session, request, found.subjects, {"verification_note": payload.note})
    await session.flush()
    audit(
        session,
        principal,
        AuditAction.PRIVACY_REQUEST_VERIFIED,
        target_type=TARGET_TYPE,
        target_id=request.id,
        reason="by=staff",
    )
    return await _read(session, Opened(request, found.subjects, said), now=now)


def _client_uuid(principal: Principal) -> uuid.UUID | None:
    return uuid.UUID(principal.client_id) if principal.client_id else None
