"""Recording audit events, writing them into their chains, listing and verifying the log.

Services call :func:`record` in the request's transaction; the event waits in the session
and :func:`write_pending` chains it just before the commit (the route class and every CLI
job commit through :func:`crm_service.db.session.commit`). The chain head is therefore locked
only for the last moment of a transaction. A commit with unwritten events is refused, so an
event can never be dropped silently.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace

import structlog
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from crm_service.audit import chain as macs
from crm_service.audit import repository
from crm_service.audit.actions import AuditAction, Outcome
from crm_service.audit.models import AuditEvent
from crm_service.audit.schemas import AuditEventQuery
from crm_service.crypto.service import keyring_for
from crm_service.db.base import utcnow
from crm_service.db.session import on_transaction_end
from crm_service.records.paging import Cursor, RecordSort
from crm_service.security.principal import Principal

logger = structlog.get_logger("crm_service.audit")

# Chains per organization: concurrent writers of one organization wait on each other only
# when they pick the same chain.
CHAINS = 8
_PENDING = "audit_pending"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a user, a partner client, the system (CLI, worker), or nobody known yet."""

    organization_id: uuid.UUID
    type: str
    id: uuid.UUID | None = None
    client_ip: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        if principal.user_id is not None:
            return cls(principal.organization_id, "user", principal.user_id, principal.client_ip)
        client_id = uuid.UUID(principal.client_id) if principal.client_id else None
        return cls(principal.organization_id, "client", client_id, principal.client_ip)

    @classmethod
    def client(
        cls, organization_id: uuid.UUID, client_id: uuid.UUID, client_ip: str | None
    ) -> Actor:
        return cls(organization_id, "client", client_id, client_ip)

    @classmethod
    def user(cls, organization_id: uuid.UUID, user_id: uuid.UUID, client_ip: str | None) -> Actor:
        return cls(organization_id, "user", user_id, client_ip)

    @classmethod
    def system(cls, organization_id: uuid.UUID) -> Actor:
        return cls(organization_id, "system")


@dataclass(slots=True)
class _Pending:
    actor: Actor
    action: AuditAction
    target_type: str | None
    target_id: str | None
    target_ids: list[str] | None
    fields: list[str]
    outcome: Outcome
    reason: str | None
    occurred_at: datetime
    request_id: str | None = field(default=None)


def _request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value)[:64] if value else None


def record(
    session: AsyncSession,
    actor: Actor | Principal,
    action: AuditAction,
    *,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    target_ids: Sequence[uuid.UUID | str] | None = None,
    fields: Iterable[str] = (),
    outcome: Outcome = Outcome.SUCCESS,
    reason: str | None = None,
) -> None:
    """Note an event; it is chained and written with the transaction's commit.

    An event about several records (of `target_type`) lists their ids in `target_ids`, and
    names one in `target_id` only when it is the only one. `fields` are names, `reason` a
    fixed code: neither may carry a value.
    """
    if isinstance(actor, Principal):
        actor = Actor.of(actor)
    session.info.setdefault(_PENDING, []).append(
        _Pending(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            target_ids=None if target_ids is None else [str(id_) for id_ in target_ids],
            fields=sorted(set(fields)),
            outcome=outcome,
            reason=reason,
            occurred_at=utcnow(),
            request_id=_request_id(),
        )
    )


def has_pending(session: AsyncSession | Session) -> bool:
    return bool(session.info.get(_PENDING))


def discard_pending(session: AsyncSession) -> None:
    """The transaction is rolled back: its events describe nothing that happened."""
    session.info.pop(_PENDING, None)


async def write_pending(session: AsyncSession) -> None:
    """Chain and insert the session's events: one chain per organization per transaction."""
    pending: list[_Pending] = session.info.pop(_PENDING, [])
    if not pending:
        return
    by_organization: dict[uuid.UUID, list[_Pending]] = {}
    for item in pending:
        by_organization.setdefault(item.actor.organization_id, []).append(item)
    # A fixed order, so two transactions spanning the same organizations cannot deadlock.
    for organization_id in sorted(by_organization):
        items = by_organization[organization_id]
        key = await keyring_for(session, organization_id).audit_key()
        chain = await repository.reserve(
            session, organization_id, random.randrange(CHAINS), len(items), chains=CHAINS, key=key
        )
        seq = chain.last_seq - len(items)
        previous = chain.last_mac
        rows = []
        for item in items:
            seq += 1
            row = {
                "id": uuid.uuid4(),
                "organization_id": organization_id,
                "shard": chain.shard,
                "seq": seq,
                "occurred_at": item.occurred_at,
                "actor_type": item.actor.type,
                "actor_id": item.actor.id,
                "action": item.action.value,
                "target_type": item.target_type,
                "target_id": item.target_id,
                "target_ids": None if item.target_ids is None else json.dumps(item.target_ids),
                "fields": json.dumps(item.fields),
                "outcome": item.outcome.value,
                "reason": item.reason,
                "client_ip": item.actor.client_ip,
                "request_id": item.request_id,
            }
            row["mac"] = previous = macs.event_mac(key, SimpleNamespace(**row), previous)
            rows.append(row)
        chain.last_mac = previous
        chain.head_mac = macs.head_mac(key, chain)
        await repository.append(session, rows, chain)


on_transaction_end(before_commit=write_pending, on_rollback=discard_pending)


@sa_event.listens_for(Session, "before_commit")
def _refuse_commit_with_unwritten_events(session: Session) -> None:
    # Savepoints commit too; only the outermost commit must carry the events.
    if has_pending(session) and not session.in_nested_transaction():
        raise RuntimeError(
            "audit events are pending: commit through crm_service.db.session.commit()"
        )


