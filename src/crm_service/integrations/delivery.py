"""The delivery worker: due deliveries out to their endpoints, signed, retried, recorded.

Each run claims a batch of due deliveries (FOR UPDATE SKIP LOCKED on PostgreSQL, SQLite's
write lock otherwise) and leases them in a short transaction, so any number of workers deliver
each event once per endpoint and none holds a lock while it waits on the network. Per attempt:

- the payload is built now, through the disclosure policy on the `integrations` channel
  (compliance settings and an erasure made since the change apply; nothing personal is
  stored for it): `{"type", "timestamp", "data": {"id", "module", "version", "record",
  "withheld_fields", "masked_fields"}}`, where `version` is the record's version the event
  is about (receivers order by it) and `record` its current state (null once deleted); a
  `privacy.*` event's `data` is the ids it was queued with (request, subject, records);
- the target is resolved and checked again (`targets.py`), then posted to with the
  Standard Webhooks headers (`webhook-id` stable across retries);
- a 2xx delivers; 410 disables the endpoint; anything else (a redirect, a timeout, no
  connection, a refused address) is retried with exponential backoff and jitter for about
  three days (429 and 503 wait at least their `Retry-After`), after which the delivery
  fails and, if nothing reached the endpoint in all that time, the endpoint is disabled with
  its reason (`failing`) for administrators to see.

Events of a restricted data subject wait (not claimed) until the restriction is lifted.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import ssl
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.config import Settings
from crm_service.db.session import commit
from crm_service.integrations import repository
from crm_service.integrations.models import WebhookAttempt, WebhookEndpoint, WebhookEvent
from crm_service.integrations.repository import DELIVERED, FAILED, PENDING
from crm_service.integrations.signing import signature_header
from crm_service.integrations.targets import TargetRefused, checked_target
from crm_service.integrations.webhooks import TARGET_TYPE, signing_secrets
from crm_service.kit.modules import Module
from crm_service.metrics import observe_delivery
from crm_service.records.accounts.schemas import AccountRead
from crm_service.records.accounts.service import accounts
from crm_service.records.contacts.schemas import ContactRead
from crm_service.records.contacts.service import contacts
from crm_service.records.disclosure import Channel, DisclosurePolicy, withheld_classifications
from crm_service.records.fields import Classification
from crm_service.records.leads.schemas import LeadRead
from crm_service.records.leads.service import leads
from crm_service.records.service import RecordService
from crm_service.security.principal import Principal

logger = structlog.get_logger("crm_service.webhooks")

BATCH_SIZE = 50
CONCURRENCY = 8
MAX_ATTEMPTS = 12
BASE_DELAY = timedelta(seconds=10)
MAX_DELAY = timedelta(hours=24)
RETRY_AFTER_MAX = timedelta(hours=24)

_MODULES: dict[Module, tuple[RecordService[Any], type[BaseModel]]] = {
    Module.LEADS: (leads, LeadRead),
    Module.CONTACTS: (contacts, ContactRead),
    Module.ACCOUNTS: (accounts, AccountRead),
}


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure: 10 s, 30 s, 90 s, ... tripling up to a day,
    each within ±10 % so endpoints that failed together are not retried together. The eleven
    waits add up to about three days."""
    base = min(BASE_DELAY * 3 ** (attempts - 1), MAX_DELAY)
    return base * random.uniform(0.9, 1.1)


def retry_after(response: httpx.Response, now: datetime) -> timedelta | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        wait = timedelta(seconds=int(value.strip()))
    except ValueError:
        try:
            wait = parsedate_to_datetime(value) - now
        except (TypeError, ValueError):
            return None
    return max(timedelta(seconds=1), min(wait, RETRY_AFTER_MAX))


def integrations_principal(organization_id: uuid.UUID) -> Principal:
    """Whom a payload is disclosed to: another system, with no profile (so, like a partner
    client, it never receives a sensitive value) on the `integrations` channel."""
    return Principal(organization_id=organization_id, user_id=None, scopes=frozenset())


