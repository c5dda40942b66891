"""Web forms: definitions (versioned), public submissions, double opt-in and its purge.

A submission answers alike whether or not its address is known, and whether it was taken,
dropped (honeypot, the per-address limit) or queued for confirmation. With double opt-in it is
sealed under the key of a new data subject and waits; the confirmation link's token (256-bit,
stored hashed, single-use, expiring after `CRM_OPTIN_TTL_HOURS`) is bound to the submission
and so to the form version it was made against. Confirming (a POST: a mail scanner's GET
confirms nothing) creates the lead or contact with source `webform`, the form name and the
submitter's IP, and a consent event per purpose ticked, the IPs and times of both steps sealed
as evidence. The worker purges an unconfirmed submission, key and queued mail with it, when
its token expires; a tombstone without data lets the link's page say it expired.

A person who already confirmed this form is never downgraded by submitting again: a new
confirmation adds to their existing record, and nothing changes until they confirm.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.config import Settings
from crm_service.consent import mailing, throttle
from crm_service.consent.ledger import SERVICES, Subject, append_event, unknown_purpose
from crm_service.consent.models import (
    ConsentChannel,
    ConsentPurpose,
    ConsentStatus,
    SubmissionStatus,
    Webform,
    WebformSubmission,
    WebformVersion,
)
from crm_service.consent.repository import (
    PurposeRepository,
    SubmissionRepository,
    WebformRepository,
)
from crm_service.consent.schemas import (
    Language,
    WebformCreate,
    WebformFieldRead,
    WebformRead,
    WebformUpdate,
    person_module,
)
from crm_service.consent.sealing import new_token, open_json, seal_json, token_hash
from crm_service.consent.system_repository import expired_submissions
from crm_service.crypto.blind_index import IndexKind, blind_index
from crm_service.crypto.codec import FieldContext
from crm_service.crypto.service import keyring_for
from crm_service.errors import FieldProblem, NotFound, ValidationFailed
from crm_service.kit.modules import Module
from crm_service.mail.outbox import purge_subject_mail
from crm_service.privacy.blocklist import is_blocklisted
from crm_service.records.contacts.schemas import ContactCreate
from crm_service.records.leads.schemas import LeadCreate
from crm_service.records.models import SourceChannel
from crm_service.records.service import Origin
from crm_service.security.principal import Principal

CREATE_SCHEMAS: dict[Module, type[BaseModel]] = {
    Module.LEADS: LeadCreate,
    Module.CONTACTS: ContactCreate,
}
# What a visitor may never set: ownership, links to other records, the legal basis, status.
NOT_FROM_THE_PUBLIC = frozenset({"owner_id", "account_id", "legal_basis", "status"})
HONEYPOT = "crm_hp"
PURPOSES_FIELD = "purposes"
# An expired submission's data-free tombstone is kept this long, so its link still says
# "expired" (and offers the form again) rather than "unknown".
TOMBSTONE_DAYS = 30
ACCEPTED = "Thank you. If a confirmation is needed, we have sent you an email."


def form_fields(module: Module) -> list[str]:
    return [name for name in CREATE_SCHEMAS[module].model_fields if name not in NOT_FROM_THE_PUBLIC]


def _problem(field_: str, rule: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message, errors=[FieldProblem(field=f"body.{field_}", rule=rule, message=message)]
    )


# --- definitions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """A form version as a submission sees it."""

    form_id: uuid.UUID
    organization_id: uuid.UUID
    version: int
    name: str
    module: Module
    fields: list[dict[str, Any]]
    purpose_ids: list[uuid.UUID]
    double_opt_in: bool
    redirect_url: str | None
    language: str

    @classmethod
    def of(cls, version: WebformVersion) -> Definition:
        data = json.loads(version.definition)
        return cls(
            form_id=version.form_id,
            organization_id=version.organization_id,
            version=version.version,
            name=data["name"],
            module=Module(data["module"]),
            fields=data["fields"],
            purpose_ids=[uuid.UUID(p) for p in data["purpose_ids"]],
            double_opt_in=data["double_opt_in"],
            redirect_url=data["redirect_url"],
            language=data["language"],
        )


async def _check_definition(
    session: AsyncSession, principal: Principal, form: Webform
) -> list[ConsentPurpose]:
    module = Module(form.module)
    allowed = set(form_fields(module))
    fields = json.loads(form.fields)
    names = [f["name"] for f in fields]
    unknown = [name for name in names if name not in allowed]
    if unknown or len(set(names)) != len(names):
        raise _problem(
            "fields",
            "unknown_field",
            f"Fields must be distinct fields of {module.value} a visitor may fill in: "
            f"{', '.join(sorted(allowed))}.",
        )
    required = {f["name"] for f in fields if f["required"]}
    if "last_name" not in required:
        raise _problem(
            "fields", "last_name_required", "A form must ask for `last_name` (required)."
        )
    if form.double_opt_in and "email" not in required:
        raise _problem(
            "fields", "email_required", "Double opt-in needs `email` as a required field."
        )
    keys = json.loads(form.purposes)
    purposes = await PurposeRepository(session, principal.organization_id).current_of(keys)
    if set(keys) - set(purposes):
        raise unknown_purpose("purposes")
    return [purposes[key] for key in keys]


async def _snapshot(
    session: AsyncSession, principal: Principal, form: Webform, now: datetime
) -> None:
    purposes = await _check_definition(session, principal, form)
    definition = {
        "name": form.name,
        "module": form.module,
        "fields": json.loads(form.fields),
        "purpose_ids": [str(p.id) for p in purposes],
        "double_opt_in": form.double_opt_in,
        "redirect_url": form.redirect_url,
        "language": form.language,
    }
    await WebformRepository(session, principal.organization_id).add_version(
        WebformVersion(
            organization_id=principal.organization_id,
            form_id=form.id,
            version=form.version,
            definition=json.dumps(definition),
            created_at=now,
        )
    )


def present(form: Webform, base_url: str) -> WebformRead:
    return WebformRead(
        id=form.id,
        version=form.version,
        name=form.name,
        module=person_module(form.module),
        fields=[WebformFieldRead(**f) for f in json.loads(form.fields)],
        purposes=json.loads(form.purposes),
        double_opt_in=form.double_opt_in,
        redirect_url=form.redirect_url,
        language=Language(form.language),
        active=form.active,
        created_at=form.created_at,
        updated_at=form.updated_at,
        submit_url=f"{base_url.rstrip('/')}/forms/{form.id}",
    )


async def create_webform(
    *, session: AsyncSession, principal: Principal, payload: WebformCreate, now: datetime
) -> Webform:
    form = Webform(
        id=uuid.uuid4(),
        organization_id=principal.organization_id,
        version=1,
        name=payload.name,
        module=payload.module,
        fields=json.dumps([f.model_dump() for f in payload.fields]),
        purposes=json.dumps(list(dict.fromkeys(payload.purposes))),
        double_opt_in=payload.double_opt_in,
        redirect_url=payload.redirect_url,
        language=payload.language.value,
        active=True,
        created_at=now,
        updated_at=now,
        created_by_id=principal.user_id,
    )
    await _check_definition(session, principal, form)
    await WebformRepository(session, principal.organization_id).add(form)
    await _snapshot(session, principal, form, now)
    audit(
        session,
        principal,
        AuditAction.WEBFORM_CREATED,
        target_type="webform",
        target_id=form.id,
        fields=sorted(payload.model_fields_set),
    )
    return form


async def get_webform(
    *, session: AsyncSession, principal: Principal, form_id: uuid.UUID
) -> Webform:
    form = await WebformRepository(session, principal.organization_id).get(form_id)
    if form is None:
        raise NotFound("No such web form.")
    return form


async def list_webforms(*, session: AsyncSession, principal: Principal) -> list[Webform]:
    return await WebformRepository(session, principal.organization_id).all()


async def update_webform(
    *,
    session: AsyncSession,
    principal: Principal,
    form_id: uuid.UUID,
    payload: WebformUpdate,
    now: datetime,
) -> Webform:
    """Any change makes a new version; submissions keep the version they were made against."""
    form = await get_webform(session=session, principal=principal, form_id=form_id)
    changes = payload.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if name == "fields":
            form.fields = json.dumps(value)
        elif name == "purposes":
            form.purposes = json.dumps(list(dict.fromkeys(value)))
        elif name == "language":
            form.language = Language(value).value
        elif value is None and name != "redirect_url":
            raise _problem(name, "null", f"`{name}` cannot be null.")
        else:
            setattr(form, name, value)
    if changes:
        form.version += 1
        form.updated_at = now
        await _snapshot(session, principal, form, now)
        audit(
            session,
            principal,
            AuditAction.WEBFORM_UPDATED,
            target_type="webform",
            target_id=form.id,
            fields=sorted(changes),
        )
    return form


# --- public submissions ----------------------------------------------------------------------


@dataclass
class PublicForm:
    """What the public pages need of a live form."""

    definition: Definition
    purposes: list[ConsentPurpose] = field(default_factory=list)


async def public_form(session: AsyncSession, form_id: uuid.UUID) -> PublicForm:
    """The current version of an active form (404 otherwise), across organizations: the
    form's id is all a public request has."""
    form = (
        await session.execute(select(Webform).where(Webform.id == form_id, Webform.active))
    ).scalar_one_or_none()
    if form is None:
        raise NotFound("No such web form.")
    return await _public_version(session, form.organization_id, form.id, form.version)


