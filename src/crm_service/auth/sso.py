"""OpenID Connect single sign-on (authorization code + PKCE, state, nonce), per organization.

Flow for a single-page app:
1. The browser goes to `GET /v1/auth/sso/{organization_id}/start` and is redirected to the
   provider (with a fresh state, nonce and S256 code challenge).
2. The provider sends it back to `GET /v1/auth/sso/callback?code&state`. The service
   exchanges the code (with the PKCE verifier), checks the ID token — signature against the
   provider's JWKS, issuer, audience, expiry, nonce — and finds the user linked to
   (issuer, subject): never by email alone. Optionally it creates the user just in time.
3. It redirects the browser to the organization's `frontend_redirect_url` with a one-time
   code in the URL fragment (`#sso_code=...`, or `#sso_error=<reason>`); fragments are not
   sent to servers, so the code stays out of access logs. The app posts it to
   `POST /v1/auth/sso/token` within a minute and receives the usual token response.

Protocol specifics stay in this module; `IdentityProvider.protocol` leaves room for SAML.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import quote_plus, urlencode

import httpx
import structlog
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access import service as access
from crm_service.audit.actions import AuditAction, Outcome
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.auth import repository
from crm_service.auth.models import IdentityProvider, SsoAttempt, User, UserIdentity
from crm_service.auth.passwords import hash_password
from crm_service.auth.tokens import token_digest
from crm_service.crypto.codec import FieldContext
from crm_service.crypto.service import open_organization_secret, seal_organization_secret
from crm_service.errors import (
    BadRequest,
    FieldProblem,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from crm_service.security.permissions import BuiltinProfile
from crm_service.security.principal import Principal

logger = structlog.get_logger("crm_service.auth.sso")

ATTEMPT_TTL = timedelta(minutes=10)
HANDOFF_TTL = timedelta(seconds=60)
CLOCK_LEEWAY_SECONDS = 60
ID_TOKEN_ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]
CALLBACK_PATH = "/v1/auth/sso/callback"
HTTP_TIMEOUT = httpx.Timeout(10.0)


class SsoRefused(Unauthorized):
    """Why a sign-in through the provider was refused, as a short machine-readable reason.
    A 401, so it carries the `WWW-Authenticate` challenge like every other."""

    status, slug, title = 401, "sso-refused", "Single sign-on refused"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Single sign-on was refused ({reason}).")
        self.reason = reason


class SsoRequired(Forbidden):
    slug, title = "sso-required", "Sign in through your organization's identity provider"


# --- configuration -------------------------------------------------------------------


async def discover(issuer: str) -> dict[str, Any]:
    """The provider's discovery document, checked to name the same issuer."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            response = await http.get(url)
            response.raise_for_status()
            document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _config_problem("issuer", "discovery_failed", "no discovery document there") from exc
    if document.get("issuer") != issuer:
        raise _config_problem("issuer", "issuer_mismatch", "the document names another issuer")
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(document.get(name), str):
            raise _config_problem("issuer", "discovery_incomplete", f"no {name} published")
    methods = document.get("code_challenge_methods_supported")
    if methods is not None and "S256" not in methods:
        raise _config_problem("issuer", "pkce_unsupported", "the provider does not offer S256")
    return document


def _config_problem(field: str, rule: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        "The identity provider could not be used.",
        errors=[FieldProblem(field=f"body.{field}", rule=rule, message=message)],
    )


def _secret_context(provider: IdentityProvider) -> FieldContext:
    return FieldContext(
        provider.organization_id, "identity_providers", "client_secret_sealed", provider.id
    )


async def seal_client_secret(
    session: AsyncSession, provider: IdentityProvider, secret: str
) -> None:
    provider.client_secret_sealed = await seal_organization_secret(
        session, provider.organization_id, secret, _secret_context(provider)
    )


async def _client_secret(session: AsyncSession, provider: IdentityProvider) -> str:
    secret = await open_organization_secret(
        session, provider.organization_id, provider.client_secret_sealed, _secret_context(provider)
    )
    if secret is None:
        raise SsoRefused("client_secret_unavailable")
    return secret


async def provider_for(
    session: AsyncSession, organization_id: uuid.UUID
) -> IdentityProvider | None:
    return await repository.identity_provider(session, organization_id)


# --- sign-in ------------------------------------------------------------------------


def redirect_uri(public_base_url: str) -> str:
    return public_base_url.rstrip("/") + CALLBACK_PATH


