"""SQL for webhooks: endpoints and deliveries of one organization, and the cross-organization
queries the delivery worker needs (claiming due deliveries: SKIP LOCKED on PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.db.repository import OrganizationRepository
from crm_service.integrations.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from crm_service.records.models import ProcessingLockKind, SubjectProcessingLock

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class WebhookEndpointRepository(OrganizationRepository[WebhookEndpoint]):
    model = WebhookEndpoint

    async def all(self) -> list[WebhookEndpoint]:
        statement = self.scoped().order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        return list((await self.session.execute(statement)).scalars())

    async def enabled(self) -> list[WebhookEndpoint]:
        statement = self.scoped().where(WebhookEndpoint.enabled.is_(True))
        return list((await self.session.execute(statement)).scalars())


class WebhookOutbox(OrganizationRepository[WebhookEvent]):
    """Events and their deliveries, written in the change's transaction."""

    model = WebhookEvent

    async def enqueue(self, event: WebhookEvent, endpoint_ids: list[uuid.UUID]) -> None:
        self.session.add(event)
        await self.session.flush()  # before its deliveries, which refer to it
        for endpoint_id in endpoint_ids:
            self.session.add(
                WebhookDelivery(
                    organization_id=self.organization_id,
                    endpoint_id=endpoint_id,
                    event_id=event.id,
                    status=PENDING,
                    attempts=0,
                    next_attempt_at=event.occurred_at,
                    created_at=event.occurred_at,
                )
            )
        await self.session.flush()

    async def purge_subject(self, subject_id: uuid.UUID) -> int:
        """Delete the subject's events and every delivery of them (the erasure's part)."""
        events = select(WebhookEvent.id).where(
            WebhookEvent.organization_id == self.organization_id,
            WebhookEvent.subject_id == subject_id,
        )
        await self.session.execute(
            delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(events))
        )
        result = await self.session.execute(
            delete(WebhookEvent).where(
                WebhookEvent.organization_id == self.organization_id,
                WebhookEvent.subject_id == subject_id,
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def attempts(
        self, endpoint_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[WebhookAttempt]:
        statement = select(WebhookAttempt).where(
            WebhookAttempt.organization_id == self.organization_id,
            WebhookAttempt.endpoint_id == endpoint_id,
        )
        if after is not None:
            value, id_ = after
            statement = statement.where(
                or_(
                    WebhookAttempt.attempted_at < value,
                    and_(WebhookAttempt.attempted_at == value, WebhookAttempt.id < id_),
                )
            )
        statement = statement.order_by(
            WebhookAttempt.attempted_at.desc(), WebhookAttempt.id.desc()
        ).limit(limit + 1)
        return list((await self.session.execute(statement)).scalars())


# -- the delivery worker (every organization) ---------------------------------------------


def _not_restricted() -> Any:
    """The event's data subject is not restricted (their events wait until it is lifted)."""
    return ~exists().where(
        SubjectProcessingLock.organization_id == WebhookEvent.organization_id,
        SubjectProcessingLock.subject_id == WebhookEvent.subject_id,
        SubjectProcessingLock.kind == ProcessingLockKind.RESTRICTED.value,
    )


async def claim_due(
    session: AsyncSession, now: datetime, *, limit: int, lease_until: datetime
) -> list[WebhookDelivery]:
    """Take up to `limit` due deliveries of enabled endpoints, oldest event first, and lease
    them until `lease_until` (committed by the caller before any network call): another
    worker skips them, and one that dies mid-attempt leaves them due again at the lease's end.
    """
    statement = (
        select(WebhookDelivery)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            WebhookEndpoint.enabled.is_(True),
            _not_restricted(),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookEvent.occurred_at, WebhookDelivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(of=WebhookDelivery, skip_locked=True)
    else:
        # SQLite: take the write lock first, so no other worker reads the same due rows.
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == uuid.UUID(int=0))
            .values(status=WebhookDelivery.status)
        )
    rows = list(
        (await session.execute(statement.execution_options(populate_existing=True))).scalars()
    )
    for row in rows:
        row.next_attempt_at = lease_until
    await session.flush()
    return rows


async def delivery_parts(
    session: AsyncSession, delivery_id: uuid.UUID
) -> tuple[WebhookDelivery, WebhookEvent, WebhookEndpoint] | None:
    statement = (
        select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id == delivery_id)
    )
    row = (await session.execute(statement.execution_options(populate_existing=True))).first()
    return None if row is None else (row[0], row[1], row[2])


async def delivered_since(session: AsyncSession, endpoint_id: uuid.UUID, since: datetime) -> bool:
    statement = select(WebhookAttempt.id).where(
        WebhookAttempt.endpoint_id == endpoint_id,
        WebhookAttempt.outcome == DELIVERED,
        WebhookAttempt.attempted_at >= since,
    )
    return (await session.execute(statement.limit(1))).first() is not None


async def first_attempt_at(session: AsyncSession, delivery_id: uuid.UUID) -> datetime | None:
    statement = (
        select(WebhookAttempt.attempted_at)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.attempted_at)
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def redeliver(session: AsyncSession, delivery_id: uuid.UUID, now: datetime) -> bool:
    """Make a delivery due again now (an operator's redelivery)."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(status=PENDING, next_attempt_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def purge_delivery(session: AsyncSession, delivery_id: uuid.UUID) -> None:
    """A delivery whose data subject was erased: nothing of it may go out any more."""
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.id == delivery_id))


async def endpoints_that_received(
    session: AsyncSession, organization_id: uuid.UUID, subject_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """The webhook endpoints a delivered event of any of these data subjects went to (GDPR
    Art. 19: recipients), first delivered first."""
    if not subject_ids:
        return []
    result = await session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.delivered_at)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookEvent.organization_id == organization_id,
            WebhookEvent.subject_id.in_(subject_ids),
            WebhookDelivery.status == DELIVERED,
        )
        .order_by(WebhookDelivery.delivered_at, WebhookDelivery.endpoint_id)
    )
    return list(dict.fromkeys(endpoint_id for endpoint_id, _ in result.all()))
