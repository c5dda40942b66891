"""Organization security settings: mandatory two-factor and the IP allowlist, and the check
that every sign-in and every authenticated request passes."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction, Outcome
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.auth import sso
from crm_service.auth.models import IdentityProvider, User
from crm_service.auth.repository import UserRepository
from crm_service.auth.schemas import IdentityProviderRead, IdentityProviderSet
from crm_service.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from crm_service.orgs import repository
from crm_service.orgs.models import IpAllowlist
from crm_service.orgs.schemas import IpAllowlistRead, IpAllowlistUpdate, SecuritySettings
from crm_service.security.ip_allowlist import IpNotAllowed, is_allowed, parse_networks
from crm_service.security.principal import Principal

logger = structlog.get_logger("crm_service.security")


async def check_client_address(session: AsyncSession, user: User, client_ip: str | None) -> None:
    """403 when the client is outside the organization's allowlist (when it is on) or the
    narrower list of the user's role."""
    allowlist = await repository.ip_allowlist(session, user.organization_id)
    role_list = None
    if user.role_id is not None:
        role_list = await repository.role_ip_allowlist(session, user.organization_id, user.role_id)
    enforce_allowlists(
        session,
        user,
        client_ip,
        organization_list=allowlist.cidrs if allowlist is not None and allowlist.enabled else None,
        role_list=role_list,
    )


def enforce_allowlists(
    session: AsyncSession,
    user: User,
    client_ip: str | None,
    *,
    organization_list: str | None,
    role_list: str | None,
) -> None:
    """The check itself, on lists already read (a request's principal reads them with its
    session, in the same round trip)."""
    organization_id, user_id = user.organization_id, user.id
    lists = [cidrs for cidrs in (organization_list, role_list) if cidrs is not None]
    if not all(is_allowed(parse_networks(cidrs.split()), client_ip) for cidrs in lists):
        # Names the organization and user, not the address (kept out of logs).
        logger.warning("ip_not_allowed", organization_id=str(organization_id), user_id=str(user_id))
        audit(
            session,
            Actor.user(organization_id, user_id, client_ip),
            AuditAction.IP_BLOCKED,
            target_type="user",
            target_id=user_id,
            outcome=Outcome.DENIED,
            reason="ip_not_allowed",
        )
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
    audit(
        session,
        principal,
        AuditAction.IP_ALLOWLIST_CHANGED,
        target_type="organization",
        target_id=principal.organization_id,
        fields=["enabled", "cidrs"],
    )
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
    audit(
        session,
        principal,
        AuditAction.SECURITY_CHANGED,
        target_type="organization",
        target_id=principal.organization_id,
        fields=["mfa_required"],
    )
    await session.flush()
    return SecuritySettings(mfa_required=organization.mfa_required)


def _provider_read(provider: IdentityProvider, public_base_url: str) -> IdentityProviderRead:
    base = public_base_url.rstrip("/")
    return IdentityProviderRead(
        protocol=provider.protocol,
        issuer=provider.issuer,
        client_id=provider.client_id,
        frontend_redirect_url=provider.frontend_redirect_url,
        allow_jit=provider.allow_jit,
        require_sso=provider.require_sso,
        break_glass_user_id=provider.break_glass_user_id,
        redirect_uri=sso.redirect_uri(public_base_url),
        start_url=f"{base}/v1/auth/sso/{provider.organization_id}/start",
    )


async def get_identity_provider(
    *, session: AsyncSession, principal: Principal, public_base_url: str
) -> IdentityProviderRead:
    provider = await sso.provider_for(session, principal.organization_id)
    if provider is None:
        raise NotFound("Single sign-on is not configured.")
    return _provider_read(provider, public_base_url)


async def set_identity_provider(
    *,
    session: AsyncSession,
    principal: Principal,
    payload: IdentityProviderSet,
    public_base_url: str,
) -> IdentityProviderRead:
    provider = await sso.provider_for(session, principal.organization_id)
    if provider is None and payload.client_secret is None:
        raise ValidationFailed(
            "The first configuration needs the client secret.",
            errors=[FieldProblem(field="body.client_secret", rule="missing", message="required")],
        )
    if payload.require_sso:
        if payload.break_glass_user_id is None:
            raise ValidationFailed(
                "Requiring single sign-on needs a break-glass administrator.",
                errors=[
                    FieldProblem(
                        field="body.break_glass_user_id",
                        rule="missing",
                        message="required with require_sso",
                    )
                ],
            )
        admin = await UserRepository(session, principal.organization_id).get(
            payload.break_glass_user_id
        )
        if admin is None or not admin.is_admin or not admin.is_active:
            raise ValidationFailed(
                "The break-glass user must be an active administrator of this organization.",
                errors=[
                    FieldProblem(
                        field="body.break_glass_user_id",
                        rule="not_admin",
                        message="no such administrator",
                    )
                ],
            )
    document = await sso.discover(payload.issuer)
    is_new = provider is None
    if provider is None:
        provider = IdentityProvider(
            id=uuid.uuid4(), organization_id=principal.organization_id, protocol="oidc"
        )
    if payload.client_secret is not None:
        # Sealed before the row joins the session: creating a first organization key flushes.
        await sso.seal_client_secret(session, provider, payload.client_secret)
    provider.issuer = payload.issuer
    provider.client_id = payload.client_id
    provider.authorization_endpoint = document["authorization_endpoint"]
    provider.token_endpoint = document["token_endpoint"]
    provider.jwks_uri = document["jwks_uri"]
    provider.frontend_redirect_url = payload.frontend_redirect_url
    provider.allow_jit = payload.allow_jit
    provider.require_sso = payload.require_sso
    provider.break_glass_user_id = payload.break_glass_user_id
    if is_new:
        session.add(provider)
    configured = payload.model_dump(exclude_none=True)  # names only: the secret stays here
    audit(
        session,
        principal,
        AuditAction.SSO_CONFIGURED,
        target_type="identity_provider",
        target_id=provider.id,
        fields=configured,
    )
    await session.flush()
    return _provider_read(provider, public_base_url)


async def remove_identity_provider(*, session: AsyncSession, principal: Principal) -> None:
    provider = await sso.provider_for(session, principal.organization_id)
    if provider is None:
        raise NotFound("Single sign-on is not configured.")
    await session.delete(provider)
    audit(
        session,
        principal,
        AuditAction.SSO_REMOVED,
        target_type="identity_provider",
        target_id=provider.id,
    )
    await session.flush()