async def start(
    *,
    session: AsyncSession,
    organization_id: uuid.UUID,
    login_hint: str | None,
    public_base_url: str,
    now: datetime,
) -> str:
    """Record an attempt and return the provider's authorization URL to redirect to."""
    provider = await provider_for(session, organization_id)
    if provider is None:
        raise NotFound("This organization has no single sign-on.")
    state, nonce, verifier = generate_token(43), generate_token(32), generate_token(64)
    session.add(
        SsoAttempt(
            organization_id=organization_id,
            state_hash=token_digest(state),
            nonce=nonce,
            code_verifier=verifier,
            created_at=now,
            expires_at=now + ATTEMPT_TTL,
        )
    )
    await session.flush()
    query = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri(public_base_url),
        "scope": "openid email profile",
        "state": state,
        "nonce": nonce,
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    if login_hint:
        query["login_hint"] = login_hint
    return f"{provider.authorization_endpoint}?{urlencode(query)}"


def validate_id_token(
    id_token: str, *, jwks: dict[str, Any], issuer: str, client_id: str, nonce: str, now: datetime
) -> dict[str, Any]:
    """The ID token's claims, after checking signature, issuer, audience, expiry and nonce."""
    try:
        token = jwt.decode(
            id_token,
            KeySet.import_key_set(cast(KeySetSerialization, jwks)),
            algorithms=ID_TOKEN_ALGORITHMS,
        )
        registry = jwt.JWTClaimsRegistry(
            now=int(now.timestamp()),
            leeway=CLOCK_LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(token.claims)
    except (JoseError, ValueError) as exc:
        raise SsoRefused(getattr(exc, "error", "invalid_id_token")) from exc
    claims = dict(token.claims)
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise SsoRefused("invalid_azp")
    return claims


@dataclass(frozen=True)
class CallbackResult:
    frontend_redirect: str


async def callback(
    *,
    session: AsyncSession,
    code: str | None,
    state: str,
    error: str | None,
    public_base_url: str,
    now: datetime,
    client_ip: str | None,
) -> CallbackResult:
    attempt = await repository.sso_attempt_by_state(session, token_digest(state))
    if attempt is None or attempt.completed_at is not None or attempt.expires_at <= now:
        raise BadRequest("Unknown, used or expired sign-in attempt; start again.")
    attempt.completed_at = now
    provider = await provider_for(session, attempt.organization_id)
    if provider is None:
        raise BadRequest("Single sign-on was switched off meanwhile; start again.")
    try:
        if error is not None or not code:
            raise SsoRefused("provider_error")
        claims = await _exchange(session, provider, attempt, code, public_base_url, now)
        user = await _linked_user(session, provider, claims, now)
        if not user.is_active:
            raise SsoRefused("user_disabled")
        from crm_service.orgs.security import check_client_address

        await check_client_address(session, user, client_ip)
    except (SsoRefused, Forbidden) as refusal:
        reason = refusal.reason if isinstance(refusal, SsoRefused) else refusal.slug
        logger.warning("sso_refused", organization_id=str(provider.organization_id), reason=reason)
        audit(
            session,
            Actor(provider.organization_id, "anonymous", None, client_ip),
            AuditAction.SSO_LOGIN_REFUSED,
            target_type="identity_provider",
            target_id=provider.id,
            outcome=Outcome.FAILURE,
            reason=reason,
        )
        await session.flush()
        return CallbackResult(
            f"{provider.frontend_redirect_url}#{urlencode({'sso_error': reason})}"
        )
    handoff = secrets.token_urlsafe(32)
    attempt.user_id = user.id
    attempt.handoff_hash = token_digest(handoff)
    audit(
        session,
        Actor.user(user.organization_id, user.id, client_ip),
        AuditAction.SSO_LOGIN_SUCCEEDED,
        target_type="identity_provider",
        target_id=provider.id,
    )
    await session.flush()
    return CallbackResult(f"{provider.frontend_redirect_url}#{urlencode({'sso_code': handoff})}")


async def _exchange(
    session: AsyncSession,
    provider: IdentityProvider,
    attempt: SsoAttempt,
    code: str,
    public_base_url: str,
    now: datetime,
) -> dict[str, Any]:
    secret = await _client_secret(session, provider)
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            # RFC 6749 4.1.3 with the RFC 7636 verifier; client_secret_basic authentication.
            response = await http.post(
                provider.token_endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri(public_base_url),
                    "code_verifier": attempt.code_verifier,
                },
                # RFC 6749 2.3.1: form-urlencode the credentials before Basic encoding.
                auth=(quote_plus(provider.client_id), quote_plus(secret)),
                headers={"Accept": "application/json"},
            )
            response.raise_for_status()
            token = response.json()
            jwks_response = await http.get(provider.jwks_uri)
            jwks_response.raise_for_status()
            jwks = jwks_response.json()
    except (httpx.HTTPError, ValueError) as exc:
        logger.warning("sso_exchange_failed", error_type=type(exc).__name__)
        raise SsoRefused("code_exchange_failed") from exc
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise SsoRefused("no_id_token")
    return validate_id_token(
        id_token,
        jwks=jwks,
        issuer=provider.issuer,
        client_id=provider.client_id,
        nonce=attempt.nonce,
        now=now,
    )


