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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.consent.ledger import Subject, append_event
from crm_service.consent.models import ConsentChannel, ConsentStatus
from crm_service.consent.repository import ConsentEventRepository, PurposeRepository
from crm_service.consent.sealing import open_json, seal_json
from crm_service.crypto.blind_index import IndexKind, blind_index
from crm_service.crypto.codec import FieldContext
from crm_service.crypto.service import keyring_for
from crm_service.db.base import utcnow
from crm_service.db.tenancy import Organization
from crm_service.errors import (
    Conflict,
    FieldProblem,
    NotFound,
    ValidationFailed,
    _field_problems,
)
from crm_service.integrations.repository import endpoints_that_received
from crm_service.integrations.webhooks import queue_privacy_event
from crm_service.kit.modules import Module
from crm_service.mail.outbox import enqueue
from crm_service.privacy import erasers, repository, restriction  # noqa: F401 - erasers register
from crm_service.privacy.blocklist import add_entries
from crm_service.privacy.erasure import erase_subject
from crm_service.privacy.models import (
    PrivacyRequest,
    PrivacyRequestStatus,
    PrivacyRequestSubject,
    PrivacyRequestType,
)
from crm_service.privacy.package import (
    PackageFormat,
    RenderedPackage,
    build_package,
    disclose_package,
    load_package,
    render,
    store_package,
)
from crm_service.privacy.request_repository import PrivacyRequestRepository
from crm_service.privacy.schemas import (
    CorrectionRead,
    PrivacyRequestCreate,
    PrivacyRequestExtend,
    PrivacyRequestPage,
    PrivacyRequestQuery,
    PrivacyRequestRead,
    PrivacyRequestReceipt,
    PrivacyRequestReject,
    PrivacyRequestVerify,
    Recipient,
    SubjectNotice,
)
from crm_service.privacy.service import get_receipt
from crm_service.records.contacts.schemas import ContactUpdate
from crm_service.records.contacts.service import contacts
from crm_service.records.disclosure import note_partner_disclosure, partner_of
from crm_service.records.leads.schemas import LeadUpdate
from crm_service.records.leads.service import leads
from crm_service.records.paging import Cursor, RecordSort
from crm_service.records.repository import (
    hold_subjects,
    partner_clients_shown,
    subjects_with_keys,
)
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


@dataclass(frozen=True)
class Resealed:
    """What the request says after a change, and a subject whose key sealed it (None, None:
    every subject was erased)."""

    said: dict[str, Any] | None
    subject_id: uuid.UUID | None


