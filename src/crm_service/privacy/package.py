"""Access and portability packages (GDPR Art. 15 and 20): everything the CRM holds on data
subjects, as one JSON document or as a zip of one CSV file per kind.

:func:`build_package` gathers, per data subject, every lead and contact (live and in the
recycle bin; an erased one says so and holds no values) with all its fields, where each came
from, every setting of its legal basis, its record history with old and new values, the
subject's consent events (evidence opened) and consent requests. What a staff member sees of
the values the one disclosure policy decides, on their channel (`screen` for a signed-in
user, `api` for a partner client): sensitive fields masked without `view_sensitive`,
classifications the compliance settings withhold left out, and the reveal audited like any
other response. The subject's own package (`principal=None`) is complete: nothing is masked
or withheld from the person the data is about.

:func:`render` turns a package into bytes: JSON, or a zip of CSV files (cells a spreadsheet
would read as a formula neutralised by the export's own rule) with a README.txt saying what
each file holds.

While a package waits to be downloaded (:func:`store_package`, :func:`load_package`) each
subject's part is sealed under that subject's own data key, so erasing any one of them (which
destroys the key, and whose eraser deletes the part) makes their part unreadable. Parts expire
after `CRM_PRIVACY_PACKAGE_TTL_HOURS`: a read after that deletes them, and so does the
worker's `purge_packages` job. A stored package is the subject's own, complete one; staff
see it through :func:`disclose_package`, the same policy applied to the values it holds.

Not in the package yet: the privacy requests the subject filed (they are stored elsewhere);
the package says so in `not_included`.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import uuid
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.history import HistoryItem, read_history
from crm_service.audit.service import record as audit
from crm_service.config import Settings
from crm_service.consent.ledger import read_events
from crm_service.consent.models import ConsentRequest
from crm_service.consent.repository import ConsentEventRepository, PurposeRepository
from crm_service.crypto.codec import (
    FieldContext,
    StoredValueIntegrityError,
    open_value,
    seal,
    sealed_key_id,
)
from crm_service.crypto.service import key_generation, keyring_for
from crm_service.errors import Forbidden, NotFound
from crm_service.kit.modules import Module
from crm_service.privacy import package_repository as repository
from crm_service.privacy.models import PrivacyRequest
from crm_service.privacy.package_models import StoredPackagePart
from crm_service.records.contacts.repository import ContactRepository
from crm_service.records.disclosure import (
    DisclosurePolicy,
    FieldDisclosure,
    Shown,
    View,
    channel_of,
    disclosure_of,
)
from crm_service.records.export import neutralise
from crm_service.records.fields import field_names
from crm_service.records.leads.repository import LeadRepository
from crm_service.records.models import LegalBasisEntry
from crm_service.records.repository import LegalBasisRepository, RecordRepository
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal

# The person modules, in the order their records appear.
PERSON_REPOSITORIES: dict[Module, type[RecordRepository[Any]]] = {
    Module.LEADS: LeadRepository,
    Module.CONTACTS: ContactRepository,
}
# Columns of a lead or contact beside its classifiable fields (which follow them).
_RECORD_COLUMNS: dict[Module, tuple[str, ...]] = {
    Module.LEADS: ("status", "converted_at", "converted_contact_id", "converted_account_id"),
    Module.CONTACTS: ("account_id",),
}
# What the package does not hold yet, and why it is named: the subject is told.
NOT_INCLUDED: tuple[str, ...] = ()
_HISTORY_PAGE = 500


class PackageFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


@dataclass(frozen=True)
class Kind:
    """One kind of data in a package: its key in the JSON document, its CSV file."""

    name: str
    filename: str
    description: str


KINDS: tuple[Kind, ...] = (
    Kind(
        "records_leads",
        "records_leads.csv",
        "Every lead held on you, live or in the recycle bin, with all its fields. A lead "
        "whose data was erased says so and holds no values.",
    ),
    Kind(
        "records_contacts",
        "records_contacts.csv",
        "Every contact held on you, live or in the recycle bin, with all its fields. A "
        "contact whose data was erased says so and holds no values.",
    ),
    Kind(
        "data_sources",
        "data_sources.csv",
        "Where each lead and contact came from: the channel (manual, api, import, webform, "
        "integration), the partner client, the import batch, the web form's name and the "
        "submitter's IP address.",
    ),
    Kind(
        "legal_basis",
        "legal_basis.csv",
        "Every setting of each record's legal basis of processing, newest first, with the "
        "legitimate-interest assessment where one was made.",
    ),
    Kind(
        "consent_events",
        "consent_events.csv",
        "Every consent given, withdrawn or refused, per purpose: channel, notice version, "
        "time, and the evidence kept (such as IP address and user agent).",
    ),
    Kind(
        "consent_requests",
        "consent_requests.csv",
        "Every request for your consent: the purposes asked for, channel, deadline and "
        "whether and when it was answered.",
    ),
    Kind(
        "privacy_requests",
        "privacy_requests.csv",
        "Every request about your personal data (access, portability, rectification, "
        "restriction, erasure, objection): when it was received, when it is due, whether it "
        "was extended, and when it was completed or rejected.",
    ),
    Kind(
        "history",
        "history.csv",
        "Each change of each lead and contact: when, who (a user or partner client id), the "
        "action, and per field the old and the new value.",
    ),
)


@dataclass
class SubjectPart:
    """What the package holds on one data subject; every value is JSON-ready text, number,
    boolean or null (ids and times as text)."""

    subject_id: uuid.UUID
    erased: bool = False  # the subject was erased: their records hold no values
    records: list[dict[str, Any]] = field(default_factory=list)
    data_sources: list[dict[str, Any]] = field(default_factory=list)
    legal_basis: list[dict[str, Any]] = field(default_factory=list)
    consent_events: list[dict[str, Any]] = field(default_factory=list)
    consent_requests: list[dict[str, Any]] = field(default_factory=list)
    privacy_requests: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "subject_id": str(self.subject_id),
            "erased": self.erased,
            "records": self.records,
            "data_sources": self.data_sources,
            "legal_basis": self.legal_basis,
            "consent_events": self.consent_events,
            "consent_requests": self.consent_requests,
            "privacy_requests": self.privacy_requests,
            "history": self.history,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubjectPart:
        return cls(
            subject_id=uuid.UUID(data["subject_id"]),
            erased=bool(data["erased"]),
            records=list(data["records"]),
            data_sources=list(data["data_sources"]),
            legal_basis=list(data["legal_basis"]),
            consent_events=list(data["consent_events"]),
            consent_requests=list(data["consent_requests"]),
            # Packages stored before privacy requests were part of them have none.
            privacy_requests=list(data.get("privacy_requests", [])),
            history=list(data["history"]),
        )


@dataclass
class SubjectPackage:
    """Everything held on some data subjects, as one caller may see it.

    `channel` is the disclosure channel of the staff member or partner it was built for, None
    for the subject's own package; `disclosure` names, per module, the fields masked and
    withheld on that channel (empty for the subject's own); `complete` says nothing was."""

    organization_id: uuid.UUID
    generated_at: datetime
    channel: str | None
    disclosure: dict[str, dict[str, list[str]]]
    parts: list[SubjectPart]
    not_included: tuple[str, ...] = NOT_INCLUDED

    @property
    def subject_ids(self) -> list[uuid.UUID]:
        return [part.subject_id for part in self.parts]

    @property
    def complete(self) -> bool:
        return not any(names for module in self.disclosure.values() for names in module.values())

    def summary(self) -> dict[str, Any]:
        """What the package is, without a value of the subjects'."""
        return {
            "organization_id": str(self.organization_id),
            "subject_ids": [str(id_) for id_ in self.subject_ids],
            "generated_at": self.generated_at.isoformat(),
            "channel": self.channel,
            "complete": self.complete,
            "disclosure": self.disclosure,
            "not_included": list(self.not_included),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "package": {
                **self.summary(),
                "kinds": {kind.name: kind.description for kind in KINDS},
            },
            "subjects": [part.to_json() for part in self.parts],
        }


@dataclass(frozen=True)
class RenderedPackage:
    body: bytes
    media_type: str
    filename: str


@dataclass(frozen=True)
class StoredPackage:
    """A package waiting to be downloaded: whose parts, until when."""

    request_id: uuid.UUID
    subject_ids: tuple[uuid.UUID, ...]
    stored_at: datetime
    expires_at: datetime


def package_ttl(settings: Settings) -> timedelta:
    """How long a stored package waits (`CRM_PRIVACY_PACKAGE_TTL_HOURS`)."""
    return timedelta(hours=settings.privacy_package_ttl_hours)


# --- building ------------------------------------------------------------------------------


def _text(value: Any) -> Any:
    """A value as JSON carries it: ids and times as text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _record_entry(module: Module, record: Any) -> dict[str, Any]:
    """A lead or contact as the disclosure decided: masked fields null, withheld ones absent."""
    disclosure = disclosure_of(record)
    fields: dict[str, Any] = {}
    if not record.erased:
        for name in field_names(module):
            if name in disclosure.withheld:
                continue
            fields[name] = None if name in disclosure.masked else getattr(record, name)
    entry: dict[str, Any] = {
        "module": module.value,
        "id": str(record.id),
        "subject_id": str(record.subject_id),
        "state": "recycle_bin" if record.deleted_at is not None else "live",
        "erased": record.erased,
        "created_at": _text(record.created_at),
        "updated_at": _text(record.updated_at),
        "deleted_at": _text(record.deleted_at),
        "owner_id": _text(record.owner_id),
        "created_by_id": _text(record.created_by_id),
        "legal_basis": record.legal_basis,
        **{name: _text(getattr(record, name)) for name in _RECORD_COLUMNS[module]},
        "fields": fields,
        "masked_fields": list(disclosure.masked),
        "withheld_fields": list(disclosure.withheld),
    }
    return entry


def _source_entry(module: Module, record: Any) -> dict[str, Any]:
    hidden = disclosure_of(record).hidden
    return {
        "module": module.value,
        "record_id": str(record.id),
        "channel": record.source_channel,
        "client_id": record.source_client_id,
        "batch_id": _text(record.source_batch_id),
        "form": record.source_form,
        "ip": None if record.erased or "source_ip" in hidden else record.source_ip,
    }


def _legal_basis_entry(module: Module, entry: LegalBasisEntry) -> dict[str, Any]:
    return {
        "module": module.value,
        "record_id": str(entry.subject_id),
        "id": str(entry.id),
        "basis": entry.basis,
        "assessment": entry.assessment,
        "set_at": _text(entry.set_at),
        "set_by_id": _text(entry.set_by_id),
        "set_by_client_id": entry.set_by_client_id,
        "carried_from_lead_id": _text(entry.carried_from_lead_id),
    }


def _history_entry(module: Module, item: HistoryItem) -> dict[str, Any]:
    entry = item.entry
    return {
        "module": module.value,
        "record_id": str(entry.record_id),
        "id": str(entry.id),
        "occurred_at": _text(entry.occurred_at),
        "actor_type": entry.actor_type,
        "actor_id": _text(entry.actor_id),
        "action": entry.action,
        "fields": json.loads(entry.fields),
        "changes": None
        if item.changes is None
        else {
            name: {"old": _text(old), "new": _text(new)}
            for name, (old, new) in sorted(item.changes.items())
        },
        "erased": item.erased,
    }


async def _history_of(
    session: AsyncSession,
    repository: RecordRepository[Any],
    record_id: uuid.UUID,
    policy: DisclosurePolicy | None,
) -> list[HistoryItem]:
    """Every change of the record, newest first, opened and disclosed like the history
    endpoint's pages (one reveal event for the record's whole history)."""
    items: list[HistoryItem] = []
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        page = await read_history(
            session,
            storage=repository.storage,
            organization_id=repository.organization_id,
            module=repository.module.value,
            record_id=record_id,
            after=after,
            limit=_HISTORY_PAGE,
        )
        items += page[:_HISTORY_PAGE]
        if len(page) <= _HISTORY_PAGE:
            break
        last = page[_HISTORY_PAGE - 1].entry
        after = (last.occurred_at, last.id)
    if policy is not None and items:
        await policy.show_history(repository, record_id, items)
    return items


def _consent_request_entry(
    request: ConsentRequest, purpose_keys: dict[uuid.UUID, tuple[str, int]]
) -> dict[str, Any]:
    purposes = []
    for text in json.loads(request.purpose_ids):
        key, version = purpose_keys.get(uuid.UUID(text), ("", 0))
        purposes.append({"purpose": key, "purpose_version": version})
    return {
        "id": str(request.id),
        "module": request.module,
        "record_id": str(request.record_id),
        "purposes": purposes,
        "channel": request.channel,
        "language": request.language,
        "status": request.status,
        "deadline": _text(request.deadline),
        "created_at": _text(request.created_at),
        "created_by_id": _text(request.created_by_id),
        "created_by_client_id": request.created_by_client_id,
        "answered_at": _text(request.answered_at),
        "no_response_at": _text(request.no_response_at),
        "reminders_sent": request.reminders_sent,
    }


def _privacy_request_entry(request: PrivacyRequest) -> dict[str, Any]:
    """A privacy request's clock and outcome, without what the requester wrote (their
    details are sealed per subject and shown on the request itself)."""
    return {
        "id": str(request.id),
        "type": request.type,
        "status": request.status,
        "channel": request.channel,
        "received_at": _text(request.received_at),
        "due_at": _text(request.due_at),
        "extended_months": request.extended_months,
        "verified_at": _text(request.verified_at),
        "completed_at": _text(request.completed_at),
        "rejected_at": _text(request.rejected_at),
    }


async def build_package(
    session: AsyncSession,
    organization_id: uuid.UUID,
    subject_ids: Sequence[uuid.UUID],
    *,
    principal: Principal | None,
    now: datetime,
) -> SubjectPackage:
    """Everything held on the data subjects (see the module docstring). `principal` is the
    staff member or partner client it is for, disclosed to them; None builds the subject's
    own, complete package. 404 when a subject has no lead or contact in the organization.

    Who may have a package is the caller's decision; this decides only what it shows."""
    wanted = list(dict.fromkeys(subject_ids))
    if not wanted or (principal is not None and principal.organization_id != organization_id):
        raise NotFound("No such data subject.")
    policy = None if principal is None else DisclosurePolicy(session, principal)
    parts = {subject_id: SubjectPart(subject_id) for subject_id in wanted}
    disclosure: dict[str, dict[str, list[str]]] = {}
    erased: dict[uuid.UUID, bool] = {}
    legal_bases = LegalBasisRepository(session, organization_id)
    for module, repository_class in PERSON_REPOSITORIES.items():
        # Every record of the subject, whoever owns it: the package answers a right of the
        # person, not a view of the caller's records.
        records_repository = repository_class(session, organization_id)
        records = await repository.records_of_subjects(records_repository, wanted)
        if policy is None:
            decided = FieldDisclosure()
            for record in records:
                DisclosurePolicy.stamp(record, decided)
        else:
            decided = await policy.fields(records_repository.storage)
            if records:
                await policy.show(View.PACKAGE, Shown(records_repository, records))
        disclosure[module.value] = {
            "masked": list(decided.masked),
            "withheld": list(decided.withheld),
        }
        for record in records:
            part = parts[record.subject_id]
            erased[record.subject_id] = erased.get(record.subject_id, True) and record.erased
            part.records.append(_record_entry(module, record))
            part.data_sources.append(_source_entry(module, record))
            part.legal_basis += [
                _legal_basis_entry(module, entry)
                for entry in await legal_bases.history(module, record.id)
            ]
            part.history += [
                _history_entry(module, item)
                for item in await _history_of(session, records_repository, record.id, policy)
            ]
    if any(subject_id not in erased for subject_id in wanted):
        raise NotFound("No such data subject: no lead or contact of this organization is theirs.")
    events = ConsentEventRepository(session, organization_id)
    for subject_id, part in parts.items():
        part.erased = erased[subject_id]
        shown = await read_events(session, organization_id, await events.of_subject(subject_id))
        part.consent_events = [event.model_dump(mode="json") for event in shown]
    requests = await repository.consent_requests_of_subjects(session, organization_id, wanted)
    purpose_ids = {
        uuid.UUID(text) for request in requests for text in json.loads(request.purpose_ids)
    }
    purposes = await PurposeRepository(session, organization_id).by_ids(purpose_ids)
    keys = {id_: (purpose.key, purpose.version) for id_, purpose in purposes.items()}
    for request in requests:
        parts[request.subject_id].consent_requests.append(_consent_request_entry(request, keys))
    for subject_id, privacy_request in await repository.privacy_requests_of_subjects(
        session, organization_id, wanted
    ):
        parts[subject_id].privacy_requests.append(_privacy_request_entry(privacy_request))
    return SubjectPackage(
        organization_id=organization_id,
        generated_at=now,
        channel=None if principal is None else channel_of(principal).value,
        disclosure=disclosure,
        parts=[parts[subject_id] for subject_id in wanted],
    )


