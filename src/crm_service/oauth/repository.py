"""SQL of partner access. Client management is scoped by organization; the token endpoint
finds a client by its id (a request to it names no organization) and the bearer check finds a
token by its hash, each in one statement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.db.repository import OrganizationRepository, insert_ignoring_conflicts
from crm_service.oauth.models import OAuthClient, OAuthToken, UsedClientAssertion
from crm_service.orgs.models import ComplianceSettings, IpAllowlist


class ClientRepository(OrganizationRepository[OAuthClient]):
    model = OAuthClient

    async def list(self) -> list[OAuthClient]:
        result = await self.session.execute(self.scoped().order_by(OAuthClient.created_at))
        return list(result.scalars())

    async def end_tokens(self, client_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(OAuthToken)
            .where(
                OAuthToken.organization_id == self.organization_id,
                OAuthToken.client_id == client_id,
                OAuthToken.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )


async def client_by_id(session: AsyncSession, client_id: uuid.UUID) -> OAuthClient | None:
    """The client a token request names (any organization: the request names none)."""
    return await session.get(OAuthClient, client_id)


@dataclass(frozen=True, slots=True)
class TokenContext:
    token: OAuthToken
    client: OAuthClient
    organization_allowlist: str | None  # None when the organization's list is off
    compliance_withhold: str | None  # the organization's compliance settings (None: none)


async def token_context(session: AsyncSession, token_hash: str) -> TokenContext | None:
    """The token with this hash, its client, the organization's address list and its
    compliance settings (what the api channel withholds): one statement on the hot path of
    every partner request."""
    statement = (
        select(
            OAuthToken,
            OAuthClient,
            case((IpAllowlist.enabled.is_(True), IpAllowlist.cidrs), else_=None),
            ComplianceSettings.withhold,
        )
        .join(
            OAuthClient,
            (OAuthClient.id == OAuthToken.client_id)
            & (OAuthClient.organization_id == OAuthToken.organization_id),
        )
        .outerjoin(IpAllowlist, IpAllowlist.organization_id == OAuthToken.organization_id)
        .outerjoin(
            ComplianceSettings, ComplianceSettings.organization_id == OAuthToken.organization_id
        )
        .where(OAuthToken.token_hash == token_hash)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else TokenContext(*row)


async def claim_assertion(
    session: AsyncSession, client_id: uuid.UUID, jti_hash: str, expires_at: datetime
) -> bool:
    """Record an assertion id as used; False when it was used before (on any instance: the
    primary key decides)."""
    values = {"client_id": client_id, "jti_hash": jti_hash, "expires_at": expires_at}
    statement = insert_ignoring_conflicts(session, UsedClientAssertion, values)
    result = await session.execute(statement)
    return result.rowcount == 1  # type: ignore[attr-defined]  # DML: a CursorResult


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    """Tokens and assertion ids past their expiry: nothing can use them any more."""
    tokens = await session.execute(delete(OAuthToken).where(OAuthToken.expires_at <= now))
    used = await session.execute(
        delete(UsedClientAssertion).where(UsedClientAssertion.expires_at <= now)
    )
    # DML answers a CursorResult, which has the row count the declared Result lacks.
    return (tokens.rowcount or 0) + (used.rowcount or 0)  # type: ignore[attr-defined]
