"""SQL of the privacy portal, scoped by organization: sign-in codes (counted and used by
single atomic updates, so parallel guesses count one by one and a code opens once) and portal
sessions; and the worker's purge of every organization's expired ones."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.db.repository import OrganizationRepository
from crm_service.portal.models import PortalSession, PortalSignIn


class SignInRepository(OrganizationRepository[PortalSignIn]):
    model = PortalSignIn

    async def by_token_hash(self, token_hash: str) -> PortalSignIn | None:
        result = await self.session.execute(
            self.scoped().where(PortalSignIn.token_hash == token_hash)
        )
        return result.scalar_one_or_none()

    async def count_attempt(self, sign_in_id: uuid.UUID, *, now: datetime, allowed: int) -> bool:
        """Count one attempt at the code, if it may still be tried (unused, unexpired, fewer
        than `allowed` attempts so far); False when it may not."""
        result = await self.session.execute(
            update(PortalSignIn)
            .where(
                PortalSignIn.organization_id == self.organization_id,
                PortalSignIn.id == sign_in_id,
                PortalSignIn.used_at.is_(None),
                PortalSignIn.expires_at > now,
                PortalSignIn.attempts < allowed,
            )
            .values(attempts=PortalSignIn.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def use(self, sign_in_id: uuid.UUID, *, now: datetime) -> bool:
        """Use the code once: only the first of two parallel sign-ins with it changes the row."""
        result = await self.session.execute(
            update(PortalSignIn)
            .where(
                PortalSignIn.organization_id == self.organization_id,
                PortalSignIn.id == sign_in_id,
                PortalSignIn.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


class PortalSessionRepository(OrganizationRepository[PortalSession]):
    model = PortalSession

    async def by_token_hash(self, token_hash: str) -> PortalSession | None:
        result = await self.session.execute(
            self.scoped().where(PortalSession.token_hash == token_hash)
        )
        return result.scalar_one_or_none()

    async def end(self, session_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(PortalSession).where(
                PortalSession.organization_id == self.organization_id,
                PortalSession.id == session_id,
            )
        )


async def forget_expired(session: AsyncSession, now: datetime, *, idle: timedelta) -> int:
    """Sign-ins and sessions of every organization past their time (the worker's job; an
    expired one never opens, so until then it is only kept, never used)."""
    sign_ins = await session.execute(
        delete(PortalSignIn).where(PortalSignIn.expires_at <= now).returning(PortalSignIn.id)
    )
    sessions = await session.execute(
        delete(PortalSession)
        .where(or_(PortalSession.expires_at <= now, PortalSession.last_seen_at <= now - idle))
        .returning(PortalSession.id)
    )
    return len(sign_ins.all()) + len(sessions.all())


async def end_visits_of(
    session: AsyncSession, organization_id: uuid.UUID, email_bidxs: list[str]
) -> int:
    """End every portal session and pending sign-in of these addresses (their blind indexes)
    in one organization: an erased data subject's visit holds their address sealed under the
    organization's key, which erasure does not destroy. Returns how many sessions ended."""
    if not email_bidxs:
        return 0
    await session.execute(
        delete(PortalSignIn).where(
            PortalSignIn.organization_id == organization_id,
            PortalSignIn.email_bidx.in_(email_bidxs),
        )
    )
    ended = await session.execute(
        delete(PortalSession)
        .where(
            PortalSession.organization_id == organization_id,
            PortalSession.email_bidx.in_(email_bidxs),
        )
        .returning(PortalSession.id)
    )
    return len(ended.all())