async def disclose_package(
    session: AsyncSession, package: SubjectPackage, principal: Principal
) -> SubjectPackage:
    """A complete package (the subject's own, as stored) as a staff member or partner client
    may see it: the one disclosure policy on their channel masks and withholds the records'
    fields, the source IP and the history's values, and audits the sensitive values shown
    (one event per module, reason `package`). Show staff a stored package only through this.
    """
    if principal.organization_id != package.organization_id:
        raise NotFound("No such package.")
    if package.channel is not None:
        raise ValueError("the package was already disclosed to someone; disclose a complete one")
    policy = DisclosurePolicy(session, principal)
    policy.disclosed(*(part.subject_id for part in package.parts if not part.erased))
    decided: dict[str, tuple[FieldDisclosure, frozenset[str]]] = {}
    for module, repository_class in PERSON_REPOSITORIES.items():
        storage = repository_class(session, package.organization_id).storage
        disclosure, sensitive = await policy.sensitive_shown(storage)
        decided[module.value] = (disclosure, frozenset(sensitive))
    revealed: dict[str, tuple[set[uuid.UUID], set[str]]] = {
        module: (set(), set()) for module in decided
    }

    def reveal(module: str, record_id: str, names: Iterable[str]) -> None:
        names = [name for name in names if name in decided[module][1]]
        if names:
            revealed[module][0].add(uuid.UUID(record_id))
            revealed[module][1].update(names)

    parts = []
    for part in package.parts:
        shown = SubjectPart.from_json(copy.deepcopy(part.to_json()))
        for record in shown.records:
            disclosure, _ = decided[record["module"]]
            fields = record["fields"]
            for name in disclosure.withheld:
                fields.pop(name, None)
            for name in disclosure.masked:
                if name in fields:
                    fields[name] = None
            record["masked_fields"] = list(disclosure.masked)
            record["withheld_fields"] = list(disclosure.withheld)
            reveal(record["module"], record["id"], (n for n, v in fields.items() if v is not None))
        for source in shown.data_sources:
            if "source_ip" in decided[source["module"]][0].hidden:
                source["ip"] = None
        for item in shown.history:
            disclosure, _ = decided[item["module"]]
            changes = item["changes"]
            if changes is None:
                continue
            for name in disclosure.withheld:
                changes.pop(name, None)
            for name in disclosure.masked:
                if name in changes:
                    changes[name] = {"old": None, "new": None}
            reveal(
                item["module"],
                item["record_id"],
                (n for n, c in changes.items() if c != {"old": None, "new": None}),
            )
        parts.append(shown)
    for module_name, (ids, names) in revealed.items():
        policy.audit_reveal(View.PACKAGE, Module(module_name), sorted(ids), names)
    return SubjectPackage(
        organization_id=package.organization_id,
        generated_at=package.generated_at,
        channel=policy.channel.value,
        disclosure={
            module: {"masked": list(d.masked), "withheld": list(d.withheld)}
            for module, (d, _) in decided.items()
        },
        parts=parts,
        not_included=package.not_included,
    )