async def _public_version(
    session: AsyncSession, organization_id: uuid.UUID, form_id: uuid.UUID, version: int
) -> PublicForm:
    stored = await WebformRepository(session, organization_id).version(form_id, version)
    assert stored is not None
    definition = Definition.of(stored)
    found = await PurposeRepository(session, organization_id).by_ids(definition.purpose_ids)
    return PublicForm(definition, [found[p] for p in definition.purpose_ids if p in found])


def _values(definition: Definition, data: dict[str, Any]) -> dict[str, Any]:
    """The form's fields from the submission, checked as the module's create input checks
    them (422 naming the fields; never their values)."""
    values = {}
    for spec in definition.fields:
        value = data.get(spec["name"])
        if isinstance(value, str):
            value = value.strip() or None
        if value is None and spec["required"]:
            raise _problem(spec["name"], "missing", f"`{spec['name']}` is required.")
        if value is not None:
            values[spec["name"]] = value
    try:
        checked = CREATE_SCHEMAS[definition.module].model_validate(values)
    except ValidationError as exc:
        names = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
        raise ValidationFailed(
            "Some fields are not valid.",
            errors=[
                FieldProblem(field=f"body.{name}", rule="invalid", message="not a valid value")
                for name in names
            ],
        ) from None
    return checked.model_dump(mode="json", include=set(values))