async def _linked_user(
    session: AsyncSession, provider: IdentityProvider, claims: dict[str, Any], now: datetime
) -> User:
    identity = await repository.identity_by_subject(session, provider.issuer, str(claims["sub"]))
    if identity is not None:
        if identity.organization_id != provider.organization_id:
            raise SsoRefused("identity_of_another_organization")
        user = await repository.UserRepository(session, provider.organization_id).get(
            identity.user_id
        )
        if user is None:
            raise SsoRefused("unknown_user")
        return user
    if not provider.allow_jit:
        raise SsoRefused("no_linked_user")
    email = claims.get("email")
    if not isinstance(email, str) or claims.get("email_verified") is not True:
        raise SsoRefused("no_verified_email")
    email = email.strip().casefold()
    if await repository.email_taken(session, email):
        # Never link by email: an existing account is linked by an administrator.
        raise SsoRefused("email_in_use")
    user = User(
        organization_id=provider.organization_id,
        email=email,
        full_name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        # A random password no one knows: the account signs in through the provider.
        password_hash=await hash_password(secrets.token_urlsafe(32)),
        is_active=True,
    )
    # Just-in-time users get the Standard profile; an administrator can change it.
    await access.assign_profile(
        session,
        user,
        await access.builtin_profile_id(session, provider.organization_id, BuiltinProfile.STANDARD),
    )
    session.add(user)
    await session.flush()
    audit(
        session,
        Actor.system(provider.organization_id),
        AuditAction.USER_CREATED,
        target_type="user",
        target_id=user.id,
        fields=["email", "full_name"],
        reason="single_sign_on",
    )
    try:
        async with session.begin_nested():
            session.add(
                UserIdentity(
                    organization_id=provider.organization_id,
                    user_id=user.id,
                    issuer=provider.issuer,
                    subject=str(claims["sub"]),
                    created_at=now,
                )
            )
    except IntegrityError as exc:
        raise SsoRefused("identity_conflict") from exc
    return user


async def link_identity(
    *, session: AsyncSession, principal: Principal, user_id: uuid.UUID, subject: str, now: datetime
) -> UserIdentity:
    """An administrator links an existing user to a subject at the organization's provider."""
    organization_id = principal.organization_id
    provider = await provider_for(session, organization_id)
    if provider is None:
        raise NotFound("This organization has no single sign-on.")
    if await repository.UserRepository(session, organization_id).get(user_id) is None:
        raise NotFound("No such user.")
    identity = UserIdentity(
        organization_id=organization_id,
        user_id=user_id,
        issuer=provider.issuer,
        subject=subject,
        created_at=now,
    )
    session.add(identity)
    audit(
        session, principal, AuditAction.USER_IDENTITY_LINKED, target_type="user", target_id=user_id
    )
    await session.flush()
    return identity


async def redeem_handoff(*, session: AsyncSession, code: str, now: datetime) -> User:
    """The user of a completed sign-in, once, within a minute."""
    attempt = await repository.sso_attempt_by_handoff(session, token_digest(code))
    if (
        attempt is None
        or attempt.user_id is None
        or attempt.handoff_used_at is not None
        or attempt.completed_at is None
        or attempt.completed_at + HANDOFF_TTL <= now
    ):
        raise SsoRefused("invalid_sso_code")
    attempt.handoff_used_at = now
    user = await repository.UserRepository(session, attempt.organization_id).get(attempt.user_id)
    if user is None or not user.is_active:
        raise SsoRefused("invalid_sso_code")
    return user


async def check_password_sign_in_allowed(session: AsyncSession, user: User) -> None:
    """When SSO is required, only the break-glass administrator may use a password."""
    provider = await provider_for(session, user.organization_id)
    if provider is not None and provider.require_sso and provider.break_glass_user_id != user.id:
        raise SsoRequired("Your organization requires single sign-on.")
