"""SQL for users and sessions."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.auth.models import AuthSession, User
from crm_service.db.repository import OrganizationRepository


async def find_user_for_login(session: AsyncSession, email: str) -> User | None:
    """Login names no organization, so this one lookup spans them (by unique email)."""
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def find_session_by_token_hash(session: AsyncSession, token_hash: str) -> AuthSession | None:
    """Bearer lookup: the token hash is the only key a caller presents."""
    result = await session.execute(
        select(AuthSession).where(AuthSession.token_hash == token_hash)
    )
    return result.scalar_one_or_none()


async def email_taken(session: AsyncSession, email: str) -> bool:
    result = await session.execute(select(func.count()).where(User.email == email))
    return bool(result.scalar_one())


class UserRepository(OrganizationRepository[User]):
    model = User

    async def list(self) -> list[User]:
        result = await self.session.execute(self.scoped().order_by(User.created_at, User.id))
        return list(result.scalars())


class SessionRepository(OrganizationRepository[AuthSession]):
    model = AuthSession

    async def end_all_for_user(self, user_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(AuthSession)
            .where(
                AuthSession.organization_id == self.organization_id,
                AuthSession.user_id == user_id,
                AuthSession.ended_at.is_(None),
            )
            .values(ended_at=now)
        )
