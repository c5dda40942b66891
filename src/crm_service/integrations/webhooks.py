"""Webhook endpoints and the outbox.

An administrator with `manage_integrations` registers endpoints (URL, event types,
description); each gets a secret (`whsec_...`, shown once, sealed under the organization's
key) that signs every delivery, rotatable with an overlap in which both secrets sign.

Every create, update, delete and conversion of a record writes an event and one delivery per
subscribed, enabled endpoint into the outbox, in the change's own transaction (the record
service emits, :func:`queue_record_event` listens): a change that rolls back sends nothing,
and no change goes without its event. The outbox keeps ids and versions only; the worker
builds each payload when it delivers it (`delivery.py`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import record as audit
from crm_service.config import Settings
from crm_service.crypto.codec import FieldContext
from crm_service.crypto.service import open_organization_secret, seal_organization_secret
from crm_service.db.base import utcnow
from crm_service.errors import FieldProblem, NotFound, ValidationFailed
from crm_service.integrations.models import WebhookAttempt, WebhookEndpoint, WebhookEvent
from crm_service.integrations.repository import WebhookEndpointRepository, WebhookOutbox
from crm_service.integrations.schemas import (
    PRIVACY_EVENTS,
    DeliveryQuery,
    WebhookCreate,
    WebhookUpdate,
)
from crm_service.integrations.signing import new_secret
from crm_service.integrations.targets import TargetRefused, check_url
from crm_service.records.events import RecordEvent, on_record_event
from crm_service.records.paging import Cursor, RecordSort
from crm_service.security.principal import Principal

TARGET_TYPE = "webhook_endpoint"


def _context(endpoint: WebhookEndpoint, column: str) -> FieldContext:
    return FieldContext(endpoint.organization_id, "webhook_endpoints", column, endpoint.id)


async def signing_secrets(
    session: AsyncSession, endpoint: WebhookEndpoint, now: datetime
) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one while its
    overlap lasts."""
    found = [
        await open_organization_secret(
            session, endpoint.organization_id, endpoint.secret_sealed, _context(endpoint, "secret")
        )
    ]
    if (
        endpoint.previous_secret_sealed is not None
        and endpoint.previous_secret_until is not None
        and endpoint.previous_secret_until > now
    ):
        found.append(
            await open_organization_secret(
                session,
                endpoint.organization_id,
                endpoint.previous_secret_sealed,
                _context(endpoint, "previous_secret"),
            )
        )
    return [secret for secret in found if secret is not None]


def events_of(endpoint: WebhookEndpoint) -> list[str]:
    return list(json.loads(endpoint.events))


def _refuse_url(url: str, settings: Settings) -> None:
    """The part of the SSRF guard that needs no lookup (the rest runs on every attempt)."""
    try:
        check_url(url, settings)
    except TargetRefused as refused:
        message = {
            "https_required": "must be an https URL in production",
            "credentials_in_url": "must not carry a user name or password",
        }.get(refused.reason, "must be an http or https URL with a host")
        raise ValidationFailed(
            f"The webhook URL {message}.",
            errors=[FieldProblem(field="body.url", rule=refused.reason, message=message)],
        ) from None


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str


async def create_endpoint(
    *, session: AsyncSession, principal: Principal, payload: WebhookCreate, settings: Settings
) -> CreatedEndpoint:
    _refuse_url(payload.url, settings)
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        organization_id=principal.organization_id,
        url=payload.url,
        events=json.dumps(sorted({event.value for event in payload.events})),
        description=payload.description,
        enabled=True,
        created_by_id=principal.user_id,
    )
    secret = new_secret()
    endpoint.secret_sealed = await seal_organization_secret(
        session, principal.organization_id, secret, _context(endpoint, "secret")
    )
    await WebhookEndpointRepository(session, principal.organization_id).add(endpoint)
    audit(
        session,
        principal,
        AuditAction.WEBHOOK_CREATED,
        target_type=TARGET_TYPE,
        target_id=endpoint.id,
        fields=["url", "events", "description"],
    )
    return CreatedEndpoint(endpoint, secret)


async def list_endpoints(*, session: AsyncSession, principal: Principal) -> list[WebhookEndpoint]:
    return await WebhookEndpointRepository(session, principal.organization_id).all()


