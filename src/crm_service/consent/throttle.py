"""Fixed-window counters for the public form endpoint, in the database so every instance
shares them (a general rate limiter may replace this; the counters are keyed so that no
address, IP or email, is stored: HMAC-SHA256 under the organization's blind-index key)."""

from __future__ import annotations

import hashlib
import hmac
import math
import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.consent.models import PublicFormCounter
from crm_service.crypto.service import keyring_for
from crm_service.db.repository import insert_ignoring_conflicts
from crm_service.errors import TooManyRequests


class FormThrottled(TooManyRequests):
    slug, title = "rate-limited", "Too many submissions"


async def counter_key(session: AsyncSession, organization_id: uuid.UUID, *parts: str) -> str:
    index_key = await keyring_for(session, organization_id).index_key()
    digest = hmac.new(index_key, "|".join(("webform", *parts)).encode(), hashlib.sha256)
    return "wf:" + digest.hexdigest()


async def hit(session: AsyncSession, key: str, window: timedelta, now: datetime) -> tuple[int, int]:
    """Count one hit; returns the hits in the current window and seconds until it ends."""
    await session.execute(
        insert_ignoring_conflicts(
            session, PublicFormCounter, {"key": key, "window_start": now, "hits": 0}
        )
    )
    row = await session.get(PublicFormCounter, key, with_for_update=True, populate_existing=True)
    assert row is not None
    if row.window_start + window <= now:
        row.window_start, row.hits = now, 0
    row.hits += 1
    await session.flush()
    remaining = (row.window_start + window - now).total_seconds()
    return row.hits, max(1, math.ceil(remaining))


async def limit(
    session: AsyncSession, key: str, *, allowed: int, window: timedelta, now: datetime
) -> None:
    """429 with Retry-After once `allowed` hits were counted in the window."""
    hits, retry_after = await hit(session, key, window, now)
    if hits > allowed:
        raise FormThrottled(
            "Too many submissions of this form; try again later.",
            headers={"Retry-After": str(retry_after)},
        )