# --- rendering -----------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A CSV cell: lists joined by `;`, objects as JSON, then the export's formula rule."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, list):
        value = ";".join(str(item) for item in value)
    elif isinstance(value, dict):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return neutralise(value)


def _csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in columns])
    return buffer.getvalue().encode()


def _record_columns(package: SubjectPackage, module: Module) -> list[str]:
    withheld = set(package.disclosure.get(module.value, {}).get("withheld", []))
    return [
        "subject_id",
        "id",
        "state",
        "erased",
        "created_at",
        "updated_at",
        "deleted_at",
        "owner_id",
        "created_by_id",
        "legal_basis",
        *_RECORD_COLUMNS[module],
        *(name for name in field_names(module) if name not in withheld),
        "masked_fields",
        "withheld_fields",
    ]


def _tables(package: SubjectPackage) -> dict[str, tuple[list[str], list[dict[str, Any]]]]:
    """Each kind's CSV columns and rows (every row names its subject)."""
    rows: dict[str, list[dict[str, Any]]] = {kind.name: [] for kind in KINDS}
    for part in package.parts:
        subject = {"subject_id": str(part.subject_id)}
        for record in part.records:
            flat = {key: value for key, value in record.items() if key != "fields"}
            rows[f"records_{record['module']}"].append({**flat, **record["fields"]})
        for name in (
            "data_sources",
            "legal_basis",
            "consent_events",
            "consent_requests",
            "privacy_requests",
        ):
            rows[name] += [{**subject, **item} for item in getattr(part, name)]
        for item in part.history:
            base = {**subject, **{k: v for k, v in item.items() if k != "changes"}}
            base["entry_id"] = base.pop("id")
            changes = item["changes"]
            names = sorted(changes) if changes is not None else item["fields"]
            if not names:
                rows["history"].append(base)
            for name in names:
                change = (changes or {}).get(name) or {}
                rows["history"].append(
                    {**base, "field": name, "old": change.get("old"), "new": change.get("new")}
                )
    for request in rows["consent_requests"]:
        request["purposes"] = [
            f"{purpose['purpose']}@{purpose['purpose_version']}" for purpose in request["purposes"]
        ]
    columns = {
        "records_leads": _record_columns(package, Module.LEADS),
        "records_contacts": _record_columns(package, Module.CONTACTS),
        "data_sources": [
            "subject_id", "module", "record_id", "channel", "client_id", "batch_id", "form", "ip",
        ],
        "legal_basis": [
            "subject_id", "module", "record_id", "id", "basis", "assessment", "set_at",
            "set_by_id", "set_by_client_id", "carried_from_lead_id",
        ],
        "consent_events": [
            "subject_id", "id", "purpose", "purpose_version", "status", "channel",
            "notice_version", "recorded_at", "recorded_by_id", "recorded_by_client_id",
            "module", "record_id", "request_id", "form_id", "evidence", "evidence_erased",
        ],
        "consent_requests": [
            "subject_id", "id", "module", "record_id", "purposes", "channel", "language",
            "status", "deadline", "created_at", "created_by_id", "created_by_client_id",
            "answered_at", "no_response_at", "reminders_sent",
        ],
        "privacy_requests": [
            "subject_id", "id", "type", "status", "channel", "received_at", "due_at",
            "extended_months", "verified_at", "completed_at", "rejected_at",
        ],
        "history": [
            "subject_id", "module", "record_id", "entry_id", "occurred_at", "actor_type",
            "actor_id", "action", "field", "old", "new", "erased",
        ],
    }  # fmt: skip
    return {name: (columns[name], rows[name]) for name in rows}


