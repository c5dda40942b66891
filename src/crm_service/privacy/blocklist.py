"""The blocklist: the emails and phone numbers of erased data subjects, as blind-index HMACs.

A lead or contact may not be created, changed, converted or restored to a blocklisted email
or phone (409 `blocklisted`, which never says which value): the storage layer asks
:func:`refuse_blocklisted` whenever it writes a new email or phone, and the recycle bin asks
it before a restore. Web-form intake asks :func:`is_blocklisted` and drops the submission
while answering as usual. Admins list entries (id and date only) and remove one when the
person comes back of their own accord.

Phone numbers and mobile numbers share one kind (`phone`): a number erased as someone's
mobile is refused as anyone's phone too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction, Outcome
from crm_service.audit.service import record as audit
from crm_service.crypto.blind_index import IndexKind, blind_index
from crm_service.crypto.service import keyring_for
from crm_service.errors import Blocklisted
from crm_service.privacy.models import BlocklistEntry
from crm_service.security.principal import Principal

# (kind, HMAC) pairs; kind is "email" or "phone".
Identifier = tuple[str, str]

BLOCKABLE = (IndexKind.EMAIL, IndexKind.PHONE)


def identifiers_of(record: object, fields: Iterable[str] | None = None) -> set[Identifier]:
    """The blind indexes of a lead's or contact's emails and phones (of `fields` only, when
    given), read from its index columns."""
    indexed: dict[str, IndexKind] = getattr(record, "__indexed_fields__", {})
    found: set[Identifier] = set()
    for field, kind in indexed.items():
        if kind not in BLOCKABLE or (fields is not None and field not in fields):
            continue
        value = getattr(record, f"{field}_bidx", None)
        if value is not None:
            found.add((kind.value, value))
    return found


async def blocklisted(
    session: AsyncSession, organization_id: uuid.UUID, identifiers: Iterable[Identifier]
) -> bool:
    wanted = list(set(identifiers))
    if not wanted:
        return False
    statement = (
        select(BlocklistEntry.id)
        .where(
            BlocklistEntry.organization_id == organization_id,
            tuple_(BlocklistEntry.kind, BlocklistEntry.hmac).in_(wanted),
        )
        .limit(1)
    )
    return (await session.execute(statement)).first() is not None


async def refuse_blocklisted(
    session: AsyncSession, organization_id: uuid.UUID, identifiers: Iterable[Identifier]
) -> None:
    """409 `blocklisted` when any of the identifiers is on the blocklist."""
    if await blocklisted(session, organization_id, identifiers):
        raise Blocklisted(
            "An email or phone number given belongs to a data subject who was erased; it "
            "cannot be entered again unless an administrator removes it from the blocklist."
        )


@contextmanager
def audited_refusal(
    principal: Principal, *, target_type: str, target_id: uuid.UUID | None = None
) -> Iterator[None]:
    """A blocklist refusal inside this block is audited (`privacy.blocklist_refused`,
    outcome denied) while everything else the request did is rolled back."""
    try:
        yield
    except Blocklisted as error:

        def keep(session: AsyncSession) -> None:
            audit(
                session,
                principal,
                AuditAction.BLOCKLIST_REFUSED,
                target_type=target_type,
                target_id=target_id,
                outcome=Outcome.DENIED,
                reason="blocklisted",
            )

        error.after_rollback = keep
        raise


async def is_blocklisted(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    email: str | None = None,
    phone: str | None = None,
) -> bool:
    """Whether an email or phone (plaintext, as submitted) is blocklisted; for intake paths
    that drop such submissions silently (web forms) instead of refusing them."""
    key = await keyring_for(session, organization_id).index_key()
    region = session.info.get("phone_region")
    identifiers = [
        (kind.value, blind_index(key, kind, value, phone_region=region))
        for kind, value in ((IndexKind.EMAIL, email), (IndexKind.PHONE, phone))
        if value
    ]
    return await blocklisted(session, organization_id, identifiers)


async def add_entries(
    session: AsyncSession,
    organization_id: uuid.UUID,
    identifiers: Iterable[Identifier],
    *,
    now: datetime,
    receipt_id: uuid.UUID | None,
) -> int:
    """Add what is not yet listed; returns how many entries were added."""
    wanted = set(identifiers)
    if not wanted:
        return 0
    present = set(
        (
            await session.execute(
                select(BlocklistEntry.kind, BlocklistEntry.hmac).where(
                    BlocklistEntry.organization_id == organization_id,
                    tuple_(BlocklistEntry.kind, BlocklistEntry.hmac).in_(list(wanted)),
                )
            )
        ).all()
    )
    added = sorted(wanted - {tuple(row) for row in present})
    for kind, value in added:
        session.add(
            BlocklistEntry(
                id=uuid.uuid4(),
                organization_id=organization_id,
                kind=kind,
                hmac=value,
                created_at=now,
                receipt_id=receipt_id,
            )
        )
    await session.flush()
    return len(added)


async def entries(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[BlocklistEntry]:
    statement = select(BlocklistEntry).where(BlocklistEntry.organization_id == organization_id)
    if after is not None:
        statement = statement.where(
            tuple_(BlocklistEntry.created_at, BlocklistEntry.id) < tuple_(*after)
        )
    statement = statement.order_by(
        BlocklistEntry.created_at.desc(), BlocklistEntry.id.desc()
    ).limit(limit)
    return list((await session.execute(statement)).scalars())


async def remove_entry(
    session: AsyncSession, organization_id: uuid.UUID, entry_id: uuid.UUID
) -> bool:
    result = await session.execute(
        delete(BlocklistEntry)
        .where(BlocklistEntry.organization_id == organization_id, BlocklistEntry.id == entry_id)
        .returning(BlocklistEntry.id)
    )
    return result.first() is not None