@dataclass
class DeliveryBatch:
    """What every delivery of one claimed batch shares, read once for the batch (which takes
    no longer than one request, and reads like one): each organization's compliance
    settings on the `integrations` channel and each endpoint's signing secrets."""

    withheld: dict[uuid.UUID, frozenset[Classification]] = field(default_factory=dict)
    secrets: dict[tuple[uuid.UUID, bytes, bytes | None], list[str]] = field(default_factory=dict)

    async def withheld_in(
        self, session: AsyncSession, organization_id: uuid.UUID
    ) -> frozenset[Classification]:
        found = self.withheld.get(organization_id)
        if found is None:
            found = await withheld_classifications(session, organization_id, Channel.INTEGRATIONS)
            self.withheld[organization_id] = found
        return found

    async def secrets_of(
        self, session: AsyncSession, endpoint: WebhookEndpoint, now: datetime
    ) -> list[str]:
        # Keyed by the sealed secrets too: a rotation read by a later batch is a new entry.
        key = (endpoint.id, endpoint.secret_sealed, endpoint.previous_secret_sealed)
        found = self.secrets.get(key)
        if found is None:
            found = self.secrets[key] = await signing_secrets(session, endpoint, now)
        return found


async def build_payload(
    session: AsyncSession, event: WebhookEvent, batch: DeliveryBatch
) -> tuple[dict[str, Any], bool]:
    """The body of the event's delivery as of now, and whether its subject was erased."""
    if event.data is not None:
        # An event of its own (`privacy.*`): ids only, delivered as they were queued.
        data = json.loads(event.data)
        return {"type": event.type, "timestamp": event.occurred_at.isoformat(), "data": data}, False
    module = Module(event.module)
    service, read_schema = _MODULES[module]
    records = service.repository_class(session, event.organization_id)
    # The record first: its read brings the field classification the policy needs.
    record = await records.get(event.record_id)
    if record is not None and record.erased:
        return {}, True
    policy = DisclosurePolicy(
        session,
        integrations_principal(event.organization_id),
        Channel.INTEGRATIONS,
        withheld=await batch.withheld_in(session, event.organization_id),
    )
    disclosure = await policy.fields(records.storage)
    shown = None
    if record is not None:
        DisclosurePolicy.stamp(record, disclosure)
        shown = read_schema.model_validate(record).model_dump(mode="json")
    data = {
        "id": str(event.record_id),
        "module": module.value,
        "version": event.record_version,
        "record": shown,
        "withheld_fields": list(disclosure.withheld),
        "masked_fields": list(disclosure.masked),
    }
    body = {"type": event.type, "timestamp": event.occurred_at.isoformat(), "data": data}
    return body, False


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """What httpx verifies certificates with by default (its CA bundle), built once a process
    rather than once a batch: loading the bundle costs tens of milliseconds."""
    return httpx.create_ssl_context(trust_env=False)