def _readme(package: SubjectPackage) -> str:
    lines = [
        "Your personal data, as held in the CRM",
        "",
        f"Generated at: {package.generated_at.isoformat()}",
        f"Data subjects: {', '.join(str(id_) for id_ in package.subject_ids)}",
        "",
        "Each file is UTF-8 CSV with a header row; every row names the data subject it is",
        "about (subject_id). A cell that a spreadsheet would read as a formula starts with '.",
        "",
        "Files:",
    ]
    lines += [f"  {kind.filename}: {kind.description}" for kind in KINDS]
    lines.append("")
    if package.channel is None:
        lines.append("This package is complete: no field is masked or left out.")
    else:
        lines.append(f"Shown as the '{package.channel}' channel allows:")
        for module, decided in sorted(package.disclosure.items()):
            if decided["masked"]:
                lines.append(
                    f"  {module}: masked (empty) for this reader: {', '.join(decided['masked'])}"
                )
            if decided["withheld"]:
                lines.append(
                    f"  {module}: withheld (no column) by the organization's settings: "
                    f"{', '.join(decided['withheld'])}"
                )
        if package.complete:
            lines.append("  nothing is masked or withheld.")
    if package.not_included:
        lines += [
            "",
            "Not in this package yet: the privacy requests you filed "
            f"({', '.join(package.not_included)}).",
        ]
    return "\n".join(lines) + "\n"


