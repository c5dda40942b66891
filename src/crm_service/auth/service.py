"""Sign-in rules: login, bearer-token resolution, logout, user management."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access import delegation
from crm_service.access import service as access
from crm_service.audit.actions import AuditAction, Outcome
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.auth import mfa, repository, sso
from crm_service.auth.models import AuthSession, User
from crm_service.auth.passwords import hash_password, needs_rehash, verify_password
from crm_service.auth.schemas import (
    LoginRequest,
    MfaRequired,
    MfaVerify,
    PasswordChange,
    TokenResponse,
    UserCreate,
    UserUpdate,
)
from crm_service.auth.throttle import SignInThrottle, confirm_password, lift_locks
from crm_service.auth.throttle import succeeded as attempts_succeeded
from crm_service.auth.tokens import TOKEN_PREFIX, new_access_token, token_digest
from crm_service.config import Settings
from crm_service.db.base import utcnow
from crm_service.errors import Conflict, InvalidToken, NotFound, TooManyRequests, Unauthorized
from crm_service.orgs.security import check_client_address, enforce_allowlists
from crm_service.security.permissions import BuiltinProfile, Permissions
from crm_service.security.principal import Principal, register_token_resolver
from crm_service.security.scopes import ALL_SCOPES, STANDARD_USER_SCOPES

logger = structlog.get_logger("crm_service.auth")

# Refresh last_used_at at most this often, so reads do not each cost a write.
_TOUCH_INTERVAL = timedelta(seconds=60)


class LoginFailed(Unauthorized):
    """A wrong password, an unknown email, a disabled or locked account: one answer. Its audit
    event commits with the 401, which goes out no sooner than `min_seconds` after the request
    arrived, so that how long the work took tells nothing either."""

    keeps_changes = True

    def __init__(self, min_seconds: float) -> None:
        super().__init__("The email or password is wrong.")
        self.min_seconds = min_seconds


class SignInsThrottled(TooManyRequests):
    slug, title = "sign-in-throttled", "Too many failed sign-ins"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Too many failed sign-ins from this address; try again later.",
            headers={"Retry-After": str(retry_after)},
        )


def normalize_login_email(email: str) -> str:
    return email.strip().casefold()


def scopes_for(permissions: Permissions) -> frozenset:
    return ALL_SCOPES if permissions.administers else STANDARD_USER_SCOPES


async def login(
    *,
    session: AsyncSession,
    payload: LoginRequest,
    settings: Settings,
    now: datetime,
    client_ip: str | None,
    throttle: SignInThrottle,
) -> TokenResponse | MfaRequired:
    """Check the password; then either a session token, or an mfa_token for the second step."""
    email = normalize_login_email(payload.email)
    # Before the request's session touches the database (see auth.throttle).
    verdict = await throttle.reserve(email=email, client_ip=client_ip, now=now)
    if verdict.retry_after is not None:
        logger.warning("login_throttled")
        raise SignInsThrottled(verdict.retry_after)
    user = await repository.find_user_for_login(session, email)
    usable = user is not None and user.is_active and verdict.allowed
    # Unknown email, disabled or locked account and wrong password all cost one Argon2
    # verification and answer alike.
    ok = await verify_password(
        user.password_hash if user is not None and usable else None, payload.password
    )
    if not ok or user is None:
        # The email is personal data: the log names the account only when it exists.
        logger.warning("login_failed", user_id=str(user.id) if user is not None else None)
        if user is not None:
            # An unknown email names no organization, so only the log knows of it.
            actor = Actor.user(user.organization_id, user.id, client_ip)
            reason = (
                "user_disabled"
                if not user.is_active
                else "locked_out"
                if not verdict.allowed
                else "wrong_password"
            )
            audit(
                session,
                actor,
                AuditAction.LOGIN_FAILED,
                target_type="user",
                target_id=user.id,
                outcome=Outcome.FAILURE if verdict.allowed else Outcome.DENIED,
                reason=reason,
            )
            if verdict.reached_cap:
                audit(
                    session,
                    actor,
                    AuditAction.LOCKED_OUT,
                    target_type="user",
                    target_id=user.id,
                    outcome=Outcome.DENIED,
                    reason="password_failures",
                )
        raise LoginFailed(settings.sign_in_failure_seconds)
    await attempts_succeeded(session, user_id=user.id, client_ip=client_ip, now=now)
    await check_client_address(session, user, client_ip)
    try:
        await sso.check_password_sign_in_allowed(session, user)
    except sso.SsoRequired:
        audit(
            session,
            Actor.user(user.organization_id, user.id, client_ip),
            AuditAction.LOGIN_FAILED,
            target_type="user",
            target_id=user.id,
            outcome=Outcome.DENIED,
            reason="sso_required",
        )
        raise
    if needs_rehash(user.password_hash):
        user.password_hash = await hash_password(payload.password)
    owed, must_enrol = await mfa.second_factor_required(session, user)
    if owed:
        token = await mfa.open_challenge(session=session, user=user, now=now)
        return MfaRequired(mfa_token=token, enrolment_required=must_enrol)
    return await open_session(
        session=session,
        user=user,
        settings=settings,
        now=now,
        client_ip=client_ip,
        method="password",
    )


async def open_session(
    *,
    session: AsyncSession,
    user: User,
    settings: Settings,
    now: datetime,
    client_ip: str | None,
    method: str,
) -> TokenResponse:
    """A new session token; the sign-in is audited with how it passed (`method`)."""
    token = new_access_token()
    ttl = settings.session_absolute_ttl_seconds
    session.add(
        AuthSession(
            organization_id=user.organization_id,
            user_id=user.id,
            token_hash=token_digest(token),
            created_at=now,
            last_used_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )
    audit(
        session,
        Actor.user(user.organization_id, user.id, client_ip),
        AuditAction.LOGIN_SUCCEEDED,
        target_type="user",
        target_id=user.id,
        reason=method,
    )
    await session.flush()
    return TokenResponse(access_token=token, expires_in=ttl)


async def complete_second_step(
    *,
    session: AsyncSession,
    payload: MfaVerify,
    settings: Settings,
    now: datetime,
    client_ip: str | None,
) -> TokenResponse:
    step = await mfa.pass_second_step(
        session=session,
        mfa_token=payload.mfa_token,
        code=payload.code,
        now=now,
        client_ip=client_ip,
    )
    await check_client_address(session, step.user, client_ip)
    response = await open_session(
        session=session,
        user=step.user,
        settings=settings,
        now=now,
        client_ip=client_ip,
        method="second_factor",
    )
    return response.model_copy(update={"recovery_codes": step.recovery_codes})


async def principal_from_token(
    *, session: AsyncSession, token: str, client_ip: str | None, settings: Settings, now: datetime
) -> Principal:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        raise InvalidToken()
    context = await repository.bearer_context(session, token_digest(token))
    if context is None:
        raise InvalidToken()
    user = context.user
    if (
        context.ended_at is not None
        or context.expires_at <= now
        or context.last_used_at + timedelta(seconds=settings.session_idle_ttl_seconds) <= now
        or not user.is_active
    ):
        raise InvalidToken()
    enforce_allowlists(
        session,
        user,
        client_ip,
        organization_list=context.organization_allowlist,
        role_list=context.role_allowlist,
    )
    if now - context.last_used_at >= _TOUCH_INTERVAL:
        await repository.touch_session(session, context.session_id, now)
    permissions = access.permissions_of(context.profile)
    return Principal(
        organization_id=user.organization_id,
        user_id=user.id,
        scopes=scopes_for(permissions),
        session_id=context.session_id,
        client_ip=client_ip,
        permissions=permissions,
        profile_id=user.profile_id,
        role_id=user.role_id,
    )


register_token_resolver(TOKEN_PREFIX, principal_from_token)


async def logout(*, session: AsyncSession, principal: Principal) -> None:
    if principal.session_id is None:
        return
    auth_session = await repository.SessionRepository(session, principal.organization_id).get(
        principal.session_id
    )
    if auth_session is not None and auth_session.ended_at is None:
        auth_session.ended_at = utcnow()
        audit(
            session,
            principal,
            AuditAction.LOGGED_OUT,
            target_type="session",
            target_id=auth_session.id,
        )
    await session.flush()


async def add_user(
    *, session: AsyncSession, organization_id: uuid.UUID, payload: UserCreate
) -> User:
    email = normalize_login_email(payload.email)
    if await repository.email_taken(session, email):
        raise Conflict("A user with this email already exists.")
    await access.check_role(session, organization_id, payload.role_id)
    user = User(
        organization_id=organization_id,
        email=email,
        full_name=payload.full_name,
        password_hash=await hash_password(payload.password),
        role_id=payload.role_id,
        is_active=True,
    )
    profile_id = payload.profile_id or await access.builtin_profile_id(
        session,
        organization_id,
        BuiltinProfile.ADMINISTRATOR if payload.is_admin else BuiltinProfile.STANDARD,
    )
    await access.assign_profile(session, user, profile_id)
    return await repository.UserRepository(session, organization_id).add(user)


async def list_users(*, session: AsyncSession, principal: Principal) -> list[User]:
    return await repository.UserRepository(session, principal.organization_id).list()


async def get_user(*, session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> User:
    user = await repository.UserRepository(session, principal.organization_id).get(user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def list_my_sessions(
    *, session: AsyncSession, principal: Principal, now: datetime
) -> list[tuple[AuthSession, bool]]:
    """The caller's open sessions (a signed-in user: its route takes `SignedInUser`), each
    with whether it is the one making this request."""
    sessions = await repository.SessionRepository(session, principal.organization_id).open_for_user(
        principal.signed_in_user_id, now
    )
    return [(item, item.id == principal.session_id) for item in sessions]


async def end_my_session(
    *, session: AsyncSession, principal: Principal, session_id: uuid.UUID, now: datetime
) -> None:
    sessions = repository.SessionRepository(session, principal.organization_id)
    target = await sessions.get(session_id)
    if target is None or target.user_id != principal.user_id or target.ended_at is not None:
        raise NotFound("No such session.")
    target.ended_at = now
    audit(session, principal, AuditAction.SESSION_ENDED, target_type="session", target_id=target.id)
    await session.flush()


async def end_user_sessions(
    *, session: AsyncSession, principal: Principal, user_id: uuid.UUID, now: datetime
) -> None:
    user = await get_user(session=session, principal=principal, user_id=user_id)
    await _check_manages(session, principal, user)
    await repository.SessionRepository(session, principal.organization_id).end_all_for_user(
        user_id, now
    )
    audit(
        session, principal, AuditAction.USER_SESSIONS_ENDED, target_type="user", target_id=user_id
    )


async def unlock_sign_in(
    *, session: AsyncSession, principal: Principal, user_id: uuid.UUID
) -> None:
    """After 100 failed passwords an account waits for this (see auth.throttle)."""
    user = await get_user(session=session, principal=principal, user_id=user_id)
    await _check_manages(session, principal, user)
    await lift_locks(session, user.id)
    audit(
        session, principal, AuditAction.USER_SIGN_IN_UNLOCKED, target_type="user", target_id=user.id
    )


async def change_password(
    *, session: AsyncSession, principal: Principal, payload: PasswordChange, now: datetime
) -> None:
    """Needs the current password; ends every other session of the user (the caller is a
    signed-in user: its route takes `SignedInUser`)."""
    user = await get_user(session=session, principal=principal, user_id=principal.signed_in_user_id)
    await confirm_password(
        session, user, payload.current_password, client_ip=principal.client_ip, now=now
    )
    user.password_hash = await hash_password(payload.new_password)
    await repository.SessionRepository(session, principal.organization_id).end_all_for_user(
        user.id, now, except_session=principal.session_id
    )
    audit(
        session,
        principal,
        AuditAction.USER_PASSWORD_CHANGED,
        target_type="user",
        target_id=user.id,
        fields=["password"],
    )
    await session.flush()


async def _check_manages(session: AsyncSession, principal: Principal, user: User) -> None:
    """Only someone covering a user's profile, and sitting at or above their role, manages
    them."""
    held = access.permissions_of(await access.get_profile_of(session, user))
    delegation.check_manages(principal, held, user_id=user.id)
    await delegation.check_role_placement(
        session, principal, new_role_id=user.role_id, current_role_id=user.role_id, user_id=user.id
    )


async def update_user(
    *,
    session: AsyncSession,
    principal: Principal,
    user_id: uuid.UUID,
    payload: UserUpdate,
    now: datetime,
) -> User:
    """Every rule is checked before anything changes: a refusal then keeps nothing but its
    audit event."""
    organization_id = principal.organization_id
    user = await get_user(session=session, principal=principal, user_id=user_id)
    changes = payload.model_dump(exclude_unset=True)
    if "is_admin" in changes and "profile_id" not in changes:
        if changes["is_admin"] != user.is_admin:
            builtin = (
                BuiltinProfile.ADMINISTRATOR if changes["is_admin"] else BuiltinProfile.STANDARD
            )
            changes["profile_id"] = await access.builtin_profile_id(
                session, organization_id, builtin
            )
    changes.pop("is_admin", None)
    if "role_id" in changes:
        await access.check_role(session, organization_id, changes["role_id"])
    changed = [name for name, value in changes.items() if getattr(user, name) != value]
    new_permissions = None
    if "profile_id" in changed:
        new_permissions = await access.permissions_of_profile_id(
            session, organization_id, changes["profile_id"]
        )
        if new_permissions is None:
            await access.assign_profile(session, user, changes["profile_id"])  # raises 422
    if user.id == principal.user_id and (
        changes.get("is_active") is False or "profile_id" in changed or "role_id" in changed
    ):
        # Each could lock the administrator out (no rights, or a narrower IP allowlist).
        raise Conflict("You cannot disable yourself or change your own profile or role.")
    await _check_manages(session, principal, user)
    if new_permissions is not None:
        delegation.check_grant(
            principal,
            new_permissions,
            reason="grant_beyond_own",
            target_type="user",
            target_id=user.id,
        )
    if "role_id" in changed:
        await delegation.check_role_placement(
            session,
            principal,
            new_role_id=changes["role_id"],
            current_role_id=user.role_id,
            user_id=user.id,
        )
    demoted = new_permissions is not None and not new_permissions.administrator
    if user.is_admin and user.is_active and (demoted or changes.get("is_active") is False):
        await delegation.keep_an_administrator(session, principal, user_id=user.id)
    if "profile_id" in changed:
        await access.assign_profile(session, user, changes["profile_id"])
    for name in changed:
        if name != "profile_id":
            setattr(user, name, changes[name])
    if changes.get("is_active") is False:
        await repository.SessionRepository(session, organization_id).end_all_for_user(user.id, now)
    if changed:
        audit(
            session,
            principal,
            AuditAction.USER_UPDATED,
            target_type="user",
            target_id=user.id,
            fields=changed,
        )
    await session.flush()
    return user
