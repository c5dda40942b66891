"""The authenticated caller, and the dependency aliases routes use to demand one.

Every route that is not on :data:`PUBLIC_PATHS` must depend on :func:`require`; a test walks
the routes to prove it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.config import Settings
from crm_service.db.session import DbSession
from crm_service.errors import Forbidden, InvalidToken, Unauthorized
from crm_service.security.permissions import Permissions, Right
from crm_service.security.ratelimit import Policy
from crm_service.security.scopes import Scope

# Routes reachable without a principal. Anything else answers 401 without a valid token.
PUBLIC_PATHS: frozenset[str] = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/auth/login",
        # The second step and required enrolment: authenticated by the mfa_token in the body.
        "/v1/auth/mfa",
        "/v1/auth/mfa/enrolment",
        # Single sign-on: the browser's entry and return, and the one-time code exchange.
        "/v1/auth/sso/{organization_id}/start",
        "/v1/auth/sso/callback",
        "/v1/auth/sso/token",
        # Accepting an invitation: authenticated by the mailed token in the body.
        "/v1/auth/invitations/accept",
        # OAuth 2.0 for partner clients: authenticated by the client's own credentials.
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/introspect",
        # Consent and web forms: a form id or a 256-bit link token is the visitor's proof.
        "/forms/{form_id}",
        "/forms/confirm/{token}",
        "/consent/{token}",
        "/consent/receipt-keys/{organization_id}",
        # The privacy portal: an email address, then the mailed code, then its own session
        # cookie (with a synchronizer token on every POST) are the visitor's proof.
        "/portal/{organization_id}",
        "/portal/{organization_id}/code",
        "/portal/{organization_id}/sign-in",
        "/portal/{organization_id}/sign-out",
        "/portal/{organization_id}/data",
        "/portal/{organization_id}/consent",
        "/portal/{organization_id}/consent-requests/{request_id}",
        "/portal/{organization_id}/download",
        "/portal/{organization_id}/requests",
    }
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a user through a session (or, later, a partner client through OAuth)."""

    organization_id: uuid.UUID
    user_id: uuid.UUID | None
    scopes: frozenset[Scope]
    session_id: uuid.UUID | None = None
    client_id: str | None = None
    client_ip: str | None = field(default=None, compare=False)
    # A user's profile and role; None for a partner client, which scopes alone limit.
    permissions: Permissions | None = field(default=None, compare=False)
    profile_id: uuid.UUID | None = None
    role_id: uuid.UUID | None = None
    # A partner client's rate-limit policies (its own, or the defaults); a signed-in session
    # is counted under CRM_SESSION_RATE_LIMIT_* instead.
    rate_limits: tuple[Policy, ...] = field(default=(), compare=False)
    # The organization's compliance settings (their stored JSON, None for none), when the
    # token resolver read them in the same statement as the token: the disclosure policy
    # then needs no statement of its own. Not read: `compliance_read` is False.
    compliance_withhold: str | None = field(default=None, compare=False)
    compliance_read: bool = field(default=False, compare=False)

    @property
    def is_partner(self) -> bool:
        """A partner client's token: scopes alone limit it, and no human right is its."""
        return self.client_id is not None and self.user_id is None

    @property
    def signed_in_user_id(self) -> uuid.UUID:
        """The signed-in user's id, for what only a person has (routes taking `SignedInUser`);
        a partner token asking is refused as `require_user` refuses it."""
        if self.user_id is None:
            raise SignedInUserOnly()
        return self.user_id

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes

    def has_right(self, right: Right) -> bool:
        return self.permissions is not None and self.permissions.has(right)


_bearer = HTTPBearer(auto_error=False, description="An access token from /v1/auth/login.")


class TokenResolver(Protocol):
    """Turns a bearer token into the principal it stands for, or raises InvalidToken."""

    async def __call__(
        self,
        *,
        session: AsyncSession,
        token: str,
        client_ip: str | None,
        settings: Settings,
        now: datetime,
    ) -> Principal: ...


# Token prefix -> the feature that issued such tokens (sign-in sessions; partner access adds
# its own). Registered by the feature, so this core module imports none.
_resolvers: dict[str, TokenResolver] = {}