def render(package: SubjectPackage, fmt: PackageFormat | str) -> RenderedPackage:
    """The package as one JSON document, or as a zip of one CSV file per kind."""
    fmt = PackageFormat(fmt)
    stamp = package.generated_at.strftime("%Y%m%dT%H%M%SZ")
    name = f"personal-data-{stamp}"
    if fmt is PackageFormat.JSON:
        body = json.dumps(package.to_json(), indent=2, ensure_ascii=False, sort_keys=False)
        return RenderedPackage(body.encode(), "application/json", f"{name}.json")
    buffer = io.BytesIO()
    # Entries carry the package's time, so the same package gives the same bytes.
    date_time = package.generated_at.timetuple()[:6]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            zipfile.ZipInfo("README.txt", date_time), _readme(package), zipfile.ZIP_DEFLATED
        )
        tables = _tables(package)
        for kind in KINDS:
            columns, rows = tables[kind.name]
            archive.writestr(
                zipfile.ZipInfo(kind.filename, date_time), _csv(columns, rows), zipfile.ZIP_DEFLATED
            )
    return RenderedPackage(buffer.getvalue(), "application/zip", f"{name}.zip")


# --- storing while it waits ----------------------------------------------------------------


def _context(part: StoredPackagePart) -> FieldContext:
    return FieldContext(part.organization_id, "privacy_package_parts", "content_sealed", part.id)