async def _reseal(
    session: AsyncSession,
    request: PrivacyRequest,
    rows: list[PrivacyRequestSubject],
    change: dict[str, Any],
) -> Resealed:
    """Add to what the request says, in every copy whose subject still has a key (an erased
    subject's copy stays unreadable: no key is made for them again)."""
    said, sealed_for = None, None
    for row in rows:
        current = await _open(session, row)
        if current is None:
            continue
        current.update(change)
        row.sealed = await _seal(session, request, row.subject_id, current)
        said, sealed_for = current, sealed_for or row.subject_id
    await session.flush()
    return Resealed(said, sealed_for)


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
                    "not_found",
                    "names no lead or contact of this request's data subject",
                )
            )
            continue
        try:
            update = _UPDATES[module].model_validate(fields)
        except ValidationError as error:
            # Rendered by the one rule for schema errors: no input value is echoed.
            problems += _field_problems(
                [
                    {
                        **item,
                        "loc": ("body", "corrections", index, "fields", *item["loc"]),
                        # A field the lead or contact does not have, named as settings do.
                        "type": (
                            "unknown_field" if item["type"] == "extra_forbidden" else item["type"]
                        ),
                    }
                    for item in error.errors()
                ]
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
    those of `subject_ids`, or the one of `module` + `record_id`; 404 for a record or subject
    that does not exist. An email nothing is held on is a request all the same ("nothing
    held"), sealed under a key of its own that completing it destroys.

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
    nothing_held: uuid.UUID | None = None
    email_bidx = None
    record_module = None if module is None else Module(module)
    if email is not None:
        email_bidx = await _email_index(session, organization_id, email)
        found |= await repository.subjects_with(
            session, organization_id, IndexKind.EMAIL, email_bidx
        )
        if not found:
            # Nothing held on this email: the request is recorded all the same, what it says
            # sealed under a key of its own (a fresh subject id no record carries), destroyed
            # when the request is completed.
            nothing_held = uuid.uuid4()
            found.add(nothing_held)
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
    if not found or any(
        not rows for subject_id, rows in records.items() if subject_id != nothing_held
    ):
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
        package_expires_at=outcome.pop("package_expires_at", None),
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


async def _shown_to(
    session: AsyncSession, principal: Principal, shown: PrivacyRequestRead
) -> PrivacyRequestRead:
    return (await _all_shown_to(session, principal, [shown]))[0]


async def _all_shown_to(
    session: AsyncSession, principal: Principal, shown: list[PrivacyRequestRead]
) -> list[PrivacyRequestRead]:
    """Requests as a response shows them: what each says (the email, the details, the
    corrections, the verification note, the extension and rejection reasons: each sealed
    under the subjects' keys) is the data subjects' data, so a partner client shown any of it
    is one of their recipients (Art. 19): each subject whose key still opens it (an erased
    subject's copy is unreadable, so nothing of theirs is shown). One key lookup per
    response."""
    if partner_of(principal) is None:
        return shown
    subject_ids = {
        subject_id
        for item in shown
        if any(getattr(item, name) is not None for name in _SAID_FIELDS)
        for subject_id in item.subject_ids
    }
    if subject_ids:
        readable = await subjects_with_keys(
            session, principal.organization_id, sorted(subject_ids), lock=False
        )
        note_partner_disclosure(session, principal, sorted(readable))
    return shown


# What a request shows of what it says (sealed per subject: see `_read`).
_SAID_FIELDS = (
    "email",
    "details",
    "corrections",
    "verification_note",
    "extension_reason",
    "rejection_reason",
)


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
    return await _shown_to(session, principal, await read(session, request, now=now))


async def get(
    *, session: AsyncSession, principal: Principal, request_id: uuid.UUID, now: datetime
) -> PrivacyRequestRead:
    return await _shown_to(
        session,
        principal,
        await _read(session, await opened(session, principal.organization_id, request_id), now=now),
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
        overdue=None if query.overdue is None else query.overdue == "true",
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
        data=await _all_shown_to(
            session, principal, await read_many(session, principal.organization_id, rows, now=now)
        ),
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
        said = (
            await _reseal(session, request, found.subjects, {"verification_note": payload.note})
        ).said
    await session.flush()
    audit(
        session,
        principal,
        AuditAction.PRIVACY_REQUEST_VERIFIED,
        target_type=TARGET_TYPE,
        target_id=request.id,
        reason="by=staff",
    )
    return await _shown_to(
        session, principal, await _read(session, Opened(request, found.subjects, said), now=now)
    )


def _client_uuid(principal: Principal) -> uuid.UUID | None:
    return uuid.UUID(principal.client_id) if principal.client_id else None


# --- telling the requester --------------------------------------------------------------------

REQUEST_NAMES = {
    "en": {
        "access": "access to your data",
        "portability": "a copy of your data to take elsewhere",
        "rectification": "correction of your data",
        "restriction": "restriction of the use of your data",
        "erasure": "erasure of your data",
        "objection": "objection to direct marketing",
    },
    "ja": {
        "access": "保有個人データの開示",
        "portability": "データポータビリティ",
        "rectification": "個人データの訂正",
        "restriction": "個人データの利用の制限",
        "erasure": "個人データの消去",
        "objection": "ダイレクトマーケティングへの異議",
    },
}


async def _tell_requester(
    session: AsyncSession,
    request: PrivacyRequest,
    resealed: Resealed,
    *,
    kind: str,
    reason: str,
    now: datetime,
) -> bool:
    """Mail the requester why (`privacy_request_extended` / `_rejected`), sealed under the
    subject's key; noted on the request (kind, time, outbox id). False when there is no
    address to write to (filed for a record without an email, or the subject was erased)."""
    said = resealed.said
    if said is None or resealed.subject_id is None or not said.get("email"):
        return False
    organization = await session.get(Organization, request.organization_id)
    assert organization is not None
    outbox_id = await enqueue(
        session,
        organization_id=request.organization_id,
        to=said["email"],
        template=f"privacy_request_{kind}",
        context={
            "organization_name": organization.name,
            "request_type": REQUEST_NAMES.get(request.language, REQUEST_NAMES["en"])[request.type],
            "received_on": request.received_at.strftime("%Y-%m-%d"),
            "due_on": request.due_at.strftime("%Y-%m-%d"),
            "reason": reason,
        },
        language=request.language,
        subject_id=resealed.subject_id,
    )
    notices = _json_list(request.notices)
    notices.append({"kind": kind, "at": now.isoformat(), "outbox_id": str(outbox_id)})
    request.notices = json.dumps(notices)
    return True


# What completing did, told to the requester in their language.
_OUTCOMES: dict[str, dict[str, str]] = {
    "en": {
        "access": "Your data is ready to download in our privacy portal until {until}.",
        "portability": "Your data is ready to download in our privacy portal until {until}.",
        "rectification": "We have corrected your data as you asked.",
        "restriction": "We have restricted the processing of your data: we keep it, but use it "
        "for nothing else until the restriction is lifted, and we will tell you before it is.",
        "objection": "We no longer use your data for direct marketing: your consent to every "
        "marketing purpose is withdrawn.",
        "erasure": "We have erased the data we held about you. We keep only what the law "
        "requires: a record that the erasure took place, with no personal data, and a "
        "fingerprint of your email address and phone number so that they are not entered again.",
        "nothing_held": "We hold no data about you.",
        "nothing_held_erasure": "We hold no data about you. We keep a fingerprint of your email "
        "address so that it is not entered again.",
    },
    "ja": {
        "access": "お客様のデータは{until}までプライバシーポータルからダウンロードできます。",
        "portability": "お客様のデータは{until}までプライバシーポータルからダウンロードできます。",
        "rectification": "ご依頼のとおり、お客様のデータを訂正しました。",
        "restriction": "お客様のデータの利用を制限しました。データは保管しますが、制限が解除される"
        "まで他の目的には利用せず、解除の前にお知らせします。",
        "objection": "ダイレクトマーケティングへのお客様のデータの利用を停止し、マーケティング目的"
        "への同意をすべて撤回しました。",
        "erasure": "当社が保有していたお客様のデータを消去しました。法律上必要なもの（個人データを"
        "含まない消去の記録と、同じメールアドレスや電話番号が再登録されないための識別値）のみを"
        "保管します。",
        "nothing_held": "当社はお客様のデータを保有していません。",
        "nothing_held_erasure": "当社はお客様のデータを保有していません。同じメールアドレスが"
        "再登録されないよう、その識別値のみを保管します。",
    },
}


async def _tell_requester_done(
    session: AsyncSession,
    found: Opened,
    records: dict[uuid.UUID, list[repository.SubjectRow]],
    carried: Carried,
    *,
    portal_url: str,
    now: datetime,
) -> bool:
    """Mail the requester what was done (`privacy_request_completed`, GDPR Art. 12(3)); noted
    on the request. Sealed under a subject's key, or, for an erasure and for a request on
    which nothing is held (whose keys are destroyed now), under a key of the message's own
    that goes when the mail is sent. False when there is no address to write to."""
    request = found.request
    email = None if found.said is None else found.said.get("email")
    if not email:
        return False
    erasure = request.type == PrivacyRequestType.ERASURE.value
    language = request.language if request.language in _OUTCOMES else "en"
    if not records:
        outcome_key = "nothing_held_erasure" if erasure else "nothing_held"
    else:
        outcome_key = request.type
    until = carried.times.get("package_expires_at")
    outcome = _OUTCOMES[language][outcome_key].format(
        until="" if until is None else f"{datetime.fromisoformat(until):%Y-%m-%d %H:%M} UTC"
    )
    organization = await session.get(Organization, request.organization_id)
    assert organization is not None
    own_key = erasure or not records
    outbox_id = await enqueue(
        session,
        organization_id=request.organization_id,
        to=email,
        template="privacy_request_completed",
        context={
            "organization_name": organization.name,
            "request_type": REQUEST_NAMES.get(language, REQUEST_NAMES["en"])[request.type],
            "received_on": request.received_at.strftime("%Y-%m-%d"),
            "completed_on": now.strftime("%Y-%m-%d"),
            "outcome": outcome,
            "portal_link": portal_url,
        },
        language=language,
        subject_id=None if own_key else sorted(records)[0],
        own_key=own_key,
    )
    notices = _json_list(request.notices)
    notices.append({"kind": "completed", "at": now.isoformat(), "outbox_id": str(outbox_id)})
    request.notices = json.dumps(notices)
    return True


async def extend(
    *,
    session: AsyncSession,
    principal: Principal,
    request_id: uuid.UUID,
    payload: PrivacyRequestExtend,
    now: datetime,
) -> PrivacyRequestRead:
    """Extend the due date by one or two months (two in all), counted from the original due
    date; only before that date (GDPR Art. 12(3)). The reason is mailed to the requester.
    Audited."""
    found = await opened(session, principal.organization_id, request_id)
    request = found.request
    require_open(request)
    if now >= request.original_due_at:
        raise ExtensionRefused(
            "A request can be extended only within its first month, before the original due "
            f"date ({request.original_due_at:%Y-%m-%d %H:%M} UTC), which has passed."
        )
    months = request.extended_months + payload.months
    if months > MAX_EXTENSION_MONTHS:
        raise ExtensionRefused(
            f"A request can be extended by at most {MAX_EXTENSION_MONTHS} months in all; this "
            f"one is extended by {request.extended_months} already."
        )
    request.extended_months = months
    request.due_at = add_months(request.original_due_at, months)
    request.extended_at = now
    resealed = await _reseal(session, request, found.subjects, {"extension_reason": payload.reason})
    mailed = await _tell_requester(
        session, request, resealed, kind="extended", reason=payload.reason, now=now
    )
    await session.flush()
    audit(
        session,
        principal,
        AuditAction.PRIVACY_REQUEST_EXTENDED,
        target_type=TARGET_TYPE,
        target_id=request.id,
        reason=f"months={payload.months};mailed={str(mailed).lower()}",
    )
    return await _shown_to(
        session,
        principal,
        await _read(session, Opened(request, found.subjects, resealed.said), now=now),
    )


async def reject(
    *,
    session: AsyncSession,
    principal: Principal,
    request_id: uuid.UUID,
    payload: PrivacyRequestReject,
    now: datetime,
) -> PrivacyRequestRead:
    """Close the request without carrying it out (manifestly unfounded or excessive, the
    identity could not be confirmed, ...). The reason is kept sealed and mailed to the
    requester. Audited."""
    found = await opened(session, principal.organization_id, request_id)
    request = found.request
    require_open(request)
    _close(request, principal, PrivacyRequestStatus.REJECTED, now)
    resealed = await _reseal(session, request, found.subjects, {"rejection_reason": payload.reason})
    mailed = await _tell_requester(
        session, request, resealed, kind="rejected", reason=payload.reason, now=now
    )
    await session.flush()
    audit(
        session,
        principal,
        AuditAction.PRIVACY_REQUEST_REJECTED,
        target_type=TARGET_TYPE,
        target_id=request.id,
        reason=f"mailed={str(mailed).lower()}",
    )
    return await _shown_to(
        session,
        principal,
        await _read(session, Opened(request, found.subjects, resealed.said), now=now),
    )


def _close(
    request: PrivacyRequest, principal: Principal, status: PrivacyRequestStatus, now: datetime
) -> None:
    actor = Actor.of(principal)
    request.status = status.value
    if status is PrivacyRequestStatus.COMPLETED:
        request.completed_at = now
    else:
        request.rejected_at = now
    request.closed_by_type, request.closed_by_id = actor.type, actor.id


# --- carrying it out ----------------------------------------------------------------------------


@dataclass
class Carried:
    """What completing did: counts and receipt ids (the request's `outcome`)."""

    counts: dict[str, int]
    receipt_ids: list[str]
    times: dict[str, str] = field(default_factory=dict)


async def _rectify(
    session: AsyncSession,
    principal: Principal,
    found: Opened,
    records: dict[uuid.UUID, list[repository.SubjectRow]],
) -> Carried:
    """Apply the corrections through the records' ordinary update, as the completing
    principal (history, audit, blocklist, processing lock, sharing and permissions all
    apply); any refusal refuses the whole completion."""
    said = found.said
    asked = (said or {}).get("corrections") or []
    if asked and said is None:
        raise Conflict("The corrections can no longer be read: the data subject was erased.")
    checked = _checked_corrections(asked, records)
    for correction in checked:
        module = Module(correction["module"])
        await _SERVICES[module].update(
            session=session,
            principal=principal,
            record_id=uuid.UUID(correction["record_id"]),
            payload=_UPDATES[module].model_validate(correction["fields"]),
            if_match=None,
        )
    return Carried({"corrections_applied": len(checked)}, [])


async def _restrict(
    session: AsyncSession,
    principal: Principal,
    request: PrivacyRequest,
    records: dict[uuid.UUID, list[repository.SubjectRow]],
    now: datetime,
) -> Carried:
    """GDPR Art. 18: the subjects' records are kept but not processed (the one lock)."""
    actor = Actor.of(principal)
    for subject_id in records:
        await restriction.restrict_subject(
            session,
            request.organization_id,
            subject_id,
            reason="privacy_request",
            request_id=request.id,
            actor=actor,
            now=now,
        )
    return Carried({"subjects_restricted": len(records)}, [])


async def _person_to_record_on(
    session: AsyncSession, organization_id: uuid.UUID, rows: list[repository.SubjectRow]
) -> Subject | None:
    """The live record a subject's consent event is recorded on: the contact a lead became
    before the lead."""
    for module in (Module.CONTACTS, Module.LEADS):
        for row in rows:
            if row.module is not module or row.binned:
                continue
            records = _SERVICES[module].repository_class(session, organization_id)
            record = await records.get(row.id)
            if record is not None and not record.erased:
                return Subject(organization_id, module, record, records)
    return None


async def _object(
    session: AsyncSession,
    principal: Principal,
    request: PrivacyRequest,
    records: dict[uuid.UUID, list[repository.SubjectRow]],
    now: datetime,
) -> Carried:
    """GDPR Art. 21(2): consent to every direct-marketing purpose is withdrawn (a `withdrawn`
    event in the ledger, on the channel the request came through), unless it is already."""
    organization_id = request.organization_id
    marketing = [
        purpose
        for purpose in await PurposeRepository(session, organization_id).current_all()
        if purpose.marketing
    ]
    channel = ConsentChannel.PORTAL if request.channel == "portal" else ConsentChannel.STAFF
    withdrawn = 0
    events = ConsentEventRepository(session, organization_id)
    for subject_id, rows in records.items():
        subject = await _person_to_record_on(session, organization_id, rows)
        if subject is None:
            continue
        latest = {event.purpose_key: event.status for event in await events.of_subject(subject_id)}
        for purpose in marketing:
            if latest.get(purpose.key) == ConsentStatus.WITHDRAWN.value:
                continue
            await append_event(
                session,
                subject,
                actor=Actor.of(principal),
                purpose=purpose,
                status=ConsentStatus.WITHDRAWN,
                channel=channel,
                notice_version=purpose.notice_version,
                now=now,
                evidence={"privacy_request_id": str(request.id)},
                recorded_by_id=principal.user_id,
                recorded_by_client_id=principal.client_id,
            )
            withdrawn += 1
    return Carried({"consents_withdrawn": withdrawn, "marketing_purposes": len(marketing)}, [])


async def _erase(
    session: AsyncSession,
    principal: Principal,
    request: PrivacyRequest,
    records: dict[uuid.UUID, list[repository.SubjectRow]],
    now: datetime,
) -> Carried:
    """GDPR Art. 17, through the one erasure: each subject's keys destroyed (which makes
    this request's sealed copy of what they said unreadable too), one receipt each."""
    receipt_ids = []
    for subject_id in records:
        erased = await erase_subject(
            session, request.organization_id, subject_id, actor=Actor.of(principal), now=now
        )
        stored = await repository.receipt(session, request.organization_id, erased.id)
        assert stored is not None
        stored.request_id = request.id
        receipt_ids.append(str(erased.id))
    await session.flush()
    return Carried({"subjects_erased": len(records)}, receipt_ids)


async def _package(
    session: AsyncSession,
    request: PrivacyRequest,
    records: dict[uuid.UUID, list[repository.SubjectRow]],
    now: datetime,
    ttl: timedelta,
) -> Carried:
    """GDPR Art. 15 and 20: the subjects' own, complete package, stored sealed under each
    subject's key until it expires; downloaded through `GET /{id}/package`."""
    if not records:
        return Carried({"package_subjects": 0}, [])
    subject_ids = list(records)
    package = await build_package(
        session, request.organization_id, subject_ids, principal=None, now=now
    )
    stored = await store_package(
        session,
        request.organization_id,
        request_id=request.id,
        subject_ids=subject_ids,
        package=package,
        now=now,
        ttl=ttl,
    )
    return Carried(
        {"package_subjects": len(subject_ids)},
        [],
        {"package_expires_at": stored.expires_at.isoformat()},
    )


ART_19_EVENTS = {
    PrivacyRequestType.RECTIFICATION: "privacy.rectified",
    PrivacyRequestType.ERASURE: "privacy.erased",
    PrivacyRequestType.RESTRICTION: "privacy.restricted",
}


async def _tell_recipients(
    session: AsyncSession,
    principal: Principal,
    request: PrivacyRequest,
    records: dict[uuid.UUID, list[repository.SubjectRow]],
    shown_to: list[uuid.UUID],
    delivered_to: list[uuid.UUID],
    now: datetime,
) -> list[dict[str, str]]:
    """GDPR Art. 19: a `privacy.*` webhook event per subject (ids only) to every endpoint
    subscribed to it, and the partner clients that received the subjects' data (`shown_to`,
    from the disclosure policy's record: reads, lists, exports, packages) or that the audit
    log shows writing their records, listed for staff to tell. Who was told is kept on the
    request and audited."""
    event_type = ART_19_EVENTS[PrivacyRequestType(request.type)]
    told: list[dict[str, str]] = []
    endpoints: set[uuid.UUID] = set()
    for subject_id, rows in records.items():
        data: dict[str, object] = {
            "request_id": str(request.id),
            "organization_id": str(request.organization_id),
            "subject_id": str(subject_id),
            "records": [{"module": row.module.value, "id": str(row.id)} for row in rows],
        }
        endpoints.update(
            await queue_privacy_event(
                session,
                request.organization_id,
                type_=event_type,
                request_id=request.id,
                data=data,
                occurred_at=now,
            )
        )
    at = now.isoformat()
    told += [
        {"kind": "webhook_endpoint", "id": str(id_), "at": at, "how": "webhook_queued"}
        for id_ in sorted(endpoints)
    ]
    # Endpoints that received the subjects' data but take no `privacy.*` event of this kind:
    # listed for staff to tell.
    told += [
        {"kind": "webhook_endpoint", "id": str(id_), "at": at, "how": "received_data"}
        for id_ in delivered_to
        if id_ not in endpoints
    ]
    record_ids = [row.id for rows in records.values() for row in rows]
    clients = await PrivacyRequestRepository(session, request.organization_id).partner_clients_of(
        record_ids
    )
    told += [
        {"kind": "oauth_client", "id": str(id_), "at": at, "how": "received_data"}
        for id_ in shown_to
    ]
    told += [
        {"kind": "oauth_client", "id": str(id_), "at": at, "how": "found_in_audit_log"}
        for id_ in clients
        if id_ not in shown_to
    ]
    if told:
        audit(
            session,
            principal,
            AuditAction.PRIVACY_RECIPIENTS_TOLD,
            target_type=TARGET_TYPE,
            target_id=request.id,
            fields=sorted({item["kind"] for item in told}),
            reason=f"event={event_type}",
        )
    return told


async def _held_since_filing(
    session: AsyncSession, found: Opened
) -> dict[uuid.UUID, list[repository.SubjectRow]]:
    """A request filed by email covers every lead and contact with that email when it is
    carried out, not only those there when it was filed: one created since (found by the same
    blind index) becomes a subject of the request, what the request says sealed again under
    its key. Returns the new subjects' records."""
    request = found.request
    if request.email_bidx is None:
        return {}
    known = {row.subject_id for row in found.subjects}
    subjects = await repository.subjects_with(
        session, request.organization_id, IndexKind.EMAIL, request.email_bidx
    )
    records = await _subject_records(session, request.organization_id, sorted(subjects - known))
    records = {subject_id: rows for subject_id, rows in records.items() if rows}
    if not records:
        return {}
    requests = PrivacyRequestRepository(session, request.organization_id)
    said = found.said if found.said is not None else {"email": None, "details": None}
    for subject_id in sorted(records):
        row = PrivacyRequestSubject(
            request_id=request.id,
            subject_id=subject_id,
            organization_id=request.organization_id,
            sealed=await _seal(session, request, subject_id, said),
        )
        requests.add_subject(row)
        found.subjects.append(row)
    await session.flush()
    return records


async def _forget_nothing_held(
    session: AsyncSession,
    request: PrivacyRequest,
    rows: list[PrivacyRequestSubject],
    now: datetime,
    *,
    blocklist: bool,
) -> None:
    """A request filed on an email nothing was held on: the keys of its subjects that hold no
    record are destroyed, so what it said (the email, the details) under a key of its own is
    unreadable from now on. With `blocklist` (nothing is held now either), an erasure
    blocklists the email's blind index (no value); otherwise the erasure of what was found
    since did."""
    if (
        blocklist
        and request.type == PrivacyRequestType.ERASURE.value
        and request.email_bidx is not None
    ):
        await add_entries(
            session,
            request.organization_id,
            [(IndexKind.EMAIL.value, request.email_bidx)],
            now=now,
            receipt_id=None,
        )
    keyring = keyring_for(session, request.organization_id)
    for row in rows:
        if not await repository.subject_rows(session, request.organization_id, row.subject_id):
            await keyring.destroy_subject_keys(row.subject_id)


async def complete(
    *,
    session: AsyncSession,
    principal: Principal,
    request_id: uuid.UUID,
    now: datetime,
    package_ttl: timedelta,
    portal_url: str,
) -> PrivacyRequestRead:
    """Carry the request out and close it, in one transaction: a refusal on the way (a bad
    correction, a restricted record) changes nothing. 409 `request-unverified` until the
    requester's identity is confirmed. The requester is mailed what was done, with a link to
    the portal (`portal_url`). Audited."""
    found = await opened(session, principal.organization_id, request_id)
    request = found.request
    require_open(request)
    if request.status == PrivacyRequestStatus.AWAITING_VERIFICATION.value:
        raise RequestUnverified(
            "The requester's identity is not verified yet: confirm it (`POST "
            f"/v1/privacy/requests/{request.id}/verify`) before carrying the request out."
        )
    request_type = PrivacyRequestType(request.type)
    records = await _subject_records(
        session, request.organization_id, [row.subject_id for row in found.subjects]
    )
    # Erased meanwhile: nothing of theirs is left to carry a request out on.
    records = {subject_id: rows for subject_id, rows in records.items() if rows}
    nothing_held_at_filing = not records
    records |= await _held_since_filing(session, found)
    shown_to: list[uuid.UUID] = []
    delivered_to: list[uuid.UUID] = []
    if request_type in ART_19_EVENTS:
        # The partners shown these subjects' data, read once their keys are held (a
        # disclosure committing meanwhile is listed, or refused: records/disclosure.py), and
        # before an erasure deletes the rows.
        await hold_subjects(session, request.organization_id, sorted(records))
        shown_to = await partner_clients_shown(session, request.organization_id, sorted(records))
        delivered_to = await endpoints_that_received(
            session, request.organization_id, sorted(records)
        )
    if request_type is PrivacyRequestType.RECTIFICATION:
        carried = await _rectify(session, principal, found, records)
    elif request_type is PrivacyRequestType.RESTRICTION:
        carried = await _restrict(session, principal, request, records, now)
    elif request_type is PrivacyRequestType.OBJECTION:
        carried = await _object(session, principal, request, records, now)
    elif request_type is PrivacyRequestType.ERASURE:
        carried = await _erase(session, principal, request, records, now)
    else:
        carried = await _package(session, request, records, now, package_ttl)
    if request_type in ART_19_EVENTS:
        request.recipients = json.dumps(
            await _tell_recipients(
                session, principal, request, records, shown_to, delivered_to, now
            )
        )
    outcome = {**carried.counts, **carried.times, "receipt_ids": carried.receipt_ids}
    if not records:
        outcome["records_held"] = 0
    mailed = await _tell_requester_done(
        session, found, records, carried, portal_url=portal_url, now=now
    )
    if nothing_held_at_filing:
        await _forget_nothing_held(session, request, found.subjects, now, blocklist=not records)
    request.outcome = json.dumps(outcome)
    _close(request, principal, PrivacyRequestStatus.COMPLETED, now)
    await session.flush()
    audit(
        session,
        principal,
        AuditAction.PRIVACY_REQUEST_COMPLETED,
        target_type=TARGET_TYPE,
        target_id=request.id,
        reason=f"type={request_type.value};mailed={str(mailed).lower()}",
    )
    return await _shown_to(session, principal, await read(session, request, now=now))


async def receipt(
    *, session: AsyncSession, principal: Principal, request_id: uuid.UUID
) -> PrivacyRequestReceipt:
    """The erasure receipts of a completed erasure request (404 for any other request)."""
    request = await PrivacyRequestRepository(session, principal.organization_id).get(request_id)
    if (
        request is None
        or request.type != PrivacyRequestType.ERASURE.value
        or request.status != PrivacyRequestStatus.COMPLETED.value
    ):
        raise NotFound("No erasure receipt: no such completed erasure request.")
    receipt_ids = _json_dict(request.outcome).get("receipt_ids", [])
    return PrivacyRequestReceipt(
        request_id=request.id,
        receipts=[
            await get_receipt(session=session, principal=principal, receipt_id=uuid.UUID(id_))
            for id_ in receipt_ids
        ],
    )


async def package(
    *,
    session: AsyncSession,
    principal: Principal,
    request_id: uuid.UUID,
    fmt: PackageFormat,
    now: datetime,
) -> RenderedPackage:
    """The package of a completed access or portability request, as the caller's channel
    allows (the one disclosure policy; sensitive reveals audited), and the download audited
    (format and channel, never a value). 404 when there is none or it expired."""
    request = await PrivacyRequestRepository(session, principal.organization_id).get(request_id)
    if (
        request is None
        or request.type
        not in (PrivacyRequestType.ACCESS.value, PrivacyRequestType.PORTABILITY.value)
        or request.status != PrivacyRequestStatus.COMPLETED.value
    ):
        raise NotFound("No package: no such completed access or portability request.")
    stored = await load_package(session, principal.organization_id, request.id, now=now)
    if stored is None:
        raise NotFound(
            "This request's package has expired (or its subjects were erased); complete a new "
            "request to build another."
        )
    shown = await disclose_package(session, stored, principal)
    rendered = render(shown, fmt)
    audit(
        session,
        principal,
        AuditAction.PACKAGE_DISCLOSED,
        target_type=TARGET_TYPE,
        target_id=request.id,
        reason=f"format={fmt.value};channel={shown.channel}",
    )
    return rendered
