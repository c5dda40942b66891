"""The consent feature's queries across organizations, for the worker only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.consent.models import (
    ConsentLink,
    ConsentRequest,
    PublicFormCounter,
    RequestChannel,
    RequestStatus,
    WebformSubmission,
)


async def requests_past_deadline(
    session: AsyncSession, now: datetime, limit: int
) -> list[ConsentRequest]:
    result = await session.execute(
        select(ConsentRequest)
        .where(ConsentRequest.status == RequestStatus.PENDING.value, ConsentRequest.deadline <= now)
        .order_by(ConsentRequest.deadline, ConsentRequest.id)
        .limit(limit)
    )
    return list(result.scalars())


async def pending_email_requests_due_before(
    session: AsyncSession, before: datetime, now: datetime, limit: int
) -> list[ConsentRequest]:
    """Pending email requests whose deadline falls before `before` (reminder candidates)."""
    result = await session.execute(
        select(ConsentRequest)
        .where(
            ConsentRequest.status == RequestStatus.PENDING.value,
            ConsentRequest.channel == RequestChannel.EMAIL.value,
            ConsentRequest.deadline > now,
            ConsentRequest.deadline <= before,
        )
        .order_by(ConsentRequest.deadline, ConsentRequest.id)
        .limit(limit)
    )
    return list(result.scalars())


async def expired_submissions(
    session: AsyncSession, now: datetime, limit: int
) -> list[WebformSubmission]:
    result = await session.execute(
        select(WebformSubmission)
        .where(
            WebformSubmission.expires_at <= now,
            WebformSubmission.confirmed_at.is_(None),
            WebformSubmission.data_sealed.is_not(None),
        )
        .order_by(WebformSubmission.expires_at, WebformSubmission.id)
        .limit(limit)
    )
    return list(result.scalars())


async def forget_expired_links(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(ConsentLink).where(ConsentLink.expires_at <= now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def forget_old_counters(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(
        delete(PublicFormCounter).where(PublicFormCounter.window_start < before)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