async def store_package(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    request_id: uuid.UUID,
    subject_ids: Sequence[uuid.UUID],
    package: SubjectPackage,
    now: datetime,
    ttl: timedelta,
) -> StoredPackage:
    """Keep the package's parts of `subject_ids` for `ttl`, each sealed under its subject's
    key, in place of any the request stored before."""
    wanted = list(dict.fromkeys(subject_ids))
    parts = {part.subject_id: part for part in package.parts}
    if package.organization_id != organization_id or not wanted:
        raise ValueError("the package is not of this organization, or names no subject")
    missing = [subject_id for subject_id in wanted if subject_id not in parts]
    if missing:
        raise ValueError("the package holds no part of some of the subjects")
    await repository.delete_parts_of_request(session, organization_id, request_id)
    keyring = keyring_for(session, organization_id)
    generation = await key_generation(session, organization_id, for_write=True)
    # The parts stored, in order: a part missing later was erased since.
    summary = json.dumps({**package.summary(), "subject_ids": [str(id_) for id_ in wanted]})
    expires_at = now + ttl
    for subject_id in wanted:
        part = parts[subject_id]
        row = StoredPackagePart(
            id=uuid.uuid4(),
            organization_id=organization_id,
            request_id=request_id,
            subject_id=subject_id,
            created_at=now,
            expires_at=expires_at,
            summary=summary,
        )
        if not part.erased:
            # An erased subject has no key left, and must not be given a new one.
            key = await keyring.subject_key(subject_id, generation)
            row.content_sealed = seal(key, json.dumps(part.to_json()), _context(row))
        await repository.add_part(session, row)
    return StoredPackage(
        request_id=request_id, subject_ids=tuple(wanted), stored_at=now, expires_at=expires_at
    )


