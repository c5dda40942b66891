"""What a signed-in data subject sees and does in the portal: their records, their consent
per purpose (granting and withdrawing alike one button), and the consent requests waiting
for their answer.

The person is every data subject with a lead or contact of the proved email address (the
address's blind index; `privacy/repository.subjects_with`), and they see those subjects'
records complete: it is their own data, so nothing is masked or withheld from them. Consent
is recorded in the one ledger (`consent/ledger.py`), channel `portal`, with the visitor's IP
and user agent as evidence sealed under the subject's key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import record as audit
from crm_service.consent import requests as consent_requests
from crm_service.consent.ledger import SERVICES, Subject, append_event, unknown_purpose
from crm_service.consent.models import (
    ConsentChannel,
    ConsentEvent,
    ConsentPurpose,
    ConsentStatus,
    RequestStatus,
)
from crm_service.consent.pages import labels
from crm_service.consent.repository import (
    ConsentEventRepository,
    ConsentRequestRepository,
    PurposeRepository,
)
from crm_service.errors import FieldProblem, NotFound, ValidationFailed
from crm_service.kit.modules import Module
from crm_service.portal.signin import SignedIn, subject_actor, subjects_of
from crm_service.privacy import requests as privacy_requests
from crm_service.privacy.models import PrivacyRequest, PrivacyRequestType
from crm_service.privacy.package import RenderedPackage, build_package
from crm_service.privacy.package import render as render_package
from crm_service.records.contacts.schemas import ContactUpdate
from crm_service.records.disclosure import DisclosurePolicy, FieldDisclosure
from crm_service.records.fields import CATALOG
from crm_service.records.leads.schemas import LeadUpdate
from crm_service.records.paging import MAX_LIMIT, PageRequest

PERSON_MODULES = (Module.CONTACTS, Module.LEADS)
UPDATE_SCHEMAS: dict[Module, Any] = {Module.LEADS: LeadUpdate, Module.CONTACTS: ContactUpdate}
# What the portal lets a person choose for a purpose: give or take back, nothing else.
CHOICES = (ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN)
OPEN_REQUESTS = (RequestStatus.PENDING.value, RequestStatus.NO_RESPONSE.value)


@dataclass(frozen=True)
class ShownRecord:
    """One of the person's leads or contacts, every field with its label."""

    module: Module
    record: Any
    fields: list[tuple[str, str | None]]
    source: str
    legal_basis: str | None


@dataclass(frozen=True)
class PurposeChoice:
    purpose: ConsentPurpose
    status: str | None  # the latest event's, None when never asked


@dataclass(frozen=True)
class OpenRequest:
    id: uuid.UUID
    purposes: list[ConsentPurpose]
    deadline: datetime


@dataclass
class YourData:
    records: list[ShownRecord] = field(default_factory=list)
    purposes: list[PurposeChoice] = field(default_factory=list)
    requests: list[OpenRequest] = field(default_factory=list)