# -- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainBreak:
    organization_id: uuid.UUID
    shard: int | None  # None: the organization as a whole
    event_id: uuid.UUID | None
    seq: int | None
    problem: str

    def describe(self) -> str:
        where = f"organization {self.organization_id}"
        if self.shard is not None:
            where += f" chain {self.shard}"
        if self.event_id is not None:
            return f"{where}: event {self.event_id} (seq {self.seq}): {self.problem}"
        return f"{where}: {self.problem}"


@dataclass
class Verification:
    events: int = 0
    chains: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.breaks


async def verify_organization(
    session: AsyncSession, organization_id: uuid.UUID, result: Verification
) -> None:
    """Walk every chain of one organization; note the first break of each."""
    key = await keyring_for(session, organization_id).audit_key()
    heads = await repository.chains(session, organization_id)
    for stray in await repository.unchained_events(
        session, organization_id, [h.shard for h in heads]
    ):
        result.breaks.append(
            ChainBreak(organization_id, stray.shard, stray.id, stray.seq, "belongs to no chain")
        )
    if not heads:
        # Creating an organization writes its first events, which create every chain.
        result.breaks.append(
            ChainBreak(
                organization_id, None, None, None, "the organization has no audit log at all"
            )
        )
    else:
        # Every chain's head is created with the organization's first event.
        for missing in sorted(set(range(CHAINS)) - {head.shard for head in heads}):
            result.breaks.append(
                ChainBreak(organization_id, missing, None, None, "the whole chain is missing")
            )
    for head in heads:
        result.chains += 1
        shard, last_seq, last_mac = head.shard, head.last_seq, head.last_mac
        anchor_seq, anchor_mac = head.anchor_seq, head.anchor_mac
        if not macs.same(macs.head_mac(key, head), head.head_mac):
            result.breaks.append(
                ChainBreak(organization_id, shard, None, None, "the chain head was altered")
            )
            continue
        expected_seq, previous = anchor_seq + 1, anchor_mac
        broken: ChainBreak | None = None
        async for item in repository.chain_events(session, organization_id, shard):
            result.events += 1
            if broken is not None:
                continue
            if item.seq != expected_seq:
                problem = (
                    f"expected seq {expected_seq}: an event before it is missing"
                    if item.seq > expected_seq
                    else "repeats a place in the chain: an event was inserted"
                )
                broken = ChainBreak(organization_id, shard, item.id, item.seq, problem)
            elif not macs.same(macs.event_mac(key, item, previous), item.mac):
                broken = ChainBreak(
                    organization_id,
                    shard,
                    item.id,
                    item.seq,
                    "its MAC does not match: the event was altered, inserted or moved",
                )
            else:
                previous = item.mac
                expected_seq += 1
        if broken is None and (expected_seq - 1 != last_seq or not macs.same(previous, last_mac)):
            broken = ChainBreak(
                organization_id,
                shard,
                None,
                None,
                f"the chain ends at seq {expected_seq - 1} but its head says {last_seq}: "
                "events at the end are missing",
            )
        if broken is not None:
            result.breaks.append(broken)


async def start_logs(session: AsyncSession) -> int:
    """Begin the log of every organization that has none (they predate the audit log)."""
    started = await repository.organizations_without_chains(session)
    for organization_id in started:
        record(
            session,
            Actor.system(organization_id),
            AuditAction.AUDIT_LOG_STARTED,
            target_type="organization",
            target_id=organization_id,
        )
    return len(started)


# -- retention --------------------------------------------------------------------------------


async def purge_expired(
    session: AsyncSession, organization_id: uuid.UUID, *, retention: timedelta, now: datetime
) -> int:
    """Delete events older than the retention period, moving each chain's anchor past them."""
    key = await keyring_for(session, organization_id).audit_key()
    deleted = 0
    for head in await repository.chains(session, organization_id):
        last = await repository.last_expired(session, organization_id, head.shard, now - retention)
        if last is None:
            continue
        locked = await repository.reserve(
            session, organization_id, head.shard, 0, chains=CHAINS, key=key
        )
        deleted += await repository.delete_through(session, organization_id, head.shard, last.seq)
        locked.anchor_seq, locked.anchor_mac = last.seq, last.mac
        locked.head_mac = macs.head_mac(key, locked)
        await repository.append(session, [], locked)
    if deleted:
        record(
            session, Actor.system(organization_id), AuditAction.AUDIT_PURGED, target_type="audit"
        )
    await session.flush()
    return deleted


# -- reading --------------------------------------------------------------------------------


async def list_events(
    *, session: AsyncSession, principal: Principal, query: AuditEventQuery
) -> tuple[list[AuditEvent], str | None]:
    """The organization's events, newest first, filtered; a cursor for the next page."""
    filters = []
    if query.actor_id is not None:
        filters.append(AuditEvent.actor_id == query.actor_id)
    if query.action is not None:
        filters.append(AuditEvent.action == query.action.value)
    if query.target_type is not None:
        filters.append(AuditEvent.target_type == query.target_type)
    if query.target_id is not None:
        filters.append(repository.names_target(query.target_id))
    if query.since is not None:
        filters.append(AuditEvent.occurred_at >= query.since)
    if query.until is not None:
        filters.append(AuditEvent.occurred_at < query.until)
    after = None
    if query.cursor is not None:
        cursor = Cursor.decode(query.cursor, RecordSort.CREATED_DESC)
        after = (cursor.value, cursor.id)
    rows = await repository.page(
        session, principal.organization_id, filters=filters, after=after, limit=query.limit
    )
    if len(rows) <= query.limit:
        return rows, None
    rows = rows[: query.limit]
    last = rows[-1]
    return rows, Cursor(RecordSort.CREATED_DESC, last.occurred_at, last.id).encode()