def register_token_resolver(prefix: str, resolver: TokenResolver) -> None:
    _resolvers[prefix] = resolver


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_Dependency = TypeVar("_Dependency", bound=Callable[..., Awaitable[Principal]])
# Where a request keeps its principal once resolved: a route whose dependencies ask for it
# twice (an alias and a right, say) resolves and counts it once.
_RESOLVED = "crm_principal"


async def authenticate(request: Request, session: DbSession, credentials: Credentials) -> Principal:
    resolved = request.scope.get(_RESOLVED)
    if isinstance(resolved, Principal):
        return resolved
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send `Authorization: Bearer <access token>`.")
    token = credentials.credentials
    resolver = next(
        (resolver for prefix, resolver in _resolvers.items() if token.startswith(prefix)), None
    )
    if resolver is None:
        raise InvalidToken()
    principal = await resolver(
        session=session,
        token=token,
        client_ip=request.client.host if request.client else None,
        settings=request.app.state.settings,
        now=request.app.state.clock.now(),
    )
    await _count_request(request, principal)
    request.scope[_RESOLVED] = principal
    return principal


def authenticating(dependency: _Dependency) -> _Dependency:
    """Mark a dependency that resolves the principal itself (through :func:`authenticate`),
    so the route walk that proves every route needs a principal sees it."""
    dependency.authenticates = True  # type: ignore[attr-defined]
    return dependency


async def _count_request(request: Request, principal: Principal) -> None:
    """Every authenticated request counts against its caller's rate limits (429 when one is
    exhausted): a partner client's policies, or the signed-in session's burst."""
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    if principal.is_partner:
        key, policies = f"client:{principal.client_id}", principal.rate_limits
    elif principal.session_id is not None:
        settings: Settings = request.app.state.settings
        key = f"session:{principal.session_id}"
        policies = (
            Policy.burst(
                settings.session_rate_limit_burst, settings.session_rate_limit_window_seconds
            ),
        )
    else:
        return
    await limiter.enforce(request.scope, key, policies)


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def require(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates and demands every one of `scopes`."""

    # One dependency, not one on top of `authenticate`: each level of the tree costs FastAPI
    # a solving pass on every request.
    @authenticating
    async def dependency(
        request: Request, session: DbSession, credentials: Credentials
    ) -> Principal:
        principal = await authenticate(request, session, credentials)
        missing = [scope.value for scope in scopes if not principal.has(scope)]
        if missing:
            raise InsufficientScope(missing)
        return principal

    dependency.required_scopes = scopes  # type: ignore[attr-defined]
    return dependency


class InsufficientScope(Forbidden):
    """RFC 6750 §3.1: the token is good but lacks a scope the route needs."""

    slug, title = "insufficient-scope", "Insufficient scope"

    def __init__(self, missing: list[str]) -> None:
        needed = " ".join(missing)
        super().__init__(
            f"This needs the scope {', '.join(missing)}.",
            headers={
                "WWW-Authenticate": f'Bearer realm="crm-service", error="insufficient_scope", '
                f'scope="{needed}"'
            },
        )


class SignedInUserOnly(Forbidden):
    slug, title = "signed-in-user-only", "Only for signed-in users"

    def __init__(self) -> None:
        super().__init__("This route is for signed-in users; a partner token cannot use it.")


@authenticating
async def require_user(request: Request, session: DbSession, credentials: Credentials) -> Principal:
    """A dependency for what only a person has: their own account (`/v1/me`), their session."""
    principal = await authenticate(request, session, credentials)
    if principal.user_id is None:
        raise SignedInUserOnly()
    return principal


# A route's signature says it acts for the signed-in user: `principal.user_id` is set.
SignedInUser = Annotated[Principal, Depends(require_user)]


def require_right(right: Right) -> Callable[..., Awaitable[Principal]]:
    """A dependency for administration: the `crm.admin` scope and, for a user, the profile's
    `right`."""

    @authenticating
    async def dependency(
        request: Request, session: DbSession, credentials: Credentials
    ) -> Principal:
        principal = await authenticate(request, session, credentials)
        if not principal.has(Scope.ADMIN) or not principal.has_right(right):
            raise Forbidden(
                f"This needs the scope crm.admin and the administration right {right.value}."
            )
        return principal

    dependency.required_scopes = (Scope.ADMIN,)  # type: ignore[attr-defined]
    return dependency