def _shown(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


async def records_of(
    session: AsyncSession, organization_id: uuid.UUID, subjects: list[uuid.UUID]
) -> list[tuple[Module, Any, Any]]:
    """The live, unerased leads and contacts of `subjects`, with their repositories
    (contacts first: a converted lead's contact is where its subject lives on)."""
    found: list[tuple[Module, Any, Any]] = []
    for module in PERSON_MODULES:
        repository = SERVICES[module].repository_class(session, organization_id)
        for subject_id in subjects:
            page = await repository.page(
                filters={"subject_id": subject_id}, request=PageRequest(limit=MAX_LIMIT)
            )
            found.extend((module, record, repository) for record in page.items)
    return found


def _present(module: Module, record: Any, language: str) -> ShownRecord:
    # The person's own data: the disclosure policy's decision for them is "everything".
    DisclosurePolicy.stamp(record, FieldDisclosure())
    names = labels(module, language)
    source = record.source_channel + (f" ({record.source_form})" if record.source_form else "")
    return ShownRecord(
        module=module,
        record=record,
        fields=[
            (names.get(spec.name, spec.label), _shown(getattr(record, spec.name)))
            for spec in CATALOG[module]
        ],
        source=source,
        legal_basis=record.legal_basis,
    )


async def _events(
    session: AsyncSession, organization_id: uuid.UUID, subjects: list[uuid.UUID]
) -> list[ConsentEvent]:
    repository = ConsentEventRepository(session, organization_id)
    events = [event for subject in subjects for event in await repository.of_subject(subject)]
    return sorted(events, key=lambda event: (event.recorded_at, str(event.id)))


async def your_data(session: AsyncSession, *, visit: SignedIn, language: str) -> YourData:
    organization_id = visit.organization_id
    subjects = await subjects_of(session, organization_id, visit.email_bidx)
    shown = YourData()
    for module, record, _ in await records_of(session, organization_id, subjects):
        shown.records.append(_present(module, record, language))
    latest = {
        event.purpose_key: event.status
        for event in await _events(session, organization_id, subjects)
    }
    for purpose in await PurposeRepository(session, organization_id).current_all():
        shown.purposes.append(PurposeChoice(purpose, latest.get(purpose.key)))
    requests = ConsentRequestRepository(session, organization_id)
    for subject_id in subjects:
        for request in await requests.open_of_subject(subject_id):
            purposes = await consent_requests.purposes_of(session, request)
            shown.requests.append(OpenRequest(request.id, purposes, request.deadline))
    shown.requests.sort(key=lambda request: request.deadline)
    return shown


def _evidence(
    visit: SignedIn, client_ip: str | None, user_agent: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "ip": client_ip,
        "user_agent": (user_agent or "")[:500],
        "recorded_at": now.isoformat(),
        "portal_session": str(visit.session_id),
    }


async def change_consent(
    session: AsyncSession,
    *,
    visit: SignedIn,
    purpose_key: str,
    status: str,
    client_ip: str | None,
    user_agent: str | None,
    now: datetime,
) -> None:
    """Grant or withdraw one purpose for every subject of the address, under the purpose's
    current notice."""
    organization_id = visit.organization_id
    if status not in {choice.value for choice in CHOICES}:
        raise ValidationFailed(
            "`status` must be granted or withdrawn.",
            errors=[FieldProblem(field="body.status", rule="enum", message="granted or withdrawn")],
        )
    purpose = await PurposeRepository(session, organization_id).current(purpose_key[:64])
    if purpose is None or purpose.superseded_at is not None:
        raise unknown_purpose("purpose")
    subjects = await subjects_of(session, organization_id, visit.email_bidx)
    recorded: set[uuid.UUID] = set()
    for module, record, repository in await records_of(session, organization_id, subjects):
        if record.subject_id in recorded:
            continue  # one event per subject, on its contact when it has one
        recorded.add(record.subject_id)
        await append_event(
            session,
            Subject(organization_id, module, record, repository),
            actor=subject_actor(organization_id, client_ip),
            purpose=purpose,
            status=ConsentStatus(status),
            channel=ConsentChannel.PORTAL,
            notice_version=purpose.notice_version,
            now=now,
            evidence=_evidence(visit, client_ip, user_agent, now),
        )


async def answer_request(
    session: AsyncSession,
    *,
    visit: SignedIn,
    request_id: uuid.UUID,
    answers: dict[str, str],
    client_ip: str | None,
    user_agent: str | None,
    now: datetime,
) -> bool:
    """Answer one of the person's open consent requests (as the consent page does, channel
    portal); False when it is not theirs or no longer open."""
    organization_id = visit.organization_id
    request = await ConsentRequestRepository(session, organization_id).get(request_id)
    subjects = await subjects_of(session, organization_id, visit.email_bidx)
    if request is None or request.subject_id not in subjects or request.status not in OPEN_REQUESTS:
        return False
    return await consent_requests.record_answer(
        session,
        request,
        await consent_requests.purposes_of(session, request),
        answers={
            key: ConsentStatus.GRANTED if value == "granted" else ConsentStatus.REFUSED
            for key, value in answers.items()
        },
        channel=ConsentChannel.PORTAL,
        actor=subject_actor(organization_id, client_ip),
        now=now,
        client_ip=client_ip,
        user_agent=user_agent,
    )


# --- downloading and requests -------------------------------------------------------------


async def download(
    session: AsyncSession, *, visit: SignedIn, fmt: str, client_ip: str | None, now: datetime
) -> RenderedPackage:
    """The person's own package (everything, nothing masked or withheld) as JSON or as a zip
    of CSV files; audited as data leaving the service."""
    organization_id = visit.organization_id
    subjects = await subjects_of(session, organization_id, visit.email_bidx)
    if not subjects:
        raise NotFound("We hold no data for this address.")
    package = await build_package(session, organization_id, subjects, principal=None, now=now)
    rendered = render_package(package, fmt)
    audit(
        session,
        subject_actor(organization_id, client_ip),
        AuditAction.PORTAL_DATA_DOWNLOADED,
        target_type="portal_session",
        target_id=visit.session_id,
        reason=f"format={fmt}",
    )
    return rendered


# What a person may ask to correct: the fields of a lead's or contact's update, less those
# that are the organization's to set.
NOT_THE_PERSONS = frozenset({"owner_id", "account_id", "legal_basis", "status"})
CORRECTION_PREFIX = "field."


def correctable(module: Module) -> list[str]:
    names = UPDATE_SCHEMAS[module].model_fields
    return [
        spec.name
        for spec in CATALOG[module]
        if spec.name in names and spec.name not in NOT_THE_PERSONS
    ]


async def correction_form(
    session: AsyncSession, *, visit: SignedIn, language: str
) -> list[tuple[ShownRecord, list[tuple[str, str, str | None]]]]:
    """Each record with its correctable fields: (input name, label, current value)."""
    organization_id = visit.organization_id
    subjects = await subjects_of(session, organization_id, visit.email_bidx)
    shown = []
    for module, record, _ in await records_of(session, organization_id, subjects):
        names = labels(module, language)
        inputs = [
            (
                f"{CORRECTION_PREFIX}{module.value}.{record.id}.{name}",
                names.get(name, name),
                _shown(getattr(record, name)),
            )
            for name in correctable(module)
        ]
        shown.append((_present(module, record, language), inputs))
    return shown


async def _corrections(
    session: AsyncSession, visit: SignedIn, sent: dict[str, str]
) -> list[dict[str, Any]]:
    """The fields the person changed, per record of theirs (unchanged ones are no
    correction); a record that is not theirs is left to `file_request` to refuse."""
    subjects = await subjects_of(session, visit.organization_id, visit.email_bidx)
    current = {
        (module.value, str(record.id)): record
        for module, record, _ in await records_of(session, visit.organization_id, subjects)
    }
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    for name, value in sent.items():
        module, _, rest = name.removeprefix(CORRECTION_PREFIX).partition(".")
        record_id, _, field_name = rest.partition(".")
        record = current.get((module, record_id))
        was = None if record is None else _shown(getattr(record, field_name, None))
        if record is not None and (value.strip() or None) == was:
            continue
        wanted.setdefault((module, record_id), {})[field_name] = value.strip() or None
    return [
        {"module": module, "record_id": record_id, "fields": fields}
        for (module, record_id), fields in wanted.items()
    ]


async def file_request(
    session: AsyncSession,
    *,
    visit: SignedIn,
    type: str,  # noqa: A002 - the request's type, as the form names it
    details: str | None,
    corrections: dict[str, str],
    language: str,
    client_ip: str | None,
    now: datetime,
) -> PrivacyRequest:
    """File a request of any type in the person's name; proved by the code, so it is in
    progress at once (`verified_by="portal"`)."""
    if type not in {kind.value for kind in PrivacyRequestType}:
        raise ValidationFailed(
            "`type` is no kind of privacy request.",
            errors=[FieldProblem(field="body.type", rule="enum", message="no such request type")],
        )
    changes = (
        await _corrections(session, visit, corrections)
        if type == PrivacyRequestType.RECTIFICATION.value
        else []
    )
    if type == PrivacyRequestType.RECTIFICATION.value and not changes and not details:
        raise ValidationFailed(
            "Say what to correct: change a field, or describe it.",
            errors=[FieldProblem(field="body.details", rule="missing", message="a correction")],
        )
    return await privacy_requests.file_request(
        session,
        visit.organization_id,
        type=type,
        email=visit.email,
        received_at=now,
        details=details,
        actor=subject_actor(visit.organization_id, client_ip),
        verified_by="portal",
        corrections=changes or None,
        language=language,
        now=now,
    )


async def requests_of(session: AsyncSession, *, visit: SignedIn) -> list[PrivacyRequest]:
    return await privacy_requests.list_for_email(session, visit.organization_id, visit.email)