def _chosen_purposes(form: PublicForm, data: dict[str, Any]) -> list[str]:
    chosen = data.get(PURPOSES_FIELD) or []
    if isinstance(chosen, str):
        chosen = [chosen]
    if not isinstance(chosen, list):
        raise _problem(PURPOSES_FIELD, "invalid", "`purposes` is a list of purpose keys.")
    offered = {p.key for p in form.purposes}
    return [key for key in dict.fromkeys(str(k) for k in chosen) if key in offered]


def _submission_context(submission: WebformSubmission) -> FieldContext:
    return FieldContext(
        submission.organization_id, "webform_submissions", "data_sealed", submission.id
    )


async def submit(
    session: AsyncSession,
    *,
    form_id: uuid.UUID,
    data: dict[str, Any],
    client_ip: str | None,
    user_agent: str | None,
    now: datetime,
    settings: Settings,
) -> PublicForm:
    """Take one submission (see the module docstring); the answer is the same for every
    outcome but an invalid one (422) or a throttled source (429)."""
    form = await public_form(session, form_id)
    definition = form.definition
    organization_id = definition.organization_id
    form_key = str(definition.form_id)
    await throttle.limit(
        session,
        await throttle.counter_key(session, organization_id, form_key),
        allowed=settings.webform_form_minute_limit,
        window=timedelta(minutes=1),
        now=now,
    )
    await throttle.limit(
        session,
        await throttle.counter_key(session, organization_id, form_key, "ip", client_ip or "-"),
        allowed=settings.webform_address_hourly_limit,
        window=timedelta(hours=1),
        now=now,
    )
    if data.get(HONEYPOT):
        return form  # a bot: dropped, answered as usual
    values = _values(definition, data)
    purposes = _chosen_purposes(form, data)
    email = values.get("email")
    if await _blocklisted(session, organization_id, values):
        return form  # an erased person's address: dropped (no mail), answered as usual
    email_bidx = None
    if email is not None:
        index_key = await keyring_for(session, organization_id).index_key()
        email_bidx = blind_index(
            index_key, IndexKind.EMAIL, email, phone_region=session.info.get("phone_region")
        )
        hits, _ = await throttle.hit(
            session,
            await throttle.counter_key(session, organization_id, form_key, "email", email_bidx),
            timedelta(days=1),
            now,
        )
        if hits > settings.webform_email_daily_limit:
            return form  # dropped: a 429 here would tell that someone used this address
    evidence = {
        "form_id": form_key,
        "form_version": definition.version,
        "submitted_at": now.isoformat(),
        "submitted_ip": client_ip,
        "submitted_user_agent": (user_agent or "")[:500],
    }
    submission = WebformSubmission(
        id=uuid.uuid4(),
        organization_id=organization_id,
        form_id=definition.form_id,
        form_version=definition.version,
        subject_id=uuid.uuid4(),
        email_bidx=email_bidx,
        status=SubmissionStatus.PENDING.value,
        submitted_at=now,
        expires_at=now + timedelta(hours=settings.optin_ttl_hours),
    )
    token, submission.token_hash = new_token()
    audit(
        session,
        Actor.system(organization_id),
        AuditAction.WEBFORM_SUBMITTED,
        target_type="webform",
        target_id=definition.form_id,
        fields=sorted(values),
    )
    if not definition.double_opt_in:
        submission.status = SubmissionStatus.CONFIRMED.value
        submission.confirmed_at = now
        await SubmissionRepository(session, organization_id).add(submission)
        await _take(session, form, submission, values, purposes, evidence, now)
        return form
    submission.data_sealed = await seal_json(
        session,
        organization_id,
        submission.subject_id,
        _submission_context(submission),
        {"values": values, "purposes": purposes, "evidence": evidence},
        new_subject=True,
    )
    await SubmissionRepository(session, organization_id).add(submission)
    assert email is not None  # double opt-in forms require it
    await mailing.send_optin(
        session,
        organization_id=organization_id,
        subject_id=submission.subject_id,
        to=email,
        link=f"{settings.public_base_url.rstrip('/')}/forms/confirm/{token}",
        form_name=definition.name,
        purposes=[p for p in form.purposes if p.key in purposes],
        valid_hours=settings.optin_ttl_hours,
        language=definition.language,
    )
    return form