async def load_package(
    session: AsyncSession, organization_id: uuid.UUID, request_id: uuid.UUID, *, now: datetime
) -> SubjectPackage | None:
    """The stored package of the request, or None when there is none or it expired (an
    expired one is deleted now). A subject erased since it was stored has an erased, empty
    part: their part was deleted and their key destroyed. The subject's own package is
    complete: shown to staff, it goes through :func:`disclose_package` first."""
    rows = await repository.parts_of_request(session, organization_id, request_id)
    if not rows:
        return None
    if any(row.expires_at <= now for row in rows):
        await repository.delete_parts_of_request(session, organization_id, request_id)
        return None
    summary = json.loads(rows[0].summary)
    keyring = keyring_for(session, organization_id)
    key_ids = {sealed_key_id(row.content_sealed) for row in rows if row.content_sealed}
    keys = await keyring.keys_by_id(key_id for key_id in key_ids if key_id is not None)
    opened: dict[uuid.UUID, SubjectPart] = {}
    for row in rows:
        key_id = sealed_key_id(row.content_sealed) if row.content_sealed else None
        if key_id is None or keys.get(key_id) is None:
            if key_id is not None and key_id not in keys:
                raise StoredValueIntegrityError("A stored package names a foreign data key.")
            continue  # erased: nothing left to open
        assert row.content_sealed is not None
        text = open_value(row.content_sealed, keys[key_id], _context(row))  # type: ignore[arg-type]
        opened[row.subject_id] = SubjectPart.from_json(json.loads(text))
    subject_ids = [uuid.UUID(text) for text in summary["subject_ids"]]
    return SubjectPackage(
        organization_id=organization_id,
        generated_at=datetime.fromisoformat(summary["generated_at"]),
        channel=summary["channel"],
        disclosure=summary["disclosure"],
        parts=[opened.get(s) or SubjectPart(s, erased=True) for s in subject_ids],
        not_included=tuple(summary["not_included"]),
    )


