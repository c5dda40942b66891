"""SQL of the audit log: reserving places in a chain, listing events, walking chains."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.chain import GENESIS, head_mac
from crm_service.audit.models import AuditChain, AuditEvent, RecordHistoryEntry
from crm_service.db.repository import insert_ignoring_conflicts
from crm_service.db.tenancy import Organization
from crm_service.records.paging import newest_first_after


@dataclass
class ChainHead:
    """A chain's head as the writer holds it (plain values: written back with one UPDATE)."""

    organization_id: uuid.UUID
    shard: int
    last_seq: int
    last_mac: str
    anchor_seq: int
    anchor_mac: str
    head_mac: str


# A mapped class's table is a Table (SQLAlchemy declares the wider FromClause).
_HEADS: Table = AuditChain.__table__  # type: ignore[assignment]


async def reserve(
    session: AsyncSession,
    organization_id: uuid.UUID,
    shard: int,
    count: int,
    *,
    chains: int,
    key: bytes,
) -> ChainHead:
    """Take `count` places at the end of one chain and lock its head until commit.

    The UPDATE comes first: on PostgreSQL it takes the row lock, on SQLite the write lock,
    so the head read after it cannot be stale. An organization's first event creates the
    heads of all its `chains` at once, so a chain removed whole is missed by verification.
    """
    where = (_HEADS.c.organization_id == organization_id, _HEADS.c.shard == shard)
    for _ in range(2):
        result = await session.execute(
            update(_HEADS)
            .where(*where)
            .values(last_seq=_HEADS.c.last_seq + count)
            .returning(*_HEADS.c)
        )
        row = result.mappings().first()
        if row is not None:
            return ChainHead(**row)
        await session.execute(
            insert_ignoring_conflicts(
                session,
                AuditChain,
                [_fresh_head(organization_id, number, key) for number in range(chains)],
            )
        )
    raise RuntimeError("an audit chain head could not be created")


# One statement per number of events (a transaction writes a few) and their columns: the
# events inserted by a data-modifying CTE of the head's update. Written as text with typed
# parameters because SQLAlchemy does not cache a DML CTE: built once each, it is neither
# rebuilt nor recompiled per request. PostgreSQL only; SQLite writes them in two statements.
_APPEND_IN_ONE: dict[tuple[int, tuple[str, ...]], Any] = {}
_APPEND_IN_ONE_MAX = 16
_HEAD_VALUES = ("last_mac", "anchor_seq", "anchor_mac", "head_mac")


def _append_in_one(count: int, columns: tuple[str, ...]) -> Any:
    statement = _APPEND_IN_ONE.get((count, columns))
    if statement is None:
        events: Table = AuditEvent.__table__  # type: ignore[assignment]
        parameters = [
            bindparam(f"e{n}_{name}", type_=events.c[name].type)
            for n in range(count)
            for name in columns
        ]
        parameters += [
            bindparam("head_organization_id", type_=_HEADS.c.organization_id.type),
            bindparam("head_shard", type_=_HEADS.c.shard.type),
            *(bindparam(f"head_{name}", type_=_HEADS.c[name].type) for name in _HEAD_VALUES),
        ]
        rows = ", ".join(
            "(" + ", ".join(f":e{n}_{name}" for name in columns) + ")" for n in range(count)
        )
        statement = text(
            f"WITH inserted_events AS (INSERT INTO {events.name} ({', '.join(columns)}) "
            f"VALUES {rows}) "
            f"UPDATE {_HEADS.name} SET "
            + ", ".join(f"{name} = :head_{name}" for name in _HEAD_VALUES)
            + " WHERE organization_id = :head_organization_id AND shard = :head_shard"
        ).bindparams(*parameters)
        _APPEND_IN_ONE[(count, columns)] = statement
    return statement


async def append(session: AsyncSession, events: list[dict[str, Any]], head: ChainHead) -> None:
    """Insert a transaction's events and move the chain's head past them: on PostgreSQL in
    one statement, elsewhere in two."""
    on_postgresql = session.get_bind().dialect.name == "postgresql"
    if events and len(events) <= _APPEND_IN_ONE_MAX and on_postgresql:
        columns = tuple(events[0])
        parameters: dict[str, Any] = {
            "head_organization_id": head.organization_id,
            "head_shard": head.shard,
            **{f"head_{name}": getattr(head, name) for name in _HEAD_VALUES},
        }
        for n, event in enumerate(events):
            parameters.update({f"e{n}_{name}": event[name] for name in columns})
        await session.execute(_append_in_one(len(events), columns), parameters)
        return
    if events:
        await session.execute(insert(AuditEvent.__table__), events)  # type: ignore[arg-type]
    await session.execute(
        update(_HEADS)
        .where(_HEADS.c.organization_id == head.organization_id, _HEADS.c.shard == head.shard)
        .values(**{name: getattr(head, name) for name in _HEAD_VALUES})
    )


def _fresh_head(organization_id: uuid.UUID, shard: int, key: bytes) -> dict[str, Any]:
    head = AuditChain(
        organization_id=organization_id,
        shard=shard,
        last_seq=0,
        last_mac=GENESIS,
        anchor_seq=0,
        anchor_mac=GENESIS,
    )
    return {
        "organization_id": organization_id,
        "shard": shard,
        "last_seq": 0,
        "last_mac": GENESIS,
        "anchor_seq": 0,
        "anchor_mac": GENESIS,
        "head_mac": head_mac(key, head),
    }