async def _blocklisted(
    session: AsyncSession, organization_id: uuid.UUID, values: dict[str, Any]
) -> bool:
    return await is_blocklisted(
        session, organization_id, email=values.get("email"), phone=values.get("phone")
    )


async def _take(
    session: AsyncSession,
    form: PublicForm,
    submission: WebformSubmission,
    values: dict[str, Any],
    purposes: list[str],
    evidence: dict[str, Any],
    now: datetime,
) -> None:
    """Make the lead or contact (or, for someone who confirmed this form before, add to their
    record: never a downgrade) and record the consent given. An address blocklisted since the
    submission takes nothing."""
    definition = form.definition
    organization_id = definition.organization_id
    if await _blocklisted(session, organization_id, values):
        return
    service = SERVICES[definition.module]
    repository = service.repository_class(session, organization_id)
    actor = Actor.system(organization_id)
    record = None
    if submission.email_bidx is not None:
        earlier = await SubmissionRepository(session, organization_id).confirmed_for(
            definition.form_id, submission.email_bidx, besides=submission.id
        )
        if earlier is not None and earlier.record_id is not None:
            found = await repository.get(earlier.record_id)
            record = found if found is not None and not found.erased else None
    if record is None:
        principal = Principal(organization_id=organization_id, user_id=None, scopes=frozenset())
        record = await service.insert(
            session=session,
            principal=principal,
            repository=repository,
            values={**values, "source_ip": evidence.get("submitted_ip")},
            origin=Origin(
                subject_id=submission.subject_id,
                # Without double opt-in nothing sealed under the subject yet: a new key.
                new_subject=not definition.double_opt_in,
                source={
                    "source_channel": SourceChannel.WEBFORM.value,
                    "source_form": definition.name[:100],
                },
            ),
            actor=actor,
        )
    submission.module = definition.module.value
    submission.record_id = record.id
    if record.subject_id != submission.subject_id:
        # Added to an earlier record: the submission's own key sealed nothing that is kept.
        await keyring_for(session, organization_id).destroy_subject_keys(submission.subject_id)
    subject = Subject(organization_id, definition.module, record, repository)
    for purpose in form.purposes:
        if purpose.key not in purposes:
            continue
        await append_event(
            session,
            subject,
            actor=actor,
            purpose=purpose,
            status=ConsentStatus.GRANTED,
            channel=ConsentChannel.WEB,
            notice_version=purpose.notice_version,
            now=now,
            evidence=evidence,
            form_id=definition.form_id,
        )
    await session.flush()


# --- the confirmation link -------------------------------------------------------------------


@dataclass(frozen=True)
class LinkState:
    """What the confirmation page shows: `pending`, `confirmed`, `expired` or `unknown`."""

    state: str
    form: PublicForm | None = None


