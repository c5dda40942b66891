"""The consent feature's housekeeping for the worker: expired double opt-in submissions
(purged with their key), dead consent links and old throttle counters."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.consent.system_repository import forget_expired_links, forget_old_counters
from crm_service.consent.webforms import purge_expired


async def purge_public_state(session: AsyncSession, now: datetime, batch_size: int) -> int:
    """How many submissions were purged (the batch measure); links and counters go along."""
    purged = await purge_expired(session, now, batch_size)
    await forget_expired_links(session, now)
    await forget_old_counters(session, now - timedelta(days=2))
    return purged
