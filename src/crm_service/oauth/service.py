"""Partner access rules: managing clients, client authentication, issuing, revoking and
introspecting tokens, and turning a partner token into a principal.

Tokens are opaque (`crm_pt_` + 256 random bits) and stored only as SHA-256: every use looks the
token up, so a revocation, a disabled or deleted client, or a narrowed scope holds on every
instance at the next request. (A signed JWT would save that lookup but could only be revoked
through a shared deny-list, which is the same lookup.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from urllib.parse import parse_qsl, unquote

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import import_key
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction, Outcome
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.auth.throttle import SignInThrottle, lift_locks
from crm_service.auth.throttle import succeeded as attempts_succeeded
from crm_service.config import Settings
from crm_service.errors import FieldProblem, InvalidToken, NotFound, ValidationFailed
from crm_service.oauth import repository
from crm_service.oauth.errors import (
    ClientThrottled,
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from crm_service.oauth.models import OAuthClient, OAuthToken
from crm_service.oauth.schemas import (
    AssertionAlgorithm,
    ClientCreate,
    ClientUpdate,
    Introspection,
    Jwks,
    RateLimits,
    TokenGranted,
)
from crm_service.orgs import repository as orgs_repository
from crm_service.security.ip_allowlist import IpNotAllowed, is_allowed, parse_networks
from crm_service.security.principal import Principal, register_token_resolver
from crm_service.security.ratelimit import Policy
from crm_service.security.scopes import Scope

TOKEN_PREFIX = "crm_pt_"
SECRET_PREFIX = "crm_cs_"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT_TYPE = "client_credentials"
# Asymmetric algorithms only: a client's JWKS holds public keys.
ASSERTION_ALGORITHMS = list(get_args(AssertionAlgorithm))
MAX_PARAMETER = 8192  # a client assertion is the longest parameter


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret() -> str:
    # 256 random bits; the prefix lets secret scanners recognise a leaked one.
    return SECRET_PREFIX + secrets.token_urlsafe(32)


# -- rate limits -------------------------------------------------------------------------------


def policies_of(client: OAuthClient, settings: Settings) -> tuple[Policy, ...]:
    own = json.loads(client.rate_limits) if client.rate_limits else {}
    burst = own.get("burst") or {
        "limit": settings.client_rate_limit_burst,
        "window_seconds": settings.client_rate_limit_window_seconds,
    }
    daily = own.get("daily") or {"limit": settings.client_rate_limit_daily}
    concurrency = own.get("concurrency") or {"limit": settings.client_rate_limit_concurrency}
    return (
        Policy.burst(burst["limit"], burst["window_seconds"]),
        Policy.daily(daily["limit"]),
        Policy.concurrency(concurrency["limit"]),
    )


def rate_limits_view(client: OAuthClient, settings: Settings) -> dict[str, dict[str, int]]:
    burst, daily, concurrency = policies_of(client, settings)
    return {
        "burst": {"limit": burst.limit, "window_seconds": burst.window or 0},
        "daily": {"limit": daily.limit},
        "concurrency": {"limit": concurrency.limit},
    }


# -- managing clients ----------------------------------------------------------------------


def _problem(field: str, rule: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        "The client's settings are not valid.",
        errors=[FieldProblem(field=field, rule=rule, message=message)],
    )


def _jwks_text(jwks: Jwks | None) -> str | None:
    """Public keys (the schema's shapes), each importable: a point off its curve or a key
    of the wrong length is a 422 `jwk` (never the key's value)."""
    if jwks is None:
        return None
    keys = [key.model_dump(exclude_none=True) for key in jwks.keys]
    for index, key in enumerate(keys):
        try:
            import_key(key)
        except (JoseError, ValueError, TypeError, KeyError):
            raise _problem(
                f"body.jwks.keys.{index}", "jwk", "must be a valid JSON Web Key"
            ) from None
    return json.dumps({"keys": keys}, sort_keys=True)


def _networks_text(cidrs: list[str] | None) -> str | None:
    if cidrs is None:
        return None
    return "\n".join(str(n) for n in parse_networks(cidrs, field="body.ip_allowlist"))


def _limits_text(limits: RateLimits | None) -> str | None:
    if limits is None:
        return None
    return json.dumps(limits.model_dump(exclude_none=True), sort_keys=True) or None


async def create_client(
    *, session: AsyncSession, principal: Principal, payload: ClientCreate
) -> tuple[OAuthClient, str]:
    secret = new_secret()
    client = OAuthClient(
        id=uuid.uuid4(),
        organization_id=principal.organization_id,
        name=payload.name,
        scopes=" ".join(sorted({scope.value for scope in payload.scopes})),
        ip_allowlist=_networks_text(payload.ip_allowlist),
        rate_limits=_limits_text(payload.rate_limits),
        jwks=_jwks_text(payload.jwks),
        secret_hash=digest(secret),
        is_active=True,
    )
    await repository.ClientRepository(session, principal.organization_id).add(client)
    audit(
        session,
        principal,
        AuditAction.OAUTH_CLIENT_CREATED,
        target_type="oauth_client",
        target_id=client.id,
        fields=payload.model_dump(exclude_none=True),
    )
    return client, secret


async def list_clients(*, session: AsyncSession, principal: Principal) -> list[OAuthClient]:
    return await repository.ClientRepository(session, principal.organization_id).list()


async def get_client(
    *, session: AsyncSession, principal: Principal, client_id: uuid.UUID
) -> OAuthClient:
    client = await repository.ClientRepository(session, principal.organization_id).get(client_id)
    if client is None:
        raise NotFound("No such client.")
    return client


async def update_client(
    *,
    session: AsyncSession,
    principal: Principal,
    client_id: uuid.UUID,
    payload: ClientUpdate,
    now: datetime,
) -> OAuthClient:
    client = await get_client(session=session, principal=principal, client_id=client_id)
    changes = payload.model_dump(exclude_unset=True)
    for name in ("name", "scopes", "is_active"):
        if name in changes and changes[name] is None:
            raise _problem(f"body.{name}", "not_null", "may be left out, not null")
    values: dict[str, Any] = {}
    if "name" in changes:
        values["name"] = payload.name
    if "scopes" in changes:
        values["scopes"] = " ".join(sorted({scope.value for scope in payload.scopes or []}))
    if "ip_allowlist" in changes:
        values["ip_allowlist"] = _networks_text(payload.ip_allowlist)
    if "rate_limits" in changes:
        values["rate_limits"] = _limits_text(payload.rate_limits)
    if "jwks" in changes:
        values["jwks"] = _jwks_text(payload.jwks)
    if "is_active" in changes:
        values["is_active"] = payload.is_active
    changed = [name for name, value in values.items() if getattr(client, name) != value]
    for name in changed:
        setattr(client, name, values[name])
    if values.get("is_active") is False and "is_active" in changed:
        # Disabled: every token it holds ends now (and stays ended if it is enabled again).
        await repository.ClientRepository(session, principal.organization_id).end_tokens(
            client.id, now
        )
    if changed:
        audit(
            session,
            principal,
            AuditAction.OAUTH_CLIENT_UPDATED,
            target_type="oauth_client",
            target_id=client.id,
            fields=changed,
        )
    await session.flush()
    return client


async def rotate_secret(
    *,
    session: AsyncSession,
    principal: Principal,
    client_id: uuid.UUID,
    settings: Settings,
    now: datetime,
) -> tuple[OAuthClient, str]:
    """A new secret; the current one keeps working for CRM_CLIENT_SECRET_GRACE_SECONDS (the
    one before it stops now). A lock-out from failed secrets is lifted."""
    client = await get_client(session=session, principal=principal, client_id=client_id)
    secret = new_secret()
    grace = settings.client_secret_grace_seconds
    client.previous_secret_hash = client.secret_hash if grace else None
    client.previous_secret_expires_at = now + timedelta(seconds=grace) if grace else None
    client.secret_hash = digest(secret)
    await lift_locks(session, client.id)
    audit(
        session,
        principal,
        AuditAction.OAUTH_CLIENT_SECRET_ROTATED,
        target_type="oauth_client",
        target_id=client.id,
    )
    await session.flush()
    return client, secret


async def delete_client(
    *, session: AsyncSession, principal: Principal, client_id: uuid.UUID
) -> None:
    """The client and its tokens are gone at once (its tokens go with it)."""
    client = await get_client(session=session, principal=principal, client_id=client_id)
    audit(
        session,
        principal,
        AuditAction.OAUTH_CLIENT_DELETED,
        target_type="oauth_client",
        target_id=client.id,
    )
    await repository.ClientRepository(session, principal.organization_id).delete(client)


# -- the OAuth endpoints ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OAuthRequest:
    """What arrived at an OAuth endpoint, as the router read it."""

    content_type: str | None
    body: bytes
    authorization: str | None
    client_ip: str | None
    now: datetime
    endpoint: str  # this endpoint's public URL (an accepted assertion audience)


def _parameters(request: OAuthRequest) -> dict[str, str]:
    media_type = (request.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise InvalidRequest(
            "Send the parameters form-encoded (application/x-www-form-urlencoded)."
        )
    try:
        pairs = parse_qsl(
            request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False
        )
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not UTF-8.") from None
    parameters: dict[str, str] = {}
    for name, value in pairs:
        if name in parameters:
            # RFC 6749 §3.2: a parameter must not be sent more than once.
            raise InvalidRequest(f"The parameter {name[:40]} is repeated.")
        if len(value) > MAX_PARAMETER:
            raise InvalidRequest(f"The parameter {name[:40]} is too long.")
        parameters[name] = value
    return parameters


@dataclass(frozen=True, slots=True)
class Authenticated:
    client: OAuthClient
    method: str


def _basic_credentials(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("Authenticate the client with HTTP Basic or a client assertion.")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("The Basic credentials are not base64 of id:secret.") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise InvalidClient("The Basic credentials are not base64 of id:secret.")
    # RFC 6749 §2.3.1: both are form-encoded before they are joined.
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def _client_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if len(text) <= 64 else None
    except ValueError:
        return None


def _refuse(session: AsyncSession, client: OAuthClient, client_ip: str | None, reason: str) -> None:
    audit(
        session,
        Actor.client(client.organization_id, client.id, client_ip),
        AuditAction.OAUTH_TOKEN_REFUSED,
        target_type="oauth_client",
        target_id=client.id,
        outcome=Outcome.DENIED if reason == "ip_not_allowed" else Outcome.FAILURE,
        reason=reason,
    )


async def _by_secret(
    session: AsyncSession,
    request: OAuthRequest,
    throttle: SignInThrottle,
    client_text: str,
    secret: str,
) -> OAuthClient:
    client_id = _client_uuid(client_text)
    verdict = await throttle.reserve_client(
        client_id=client_id, client_ip=request.client_ip, now=request.now
    )
    if verdict.retry_after is not None:
        raise ClientThrottled(verdict.retry_after)
    client = await repository.client_by_id(session, client_id) if client_id else None
    presented = digest(secret)
    matches = client is not None and (
        hmac.compare_digest(presented, client.secret_hash)
        or (
            client.previous_secret_hash is not None
            and client.previous_secret_expires_at is not None
            and client.previous_secret_expires_at > request.now
            and hmac.compare_digest(presented, client.previous_secret_hash)
        )
    )
    if client is None or not matches or not client.is_active or not verdict.allowed:
        if client is not None:
            reason = (
                "client_disabled"
                if not client.is_active
                else "locked_out"
                if not verdict.allowed
                else "wrong_secret"
            )
            _refuse(session, client, request.client_ip, reason)
        raise InvalidClient()
    await attempts_succeeded(
        session, user_id=client.id, client_ip=request.client_ip, now=request.now
    )
    return client


def _unverified_claims(assertion: str) -> dict[str, Any]:
    parts = assertion.split(".")
    if len(parts) != 3:
        raise InvalidClient("The client assertion is not a signed JWT.")
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        raise InvalidClient("The client assertion is not a signed JWT.") from None
    if not isinstance(claims, dict):
        raise InvalidClient("The client assertion is not a signed JWT.")
    return claims


def _verified_claims(assertion: str, jwks: str) -> dict[str, Any]:
    for key in json.loads(jwks)["keys"]:
        try:
            token = jwt.decode(assertion, import_key(key), algorithms=ASSERTION_ALGORITHMS)
        except (JoseError, ValueError, TypeError):
            continue
        return dict(token.claims)
    raise InvalidClient("The client assertion's signature matches none of the client's keys.")


async def _by_assertion(
    session: AsyncSession,
    request: OAuthRequest,
    parameters: dict[str, str],
    settings: Settings,
) -> OAuthClient:
    """RFC 7523 §3: iss = sub = the client, aud = this server, a short exp, a fresh jti."""
    if parameters.get("client_assertion_type") != ASSERTION_TYPE:
        raise InvalidClient(f"client_assertion_type must be {ASSERTION_TYPE}.")
    assertion = parameters.get("client_assertion", "")
    claimed = _unverified_claims(assertion)
    client_id = _client_uuid(str(claimed.get("iss", "")))
    client = await repository.client_by_id(session, client_id) if client_id else None
    if client is None or client.jwks is None:
        raise InvalidClient()
    if "client_id" in parameters and parameters["client_id"] != str(client.id):
        raise InvalidClient("client_id and the assertion's issuer differ.")
    claims = _verified_claims(assertion, client.jwks)
    now = request.now.timestamp()
    base = settings.public_base_url.rstrip("/")
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else audiences
    problem = None
    if claims.get("iss") != str(client.id) or claims.get("sub") != str(client.id):
        problem = "iss and sub must both be the client id"
    elif not isinstance(audiences, list) or not {
        f"{base}/oauth/token",
        base,
        request.endpoint,
    } & set(a for a in audiences if isinstance(a, str)):
        problem = "aud must name this token endpoint or issuer"
    elif not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
        problem = "the assertion has expired (or has no exp)"
    elif claims["exp"] > now + settings.client_assertion_max_seconds:
        problem = f"exp may be at most {settings.client_assertion_max_seconds} seconds ahead"
    elif isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now + 30:
        problem = "the assertion is not valid yet"
    elif not isinstance(claims.get("jti"), str) or not 1 <= len(claims["jti"]) <= 256:
        problem = "the assertion needs a jti"
    if problem is not None:
        _refuse(session, client, request.client_ip, "bad_assertion")
        raise InvalidClient(f"Client assertion refused: {problem}.")
    expires_at = datetime.fromtimestamp(float(claims["exp"]), UTC)
    if not await repository.claim_assertion(session, client.id, digest(claims["jti"]), expires_at):
        _refuse(session, client, request.client_ip, "assertion_replayed")
        raise InvalidClient("This client assertion was used before.")
    if not client.is_active:
        _refuse(session, client, request.client_ip, "client_disabled")
        raise InvalidClient()
    return client


def _check_address(
    client: OAuthClient, client_ip: str | None, organization_list: str | None
) -> bool:
    lists = [cidrs for cidrs in (client.ip_allowlist, organization_list) if cidrs is not None]
    return all(is_allowed(parse_networks(cidrs.split()), client_ip) for cidrs in lists)


async def _organization_list(session: AsyncSession, organization_id: uuid.UUID) -> str | None:
    allowlist = await orgs_repository.ip_allowlist(session, organization_id)
    return allowlist.cidrs if allowlist is not None and allowlist.enabled else None


async def authenticate_client(
    *,
    session: AsyncSession,
    request: OAuthRequest,
    parameters: dict[str, str],
    settings: Settings,
    throttle: SignInThrottle,
) -> Authenticated:
    """One authentication method per request (RFC 6749 §2.3): HTTP Basic or a client
    assertion; then the client's and the organization's address lists."""
    has_assertion = "client_assertion" in parameters or "client_assertion_type" in parameters
    if "client_secret" in parameters:
        raise InvalidClient("Send the client secret with HTTP Basic, not in the body.")
    if request.authorization and has_assertion:
        raise InvalidRequest("Use one client authentication method, not two.")
    if request.authorization:
        client_text, secret = _basic_credentials(request.authorization)
        if "client_id" in parameters and parameters["client_id"] != client_text:
            raise InvalidRequest("client_id and the Basic credentials differ.")
        client = await _by_secret(session, request, throttle, client_text, secret)
        method = "client_secret_basic"
    elif has_assertion:
        client = await _by_assertion(session, request, parameters, settings)
        method = "private_key_jwt"
    else:
        raise InvalidClient("Authenticate the client with HTTP Basic or a client assertion.")
    organization_list = await _organization_list(session, client.organization_id)
    if not _check_address(client, request.client_ip, organization_list):
        _refuse(session, client, request.client_ip, "ip_not_allowed")
        raise UnauthorizedClient("This client may not be used from this network address.")
    return Authenticated(client, method)


async def issue_token(
    *,
    session: AsyncSession,
    request: OAuthRequest,
    settings: Settings,
    throttle: SignInThrottle,
) -> TokenGranted:
    """RFC 6749 §4.4: the client credentials grant, and nothing else."""
    parameters = _parameters(request)
    grant_type = parameters.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required.")
    if grant_type != GRANT_TYPE:
        raise UnsupportedGrantType("Only grant_type=client_credentials is supported.")
    authenticated = await authenticate_client(
        session=session,
        request=request,
        parameters=parameters,
        settings=settings,
        throttle=throttle,
    )
    client = authenticated.client
    allowed = set(client.scopes.split())
    if "scope" in parameters:
        asked = set(parameters["scope"].split(" "))
        if not parameters["scope"] or "" in asked or not asked <= allowed:
            raise InvalidScope("The scope asked for is empty, malformed or beyond the client's.")
        granted = asked
    else:
        granted = allowed
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ttl = settings.oauth_token_ttl_seconds
    session.add(
        OAuthToken(
            organization_id=client.organization_id,
            client_id=client.id,
            token_hash=digest(token),
            scopes=" ".join(sorted(granted)),
            issued_at=request.now,
            expires_at=request.now + timedelta(seconds=ttl),
        )
    )
    audit(
        session,
        Actor.client(client.organization_id, client.id, request.client_ip),
        AuditAction.OAUTH_TOKEN_ISSUED,
        target_type="oauth_client",
        target_id=client.id,
        fields=sorted(granted),
        reason=authenticated.method,
    )
    await session.flush()
    return TokenGranted(access_token=token, expires_in=ttl, scope=" ".join(sorted(granted)))


async def _token_of(
    session: AsyncSession, parameters: dict[str, str]
) -> repository.TokenContext | None:
    token = parameters.get("token")
    if not token:
        raise InvalidRequest("token is required.")
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    return await repository.token_context(session, digest(token))


async def revoke(
    *, session: AsyncSession, request: OAuthRequest, settings: Settings, throttle: SignInThrottle
) -> None:
    """RFC 7009: 200 whatever the token; only the client it was issued to ends it."""
    parameters = _parameters(request)
    client = (
        await authenticate_client(
            session=session,
            request=request,
            parameters=parameters,
            settings=settings,
            throttle=throttle,
        )
    ).client
    context = await _token_of(session, parameters)
    if context is None or context.client.id != client.id or context.token.revoked_at is not None:
        return
    context.token.revoked_at = request.now
    audit(
        session,
        Actor.client(client.organization_id, client.id, request.client_ip),
        AuditAction.OAUTH_TOKEN_REVOKED,
        target_type="oauth_client",
        target_id=client.id,
    )
    await session.flush()


async def introspect(
    *, session: AsyncSession, request: OAuthRequest, settings: Settings, throttle: SignInThrottle
) -> Introspection:
    """RFC 7662: a client learns about its own tokens only; anything else is inactive."""
    parameters = _parameters(request)
    client = (
        await authenticate_client(
            session=session,
            request=request,
            parameters=parameters,
            settings=settings,
            throttle=throttle,
        )
    ).client
    context = await _token_of(session, parameters)
    if (
        context is None
        or context.client.id != client.id
        or context.token.revoked_at is not None
        or context.token.expires_at <= request.now
        or not context.client.is_active
    ):
        return Introspection(active=False)
    token = context.token
    scopes = set(token.scopes.split()) & set(client.scopes.split())
    return Introspection(
        active=True,
        scope=" ".join(sorted(scopes)),
        client_id=str(client.id),
        token_type="Bearer",
        exp=int(token.expires_at.timestamp()),
        iat=int(token.issued_at.timestamp()),
        sub=str(client.id),
        iss=settings.public_base_url.rstrip("/"),
    )


# -- partner tokens on /v1 -------------------------------------------------------------------


def _scopes(names: Iterable[str]) -> frozenset[Scope]:
    known = {scope.value for scope in Scope}
    return frozenset(Scope(name) for name in names if name in known and name != Scope.ADMIN)


async def principal_from_token(
    *, session: AsyncSession, token: str, client_ip: str | None, settings: Settings, now: datetime
) -> Principal:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        raise InvalidToken()
    context = await repository.token_context(session, digest(token))
    if context is None:
        raise InvalidToken()
    token_row, client = context.token, context.client
    if token_row.revoked_at is not None or token_row.expires_at <= now or not client.is_active:
        raise InvalidToken()
    if not _check_address(client, client_ip, context.organization_allowlist):
        audit(
            session,
            Actor.client(client.organization_id, client.id, client_ip),
            AuditAction.IP_BLOCKED,
            target_type="oauth_client",
            target_id=client.id,
            outcome=Outcome.DENIED,
            reason="ip_not_allowed",
        )
        raise IpNotAllowed()
    return Principal(
        organization_id=client.organization_id,
        user_id=None,
        # A client narrowed since the token was issued is narrowed at once.
        scopes=_scopes(set(token_row.scopes.split()) & set(client.scopes.split())),
        client_id=str(client.id),
        client_ip=client_ip,
        permissions=None,
        rate_limits=policies_of(client, settings),
        compliance_withhold=context.compliance_withhold,
        compliance_read=True,
    )


register_token_resolver(TOKEN_PREFIX, principal_from_token)


async def forget_expired(session: AsyncSession, now: datetime) -> int:
    return await repository.purge_expired(session, now)