async def _submission(session: AsyncSession, token: str) -> WebformSubmission | None:
    return (
        await session.execute(
            select(WebformSubmission).where(WebformSubmission.token_hash == token_hash(token))
        )
    ).scalar_one_or_none()


async def link_state(session: AsyncSession, token: str, now: datetime) -> LinkState:
    """Read-only: what the link is (a GET confirms nothing)."""
    submission = await _submission(session, token)
    if submission is None:
        return LinkState("unknown")
    form = await _public_version(
        session, submission.organization_id, submission.form_id, submission.form_version
    )
    if submission.confirmed_at is not None:
        return LinkState("confirmed", form)
    if submission.expires_at <= now or submission.data_sealed is None:
        return LinkState("expired", await _current_or(session, form))
    return LinkState("pending", form)


async def _current_or(session: AsyncSession, form: PublicForm) -> PublicForm | None:
    """The form as it is now, to offer again (None when it was switched off)."""
    try:
        return await public_form(session, form.definition.form_id)
    except NotFound:
        return None


async def confirm(
    session: AsyncSession,
    *,
    token: str,
    now: datetime,
    client_ip: str | None,
    user_agent: str | None,
) -> LinkState:
    """Confirm once; a second confirmation, or one of an expired link, changes nothing."""
    state = await link_state(session, token, now)
    if state.state != "pending":
        return state
    submission = await _submission(session, token)
    assert submission is not None and submission.data_sealed is not None and state.form
    organization_id = submission.organization_id
    opened = await open_json(
        session, organization_id, submission.data_sealed, _submission_context(submission)
    )
    if opened is None:
        return LinkState("expired")
    # Claim it first: of two concurrent confirmations only one changes the row.
    claimed = await SubmissionRepository(session, organization_id).mark_confirmed(
        submission, at=now
    )
    if not claimed:
        return LinkState("confirmed", state.form)
    await session.refresh(submission)
    evidence = {
        **opened["evidence"],
        "confirmed_at": now.isoformat(),
        "confirmed_ip": client_ip,
        "confirmed_user_agent": (user_agent or "")[:500],
    }
    await _take(
        session, state.form, submission, opened["values"], opened["purposes"], evidence, now
    )
    audit(
        session,
        Actor.system(organization_id),
        AuditAction.WEBFORM_CONFIRMED,
        target_type="webform",
        target_id=submission.form_id,
    )
    return LinkState("confirmed", state.form)


# --- the worker ------------------------------------------------------------------------------


async def drop_pending_of(
    session: AsyncSession, organization_id: uuid.UUID, email_bidxs: list[str]
) -> int:
    """Unconfirmed submissions from these addresses (an erased data subject's): their data,
    their key and their queued confirmation mail go now, not when the link expires; the
    confirmation page then says the link expired. Returns how many."""
    if not email_bidxs:
        return 0
    found = (
        await session.execute(
            select(WebformSubmission).where(
                WebformSubmission.organization_id == organization_id,
                WebformSubmission.email_bidx.in_(email_bidxs),
                WebformSubmission.status == SubmissionStatus.PENDING.value,
                WebformSubmission.data_sealed.is_not(None),
            )
        )
    ).scalars()
    dropped = 0
    for submission in found:
        await _forget(session, submission)
        dropped += 1
    await session.flush()
    return dropped


async def _forget(session: AsyncSession, submission: WebformSubmission) -> None:
    """An unconfirmed submission loses its data, its subject's key and its queued mail; a
    tombstone (`expired`) stays, so its link says it expired."""
    keyring = keyring_for(session, submission.organization_id)
    await keyring.destroy_subject_keys(submission.subject_id)
    await purge_subject_mail(session, submission.organization_id, submission.subject_id)
    submission.data_sealed = None
    submission.status = "expired"


async def purge_expired(session: AsyncSession, now: datetime, batch_size: int) -> int:
    """Unconfirmed submissions whose link expired lose their data, their subject's key and
    their queued mail (a tombstone stays a while); old tombstones go."""
    purged = 0
    for submission in await expired_submissions(session, now, batch_size):
        if submission.data_sealed is not None:
            await _forget(session, submission)
            purged += 1
            audit(
                session,
                Actor.system(submission.organization_id),
                AuditAction.WEBFORM_SUBMISSIONS_PURGED,
                target_type="webform",
                target_id=submission.form_id,
            )
    await session.execute(
        delete(WebformSubmission).where(
            WebformSubmission.confirmed_at.is_(None),
            WebformSubmission.expires_at <= now - timedelta(days=TOMBSTONE_DAYS),
        )
    )
    await session.flush()
    return purged