async def get_endpoint(
    *, session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    found = await WebhookEndpointRepository(session, principal.organization_id).get(endpoint_id)
    if found is None:
        raise NotFound("No such webhook endpoint.")
    return found


async def update_endpoint(
    *,
    session: AsyncSession,
    principal: Principal,
    endpoint_id: uuid.UUID,
    payload: WebhookUpdate,
    settings: Settings,
) -> WebhookEndpoint:
    endpoint = await get_endpoint(session=session, principal=principal, endpoint_id=endpoint_id)
    changes = payload.model_dump(exclude_unset=True)
    for name in ("url", "events", "enabled"):
        if name in changes and changes[name] is None:
            raise ValidationFailed(
                f"`{name}` cannot be null; leave it out to keep it.",
                errors=[FieldProblem(field=f"body.{name}", rule="not_null", message="not null")],
            )
    if "url" in changes:
        _refuse_url(changes["url"], settings)
        endpoint.url = changes["url"]
    if "events" in changes:
        endpoint.events = json.dumps(sorted({str(event) for event in changes["events"]}))
    if "description" in changes:
        endpoint.description = changes["description"]
    if "enabled" in changes:
        endpoint.enabled = changes["enabled"]
        endpoint.disabled_reason = None
        endpoint.disabled_at = None if changes["enabled"] else utcnow()
    await session.flush()
    if changes:
        audit(
            session,
            principal,
            AuditAction.WEBHOOK_UPDATED,
            target_type=TARGET_TYPE,
            target_id=endpoint.id,
            fields=list(changes),
        )
    return endpoint


async def delete_endpoint(
    *, session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID
) -> None:
    endpoint = await get_endpoint(session=session, principal=principal, endpoint_id=endpoint_id)
    await WebhookEndpointRepository(session, principal.organization_id).delete(endpoint)
    audit(
        session,
        principal,
        AuditAction.WEBHOOK_DELETED,
        target_type=TARGET_TYPE,
        target_id=endpoint_id,
    )


async def rotate_secret(
    *,
    session: AsyncSession,
    principal: Principal,
    endpoint_id: uuid.UUID,
    settings: Settings,
    now: datetime,
) -> tuple[str, datetime | None]:
    """A new secret; the current one keeps signing beside it for the overlap."""
    endpoint = await get_endpoint(session=session, principal=principal, endpoint_id=endpoint_id)
    current = await signing_secrets(session, endpoint, now)
    overlap = timedelta(seconds=settings.webhook_secret_overlap_seconds)
    if current and overlap:
        endpoint.previous_secret_sealed = await seal_organization_secret(
            session, endpoint.organization_id, current[0], _context(endpoint, "previous_secret")
        )
        endpoint.previous_secret_until = now + overlap
    else:
        endpoint.previous_secret_sealed = None
        endpoint.previous_secret_until = None
    secret = new_secret()
    endpoint.secret_sealed = await seal_organization_secret(
        session, endpoint.organization_id, secret, _context(endpoint, "secret")
    )
    await session.flush()
    audit(
        session,
        principal,
        AuditAction.WEBHOOK_SECRET_ROTATED,
        target_type=TARGET_TYPE,
        target_id=endpoint.id,
    )
    return secret, endpoint.previous_secret_until


async def delivery_attempts(
    *, session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID, query: DeliveryQuery
) -> tuple[list[WebhookAttempt], str | None]:
    """The endpoint's delivery attempts, newest first: when, outcome, status; no payloads."""
    await get_endpoint(session=session, principal=principal, endpoint_id=endpoint_id)
    after = None
    if query.cursor is not None:
        cursor = Cursor.decode(query.cursor, RecordSort.CREATED_DESC)
        after = (cursor.value, cursor.id)
    rows = await WebhookOutbox(session, principal.organization_id).attempts(
        endpoint_id, after=after, limit=query.limit
    )
    if len(rows) <= query.limit:
        return rows, None
    rows = rows[: query.limit]
    last = rows[-1]
    return rows, Cursor(RecordSort.CREATED_DESC, last.attempted_at, last.id).encode()


# -- the outbox --------------------------------------------------------------------------------


async def queue_record_event(session: AsyncSession, event: RecordEvent) -> None:
    """Write the change's event and its deliveries, in the change's transaction."""
    endpoints = await WebhookEndpointRepository(session, event.organization_id).enabled()
    subscribed = [e.id for e in endpoints if event.type in events_of(e)]
    if not subscribed:
        return
    await WebhookOutbox(session, event.organization_id).enqueue(
        WebhookEvent(
            id=uuid.uuid4(),
            organization_id=event.organization_id,
            type=event.type,
            module=event.module.value,
            record_id=event.record_id,
            subject_id=event.subject_id,
            record_version=event.version,
            occurred_at=event.occurred_at,
        ),
        subscribed,
    )


on_record_event(queue_record_event)


async def queue_privacy_event(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    type_: str,
    request_id: uuid.UUID,
    data: dict[str, object],
    occurred_at: datetime,
) -> list[uuid.UUID]:
    """Queue a `privacy.*` event (ids only, in `data`) to every enabled endpoint subscribed
    to it, in the caller's transaction; the endpoints' ids. Its subject is left unnamed on
    the event, so neither the subject's restriction holds it back nor their erasure purges
    it: it is how recipients learn of both."""
    if type_ not in PRIVACY_EVENTS:
        raise ValueError(f"{type_!r} is no privacy event")
    endpoints = await WebhookEndpointRepository(session, organization_id).enabled()
    subscribed = sorted(e.id for e in endpoints if type_ in events_of(e))
    if not subscribed:
        return []
    await WebhookOutbox(session, organization_id).enqueue(
        WebhookEvent(
            id=uuid.uuid4(),
            organization_id=organization_id,
            type=type_,
            module="privacy_request",
            record_id=request_id,
            subject_id=None,
            record_version=0,
            occurred_at=occurred_at,
            data=json.dumps(data, sort_keys=True),
        ),
        subscribed,
    )
    return subscribed


async def purge_subject_webhook_events(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> int:
    """For erasure: drop every queued event of the data subject, and their deliveries, in the
    erasure's transaction. Returns how many events went. (Attempts already made stay: they
    name event types and status codes only.)"""
    return await WebhookOutbox(session, organization_id).purge_subject(subject_id)
