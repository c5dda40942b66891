"""SQL for users and sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access.models import Profile, Role
from crm_service.auth.models import (
    AuthSession,
    IdentityProvider,
    MfaChallenge,
    RecoveryCode,
    SignInAttempt,
    SsoAttempt,
    TotpCredential,
    User,
    UserIdentity,
)
from crm_service.db.base import UTCDateTime
from crm_service.db.repository import OrganizationRepository, insert_ignoring_conflicts
from crm_service.orgs.models import IpAllowlist


async def find_user_for_login(session: AsyncSession, email: str) -> User | None:
    """Login names no organization, so this one lookup spans them (by unique email)."""
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def find_user_id_for_login(session: AsyncSession, email: str) -> uuid.UUID | None:
    return await session.scalar(select(User.id).where(User.email == email))


@dataclass(frozen=True, slots=True)
class BearerContext:
    """Everything a request's principal is made of, read in one round trip as plain values
    (no ORM entities: building three per request cost more than the statement)."""

    session_id: uuid.UUID
    ended_at: datetime | None
    expires_at: datetime
    last_used_at: datetime
    user: Any  # the user's id, organization_id, is_active, profile_id and role_id
    profile: Any  # the profile's module_permissions, view_sensitive, rights and builtin
    organization_allowlist: str | None  # None when the organization's list is off
    role_allowlist: str | None


def _bearer_statement():  # noqa: ANN202 - a select()
    return (
        select(
            AuthSession.id,
            AuthSession.ended_at,
            AuthSession.expires_at,
            AuthSession.last_used_at,
            User.id.label("user_id"),
            User.organization_id,
            User.is_active,
            User.profile_id,
            User.role_id,
            Profile.module_permissions,
            Profile.view_sensitive,
            Profile.rights,
            Profile.builtin,
            case((IpAllowlist.enabled.is_(True), IpAllowlist.cidrs), else_=None),
            Role.ip_allowlist,
        )
        .join(
            User,
            (User.id == AuthSession.user_id)
            & (User.organization_id == AuthSession.organization_id),
        )
        .join(Profile, Profile.id == User.profile_id)
        .outerjoin(IpAllowlist, IpAllowlist.organization_id == User.organization_id)
        .outerjoin(Role, (Role.id == User.role_id) & (Role.organization_id == User.organization_id))
        .where(AuthSession.token_hash == bindparam("token_hash"))
    )


# Built once: every authenticated request runs it, and a statement object reused keeps its
# cache key, so SQLAlchemy neither rebuilds nor re-keys it per request.
_BEARER = _bearer_statement()
_TOUCH = (
    update(AuthSession)
    .where(AuthSession.id == bindparam("session_id"))
    .values(last_used_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


async def bearer_context(session: AsyncSession, token_hash: str) -> BearerContext | None:
    """The session with this token hash, its user, the user's profile and the address lists
    that apply to them: one statement on the hot path of every authenticated request."""
    row = (await session.execute(_BEARER, {"token_hash": token_hash})).first()
    if row is None:
        return None
    (
        session_id,
        ended_at,
        expires_at,
        last_used_at,
        user_id,
        organization_id,
        is_active,
        profile_id,
        role_id,
        module_permissions,
        view_sensitive,
        rights,
        builtin,
        organization_allowlist,
        role_allowlist,
    ) = row
    return BearerContext(
        session_id=session_id,
        ended_at=ended_at,
        expires_at=expires_at,
        last_used_at=last_used_at,
        user=SimpleNamespace(
            id=user_id,
            organization_id=organization_id,
            is_active=is_active,
            profile_id=profile_id,
            role_id=role_id,
        ),
        profile=SimpleNamespace(
            module_permissions=module_permissions,
            view_sensitive=view_sensitive,
            rights=rights,
            builtin=builtin,
        ),
        organization_allowlist=organization_allowlist,
        role_allowlist=role_allowlist,
    )


async def touch_session(session: AsyncSession, session_id: uuid.UUID, now: datetime) -> None:
    """Note that a session was used (for its idle timeout)."""
    await session.execute(_TOUCH, {"session_id": session_id, "now": now})


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

    async def end_all_for_user(
        self, user_id: uuid.UUID, now: datetime, *, except_session: uuid.UUID | None = None
    ) -> None:
        statement = update(AuthSession).where(
            AuthSession.organization_id == self.organization_id,
            AuthSession.user_id == user_id,
            AuthSession.ended_at.is_(None),
        )
        if except_session is not None:
            statement = statement.where(AuthSession.id != except_session)
        await self.session.execute(
            statement.values(ended_at=now).execution_options(synchronize_session=False)
        )

    async def open_for_user(self, user_id: uuid.UUID, now: datetime) -> list[AuthSession]:
        result = await self.session.execute(
            self.scoped()
            .where(
                AuthSession.user_id == user_id,
                AuthSession.ended_at.is_(None),
                AuthSession.expires_at > now,
            )
            .order_by(AuthSession.created_at.desc())
        )
        return list(result.scalars())


class TotpRepository(OrganizationRepository[TotpCredential]):
    model = TotpCredential

    async def for_user(self, user_id: uuid.UUID) -> TotpCredential | None:
        result = await self.session.execute(self.scoped().where(TotpCredential.user_id == user_id))
        return result.scalar_one_or_none()

    async def claim_step(self, credential_id: uuid.UUID, step: int) -> bool:
        """Record `step` as used unless it (or a later one) already was. Atomic: of two
        instances verifying one code at the same moment, exactly one gets True."""
        result = await self.session.execute(
            update(TotpCredential)
            .where(
                TotpCredential.organization_id == self.organization_id,
                TotpCredential.id == credential_id,
                or_(TotpCredential.last_used_step.is_(None), TotpCredential.last_used_step < step),
            )
            .values(last_used_step=step)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]  # DML: a CursorResult


class RecoveryCodeRepository(OrganizationRepository[RecoveryCode]):
    model = RecoveryCode

    async def unused(self, user_id: uuid.UUID, lookup: str | None = None) -> list[RecoveryCode]:
        statement = self.scoped().where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
        )
        if lookup is not None:
            statement = statement.where(RecoveryCode.lookup == lookup)
        return list((await self.session.execute(statement)).scalars())

    async def delete_for_user(self, user_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(RecoveryCode).where(
                RecoveryCode.organization_id == self.organization_id,
                RecoveryCode.user_id == user_id,
            )
        )

    async def claim(self, code_id: uuid.UUID, now: datetime) -> bool:
        """Mark a code used; False when another request used it first."""
        result = await self.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.organization_id == self.organization_id,
                RecoveryCode.id == code_id,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]  # DML: a CursorResult


async def find_challenge_by_token_hash(
    session: AsyncSession, token_hash: str
) -> MfaChallenge | None:
    """The mfa_token is the only key its holder presents, like a bearer token."""
    result = await session.execute(
        select(MfaChallenge).where(MfaChallenge.token_hash == token_hash)
    )
    return result.scalar_one_or_none()


class MfaChallengeRepository(OrganizationRepository[MfaChallenge]):
    model = MfaChallenge

    async def claim(self, challenge_id: uuid.UUID, now: datetime) -> bool:
        result = await self.session.execute(
            update(MfaChallenge)
            .where(
                MfaChallenge.organization_id == self.organization_id,
                MfaChallenge.id == challenge_id,
                MfaChallenge.used_at.is_(None),
                MfaChallenge.expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]  # DML: a CursorResult


async def reserve_mfa_attempt(
    session: AsyncSession, user_id: uuid.UUID, *, now: datetime, limit: int
) -> bool:
    """Count an attempt at the second factor before it is checked: atomically, and only while
    the account is unlocked and under `limit` attempts. Parallel guesses therefore cannot get
    more than `limit` codes checked; a success resets the count."""
    result = await session.execute(
        update(User)
        .where(
            User.id == user_id,
            or_(User.mfa_locked_until.is_(None), User.mfa_locked_until <= now),
            User.mfa_failed_count < limit,
        )
        .values(mfa_failed_count=User.mfa_failed_count + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]  # DML: a CursorResult


async def lock_if_exhausted(
    session: AsyncSession, user_id: uuid.UUID, *, now: datetime, limit: int, lock_for: timedelta
) -> bool:
    """After a failed attempt: lock the account when it used up its attempts (True)."""
    result = await session.execute(
        update(User)
        .where(User.id == user_id, User.mfa_failed_count >= limit)
        .values(mfa_failed_count=0, mfa_locked_until=now + lock_for)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]  # DML: a CursorResult


async def reset_mfa_failures(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(mfa_failed_count=0, mfa_locked_until=None)
        .execution_options(synchronize_session=False)
    )


async def identity_provider(
    session: AsyncSession, organization_id: uuid.UUID
) -> IdentityProvider | None:
    result = await session.execute(
        select(IdentityProvider).where(IdentityProvider.organization_id == organization_id)
    )
    return result.scalar_one_or_none()


async def sso_attempt_by_state(session: AsyncSession, state_hash: str) -> SsoAttempt | None:
    """The state (like a bearer token) is the only key the returning browser presents."""
    result = await session.execute(select(SsoAttempt).where(SsoAttempt.state_hash == state_hash))
    return result.scalar_one_or_none()


async def sso_attempt_by_handoff(session: AsyncSession, handoff_hash: str) -> SsoAttempt | None:
    result = await session.execute(
        select(SsoAttempt).where(SsoAttempt.handoff_hash == handoff_hash)
    )
    return result.scalar_one_or_none()


async def identity_by_subject(
    session: AsyncSession, issuer: str, subject: str
) -> UserIdentity | None:
    """(issuer, subject) is unique across the service; the caller checks the organization."""
    result = await session.execute(
        select(UserIdentity).where(UserIdentity.issuer == issuer, UserIdentity.subject == subject)
    )
    return result.scalar_one_or_none()


# -- sign-in throttle -----------------------------------------------------------------------
# Each function runs inside the throttle's own short transaction (see auth.throttle), so its
# row locks are held for a few statements, never across a password verification.


def _insert_missing(session: AsyncSession, keys: list[str], now: datetime):  # noqa: ANN202
    rows = [
        {"key": key, "failures": 0, "window_started_at": now, "updated_at": now} for key in keys
    ]
    return insert_ignoring_conflicts(session, SignInAttempt, rows, index_elements=["key"])


async def ensure_attempt_rows(session: AsyncSession, keys: list[str], now: datetime) -> None:
    # Sorted, so two transactions always lock the same rows in the same order.
    await session.execute(_insert_missing(session, sorted(keys), now))


async def count_address_failure(
    session: AsyncSession, key: str, *, now: datetime, window: timedelta, limit: int
) -> datetime | None:
    """Count one failure in the address's fixed window; when the window is already full,
    count nothing and return when it ends."""
    stamp = literal(now, UTCDateTime())
    expired = SignInAttempt.window_started_at <= now - window
    result = await session.execute(
        update(SignInAttempt)
        .where(
            SignInAttempt.key == key,
            or_(expired, SignInAttempt.failures < limit),
        )
        .values(
            failures=case((expired, 1), else_=SignInAttempt.failures + 1),
            window_started_at=case((expired, stamp), else_=SignInAttempt.window_started_at),
            updated_at=stamp,
        )
        .returning(SignInAttempt.failures)
        .execution_options(synchronize_session=False)
    )
    if result.first() is not None:
        return None
    started = await session.scalar(
        select(SignInAttempt.window_started_at).where(SignInAttempt.key == key)
    )
    return (started or now) + window


async def uncount_address_failure(session: AsyncSession, key: str, now: datetime) -> None:
    await session.execute(
        update(SignInAttempt)
        .where(SignInAttempt.key == key, SignInAttempt.failures > 0)
        .values(failures=SignInAttempt.failures - 1, updated_at=literal(now, UTCDateTime()))
        .execution_options(synchronize_session=False)
    )


async def count_pair_failure(session: AsyncSession, key: str, *, now: datetime) -> int | None:
    """Count one attempt of an account at an address unless that pair is locked out; the
    number of consecutive attempts so far, or None when locked."""
    result = await session.execute(
        update(SignInAttempt)
        .where(
            SignInAttempt.key == key,
            or_(SignInAttempt.locked_until.is_(None), SignInAttempt.locked_until <= now),
        )
        .values(failures=SignInAttempt.failures + 1, updated_at=literal(now, UTCDateTime()))
        .returning(SignInAttempt.failures)
        .execution_options(synchronize_session=False)
    )
    row = result.first()
    return None if row is None else int(row[0])


async def lock_pair(session: AsyncSession, key: str, until: datetime) -> None:
    await session.execute(
        update(SignInAttempt)
        .where(SignInAttempt.key == key)
        .values(locked_until=literal(until, UTCDateTime()))
        .execution_options(synchronize_session=False)
    )


async def count_account_failure(
    session: AsyncSession, key: str, *, now: datetime, cap: int, counts: bool
) -> int | None:
    """The account's consecutive failures from anywhere, counting this one when `counts`;
    None when the account reached `cap` and is locked until an administrator unlocks it."""
    statement = update(SignInAttempt).where(SignInAttempt.key == key, SignInAttempt.failures < cap)
    increment = SignInAttempt.failures + 1 if counts else SignInAttempt.failures
    result = await session.execute(
        statement.values(failures=increment, updated_at=literal(now, UTCDateTime()))
        .returning(SignInAttempt.failures)
        .execution_options(synchronize_session=False)
    )
    row = result.first()
    return None if row is None else int(row[0])


async def clear_attempts(
    session: AsyncSession, keys: list[str], *, prefixes: tuple[str, ...] = ()
) -> None:
    conditions: list[ColumnElement[bool]] = [SignInAttempt.key.in_(keys)] if keys else []
    conditions += [SignInAttempt.key.startswith(prefix, autoescape=True) for prefix in prefixes]
    if conditions:
        await session.execute(delete(SignInAttempt).where(or_(*conditions)))


async def purge_attempts(session: AsyncSession, *, before: datetime, now: datetime) -> int:
    """The worker's clean-up: rows untouched since `before` and not locked now. Account rows at
    the cap are kept: only an administrator lifts that lock."""
    result = await session.execute(
        delete(SignInAttempt).where(
            SignInAttempt.updated_at < before,
            or_(SignInAttempt.locked_until.is_(None), SignInAttempt.locked_until <= now),
            ~SignInAttempt.key.startswith("account:"),
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]  # DML: a CursorResult