async def chains(session: AsyncSession, organization_id: uuid.UUID) -> list[AuditChain]:
    result = await session.execute(
        select(AuditChain)
        .where(AuditChain.organization_id == organization_id)
        .order_by(AuditChain.shard)
    )
    return list(result.scalars())


async def organizations_with_events(session: AsyncSession) -> list[uuid.UUID]:
    result = await session.execute(select(AuditChain.organization_id).distinct())
    return sorted(result.scalars())


async def organizations_without_chains(session: AsyncSession) -> list[uuid.UUID]:
    result = await session.execute(
        select(Organization.id)
        .where(
            ~select(AuditChain.shard).where(AuditChain.organization_id == Organization.id).exists()
        )
        .order_by(Organization.id)
    )
    return list(result.scalars())


async def chain_events(
    session: AsyncSession, organization_id: uuid.UUID, shard: int, *, batch: int = 1000
) -> AsyncIterator[AuditEvent]:
    """One chain's events in order, in batches (a log can be large). Every seq, even one
    no writer would produce (zero, negative), so a forged place cannot hide."""
    after: int | None = None
    while True:
        where = [AuditEvent.organization_id == organization_id, AuditEvent.shard == shard]
        if after is not None:
            where.append(AuditEvent.seq > after)
        result = await session.execute(
            select(AuditEvent).where(*where).order_by(AuditEvent.seq, AuditEvent.id).limit(batch)
        )
        rows = list(result.scalars())
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = rows[-1].seq
        session.expunge_all()


async def unchained_events(
    session: AsyncSession, organization_id: uuid.UUID, shards: Sequence[int]
) -> list[AuditEvent]:
    """Events naming a chain that has no head (inserted by hand)."""
    result = await session.execute(
        select(AuditEvent).where(
            AuditEvent.organization_id == organization_id, AuditEvent.shard.not_in(shards)
        )
    )
    return list(result.scalars())


def names_target(target_id: str) -> ColumnElement[bool]:
    """Events about `target_id`: alone (`target_id`) or among others (`target_ids`, a JSON
    list of ids, matched as one quoted element)."""
    escaped = target_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(
        AuditEvent.target_id == target_id,
        AuditEvent.target_ids.like(f'%"{escaped}"%', escape="\\"),
    )


async def page(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    filters: list[Any],
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[AuditEvent]:
    """Newest first, keyset-paged by (occurred_at, id)."""
    statement = select(AuditEvent).where(AuditEvent.organization_id == organization_id, *filters)
    clause = newest_first_after(AuditEvent.occurred_at, AuditEvent.id, after)
    if clause is not None:
        statement = statement.where(clause)
    statement = statement.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
    result = await session.execute(statement.limit(limit + 1))
    return list(result.scalars())


async def last_expired(
    session: AsyncSession, organization_id: uuid.UUID, shard: int, before: datetime
) -> AuditEvent | None:
    """The newest event of a chain older than `before`: retention cuts the chain after it.

    Chains are cut at a prefix only (an event's place is its seq, and times follow seqs
    closely), so the rest still verifies from the new anchor.
    """
    highest = (
        select(func.max(AuditEvent.seq))
        .where(
            AuditEvent.organization_id == organization_id,
            AuditEvent.shard == shard,
            AuditEvent.occurred_at < before,
        )
        .scalar_subquery()
    )
    result = await session.execute(
        select(AuditEvent).where(
            AuditEvent.organization_id == organization_id,
            AuditEvent.shard == shard,
            AuditEvent.seq == highest,
        )
    )
    return result.scalars().first()


async def delete_through(
    session: AsyncSession, organization_id: uuid.UUID, shard: int, seq: int
) -> int:
    result = await session.execute(
        delete(AuditEvent).where(
            AuditEvent.organization_id == organization_id,
            AuditEvent.shard == shard,
            AuditEvent.seq <= seq,
        )
    )
    return result.rowcount or 0  # type: ignore[attr-defined]  # DML: a CursorResult


async def history_page(
    session: AsyncSession,
    organization_id: uuid.UUID,
    module: str,
    record_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[RecordHistoryEntry]:
    """A record's history entries, newest first, keyset-paged by (occurred_at, id)."""
    statement = select(RecordHistoryEntry).where(
        RecordHistoryEntry.organization_id == organization_id,
        RecordHistoryEntry.module == module,
        RecordHistoryEntry.record_id == record_id,
    )
    clause = newest_first_after(RecordHistoryEntry.occurred_at, RecordHistoryEntry.id, after)
    if clause is not None:
        statement = statement.where(clause)
    statement = statement.order_by(
        RecordHistoryEntry.occurred_at.desc(), RecordHistoryEntry.id.desc()
    ).limit(limit)
    return list((await session.execute(statement)).scalars())


async def delete_history(
    session: AsyncSession, organization_id: uuid.UUID, module: str, record_id: uuid.UUID
) -> None:
    await session.execute(
        delete(RecordHistoryEntry).where(
            RecordHistoryEntry.organization_id == organization_id,
            RecordHistoryEntry.module == module,
            RecordHistoryEntry.record_id == record_id,
        )
    )