async def deliver_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime,
    *,
    limit: int = BATCH_SIZE,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Attempt every due delivery this worker can claim (up to `limit`); how many it tried."""
    lease_until = now + timedelta(seconds=settings.webhook_timeout_seconds * 2 + 60)
    async with sessionmaker() as session:
        claimed = [
            row.id
            for row in await repository.claim_due(
                session, now, limit=limit, lease_until=lease_until
            )
        ]
        await commit(session)
    if not claimed:
        return 0
    gate = asyncio.Semaphore(CONCURRENCY)
    batch = DeliveryBatch()
    async with httpx.AsyncClient(
        follow_redirects=False,
        timeout=settings.webhook_timeout_seconds,
        transport=transport,
        trust_env=False,
        verify=_tls_context(),
    ) as http:

        async def one(delivery_id: uuid.UUID) -> None:
            async with gate:
                await attempt(sessionmaker, settings, http, delivery_id, now, batch)

        await asyncio.gather(*(one(delivery_id) for delivery_id in claimed))
    return len(claimed)


async def attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    http: httpx.AsyncClient,
    delivery_id: uuid.UUID,
    now: datetime,
    batch: DeliveryBatch,
) -> None:
    """One attempt at one delivery, its outcome recorded in a transaction of its own."""
    async with sessionmaker() as session:
        parts = await repository.delivery_parts(session, delivery_id)
        if parts is None or parts[0].status != PENDING:
            return
        delivery, event, endpoint = parts
        body, erased = await build_payload(session, event, batch)
        secrets_ = await batch.secrets_of(session, endpoint, now)
        url = endpoint.url
    if erased:
        async with sessionmaker() as session:
            await repository.purge_delivery(session, delivery_id)
            await commit(session)
        observe_delivery("dropped")
        return
    raw = json.dumps(body, separators=(",", ":")).encode()
    message_id = f"msg_{event.id.hex}"
    timestamp = int(now.timestamp())
    code: int | None = None
    error: str | None = None
    wait: timedelta | None = None
    started = time.monotonic()
    try:
        target = await checked_target(url, settings)
        response = await http.post(
            target.url,
            content=raw,
            headers={
                "Host": target.host_header,
                "Content-Type": "application/json",
                "User-Agent": "crm-service-webhooks",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature_header(secrets_, message_id, timestamp, raw),
            },
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
        )
        code = response.status_code
        if code in (429, 503):
            wait = retry_after(response, now)
        outcome = DELIVERED if 200 <= code < 300 else FAILED
        if 300 <= code < 400:
            error = "redirect"
    except TargetRefused as refused:
        outcome, error = "refused", refused.reason
    except httpx.TimeoutException:
        outcome, error = FAILED, "timeout"
    except httpx.HTTPError:
        outcome, error = FAILED, "connection_failed"
    duration_ms = int((time.monotonic() - started) * 1000)
    async with sessionmaker() as session:
        await _record(
            session,
            delivery_id=delivery_id,
            endpoint_id=endpoint.id,
            event_type=event.type,
            now=now,
            outcome=outcome,
            code=code,
            error=error,
            wait=wait,
            duration_ms=duration_ms,
        )
        await commit(session)


async def _record(
    session: AsyncSession,
    *,
    delivery_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    event_type: str,
    now: datetime,
    outcome: str,
    code: int | None,
    error: str | None,
    wait: timedelta | None,
    duration_ms: int,
) -> None:
    parts = await repository.delivery_parts(session, delivery_id)
    if parts is None:  # purged meanwhile (an erasure)
        return
    delivery, _event, endpoint = parts
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_response_code = code
    delivery.last_error = error
    session.add(
        WebhookAttempt(
            organization_id=delivery.organization_id,
            endpoint_id=endpoint_id,
            delivery_id=delivery_id,
            event_type=event_type,
            attempted_at=now,
            outcome=outcome,
            response_code=code,
            error=error,
            duration_ms=duration_ms,
        )
    )
    await session.flush()
    observe_delivery(outcome)
    if outcome == DELIVERED:
        delivery.status = DELIVERED
        delivery.delivered_at = now
    elif code == 410:
        delivery.status = FAILED
        _disable(session, endpoint, "gone", now)
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = FAILED
        first = await repository.first_attempt_at(session, delivery_id) or now
        if not await repository.delivered_since(session, endpoint.id, first):
            _disable(session, endpoint, "failing", now)
    else:
        delivery.next_attempt_at = now + max(wait or timedelta(0), backoff(delivery.attempts))
    await session.flush()


def _disable(session: AsyncSession, endpoint: WebhookEndpoint, reason: str, now: datetime) -> None:
    if not endpoint.enabled:
        return
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.disabled_at = now
    observe_delivery("disabled")
    logger.warning("webhook_endpoint_disabled", endpoint_id=str(endpoint.id), reason=reason)
    audit(
        session,
        Actor.system(endpoint.organization_id),
        AuditAction.WEBHOOK_DISABLED,
        target_type=TARGET_TYPE,
        target_id=endpoint.id,
        reason=reason,
    )


async def redeliver(
    sessionmaker: async_sessionmaker[AsyncSession], delivery_id: uuid.UUID, now: datetime
) -> bool:
    """Make a delivery due again now, whatever became of it (an operator's redelivery); the
    receiver sees the same `webhook-id`. Audited."""
    async with sessionmaker() as session:
        parts = await repository.delivery_parts(session, delivery_id)
        if parts is None:
            return False
        await repository.redeliver(session, delivery_id, now)
        audit(
            session,
            Actor.system(parts[0].organization_id),
            AuditAction.WEBHOOK_REDELIVERED,
            target_type=TARGET_TYPE,
            target_id=parts[2].id,
        )
        await commit(session)
    return True