async def purge_packages(session: AsyncSession, now: datetime, batch_size: int) -> int:
    """The worker's job: delete stored parts past their time; how many."""
    return await repository.delete_parts(
        session, await repository.expired_part_ids(session, now, batch_size)
    )


async def purge_subject_packages(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> int:
    """The subject eraser: an erased subject's stored parts go with them."""
    return await repository.delete_parts_of_subject(session, organization_id, subject_id)


# --- the administration path ---------------------------------------------------------------


async def disclose_subject_package(
    *,
    session: AsyncSession,
    principal: Principal,
    subject_id: uuid.UUID,
    fmt: PackageFormat,
    now: datetime,
) -> RenderedPackage:
    """A subject's package built now for a staff member with `manage_privacy` (or a partner
    client with `crm.privacy.read`), disclosed as their channel allows, audited as a
    disclosure: who, which subject, which format and channel, never a value."""
    if principal.permissions is not None and not principal.has_right(Right.MANAGE_PRIVACY):
        raise Forbidden("This needs the administration right manage_privacy.")
    package = await build_package(
        session, principal.organization_id, [subject_id], principal=principal, now=now
    )
    rendered = render(package, fmt)
    audit(
        session,
        principal,
        AuditAction.PACKAGE_DISCLOSED,
        target_type="data_subject",
        target_id=subject_id,
        fields=[kind.name for kind in KINDS],
        reason=f"format={fmt.value};channel={package.channel}",
    )
    return rendered
