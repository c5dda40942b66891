"""Organization security settings: mandatory two-factor and the IP allowlist, and the check
that every sign-in and every authenticated request passes."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.errors import Conflict
from crm_service.orgs import repository
from crm_service.orgs.models import IpAllowlist
from crm_service.orgs.schemas import IpAllowlistRead, IpAllowlistUpdate, SecuritySettings
from crm_service.security.ip_allowlist import IpNotAllowed, is_allowed, parse_networks
from crm_service.security.principal import Principal

logger = structlog.get_logger("crm_service.security")


async def check_client_address(
    session: AsyncSession, organization_id: uuid.UUID, client_ip: str | None, *, user_id: uuid.UUID
) -> None:
    """403 when the organization's allowlist is on and the client is outside it."""
    allowlist = await repository.ip_allowlist(session, organization_id)
    if allowlist is None or not allowlist.enabled:
        return
    if not is_allowed(parse_networks(allowlist.cidrs.split()), client_ip):
        # Names the organization and user, not the address (kept out of logs).
        logger.warning("ip_not_allowed", organization_id=str(organization_id), user_id=str(user_id))
        raise IpNotAllowed()


def _read(allowlist: IpAllowlist | None, client_ip: str | None) -> IpAllowlistRead:
    cidrs = allowlist.cidrs.split() if allowlist is not None else []
    return IpAllowlistRead(
        enabled=bool(allowlist and allowlist.enabled), cidrs=cidrs, your_address=client_ip
    )


async def get_ip_allowlist(*, session: AsyncSession, principal: Principal) -> IpAllowlistRead:
    allowlist = await repository.ip_allowlist(session, principal.organization_id)
    return _read(allowlist, principal.client_ip)


async def set_ip_allowlist(
    *, session: AsyncSession, principal: Principal, payload: IpAllowlistUpdate
) -> IpAllowlistRead:
    networks = parse_networks(payload.cidrs)
    if payload.enabled and not payload.confirm_self_lockout:
        if not is_allowed(networks, principal.client_ip):
            raise Conflict(
                "This list would lock you out: your address is not in it. Add it, or send "
                "`confirm_self_lockout: true` to save anyway."
            )
    allowlist = await repository.ip_allowlist(session, principal.organization_id)
    if allowlist is None:
        allowlist = IpAllowlist(organization_id=principal.organization_id)
        session.add(allowlist)
    allowlist.enabled = payload.enabled
    allowlist.cidrs = "\n".join(str(network) for network in networks)
    await session.flush()
    return _read(allowlist, principal.client_ip)


async def get_security(*, session: AsyncSession, principal: Principal) -> SecuritySettings:
    organization = await repository.organization(session, principal.organization_id)
    return SecuritySettings(mfa_required=organization.mfa_required)


async def set_security(
    *, session: AsyncSession, principal: Principal, payload: SecuritySettings
) -> SecuritySettings:
    organization = await repository.organization(session, principal.organization_id)
    organization.mfa_required = payload.mfa_required
    await session.flush()
    return SecuritySettings(mfa_required=organization.mfa_required)
