"""Two-factor rules: TOTP enrolment, second-step verification at login, recovery codes,
per-account throttling, and the organization's "two-factor required" setting.

Every failure of the second step answers the same way — wrong code, replayed code, expired
or used mfa_token, locked account — so an attacker learns nothing from the answer.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction, Outcome
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.auth import repository, totp
from crm_service.auth.models import MfaChallenge, RecoveryCode, TotpCredential, User
from crm_service.auth.passwords import hash_password, verify_password
from crm_service.auth.throttle import confirm_password
from crm_service.auth.tokens import token_digest
from crm_service.crypto.codec import FieldContext
from crm_service.crypto.service import open_organization_secret, seal_organization_secret
from crm_service.errors import Conflict, NotFound, Unauthorized
from crm_service.orgs.repository import organization

logger = structlog.get_logger("crm_service.auth.mfa")

CHALLENGE_PREFIX = "crm_mfa_"
CHALLENGE_TTL = timedelta(minutes=5)
MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)


class SecondFactorFailed(Unauthorized):
    """The one answer to every failed second step. Its throttling state is committed."""

    slug, title = "second-factor-failed", "Second factor failed"
    keeps_changes = True

    def __init__(self) -> None:
        super().__init__("The code is wrong or has expired; sign in again if this persists.")


@dataclass(frozen=True)
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str


def _secret_context(credential: TotpCredential) -> FieldContext:
    return FieldContext(
        credential.organization_id, "totp_credentials", "secret_sealed", credential.id
    )


async def _seal_secret(session: AsyncSession, credential: TotpCredential, secret: str) -> None:
    credential.secret_sealed = await seal_organization_secret(
        session, credential.organization_id, secret, _secret_context(credential)
    )


async def _open_secret(session: AsyncSession, credential: TotpCredential) -> str:
    secret = await open_organization_secret(
        session, credential.organization_id, credential.secret_sealed, _secret_context(credential)
    )
    if secret is None:
        raise SecondFactorFailed()
    return secret


async def begin_enrolment(*, session: AsyncSession, user: User, now: datetime) -> Enrolment:
    """A new, unconfirmed authenticator (replacing an unconfirmed one). Refused when one is
    confirmed: resetting needs the password (see `disable`)."""
    totps = repository.TotpRepository(session, user.organization_id)
    credential = await totps.for_user(user.id)
    if credential is not None and credential.confirmed_at is not None:
        raise Conflict("Two-factor is already on; disable it with your password to enrol again.")
    is_new = credential is None
    if credential is None:
        credential = TotpCredential(
            id=uuid.uuid4(), organization_id=user.organization_id, user_id=user.id, created_at=now
        )
    credential.created_at, credential.last_used_step = now, None
    secret = totp.new_secret()
    # Sealed before the row joins the session: creating a first organization key flushes.
    await _seal_secret(session, credential, secret)
    if is_new:
        session.add(credential)
    await session.flush()
    uri = totp.provisioning_uri(secret, user.email)
    return Enrolment(secret=secret, otpauth_uri=uri, qr_svg=totp.qr_svg_data_uri(uri))


async def _accept_totp(
    session: AsyncSession, credential: TotpCredential, code: str, now: datetime
) -> bool:
    step = totp.matching_step(await _open_secret(session, credential), code, now)
    if step is None:
        return False
    totps = repository.TotpRepository(session, credential.organization_id)
    return await totps.claim_step(credential.id, step)


def _audit_user(
    session: AsyncSession, user: User, client_ip: str | None, action: AuditAction, **details: Any
) -> None:
    audit(
        session,
        Actor.user(user.organization_id, user.id, client_ip),
        action,
        target_type="user",
        target_id=user.id,
        **details,
    )


async def confirm_enrolment(
    *, session: AsyncSession, user: User, code: str, now: datetime, client_ip: str | None
) -> list[str]:
    """Confirm with a first valid code; returns the recovery codes, shown this once."""
    credential = await repository.TotpRepository(session, user.organization_id).for_user(user.id)
    if credential is None or credential.confirmed_at is not None:
        raise NotFound("No two-factor enrolment is waiting for confirmation.")
    if not await _accept_totp(session, credential, code, now):
        raise SecondFactorFailed()
    credential.confirmed_at = now
    codes = await replace_recovery_codes(session=session, user=user, now=now)
    _audit_user(session, user, client_ip, AuditAction.USER_MFA_ENROLLED)
    await session.flush()
    return codes


async def replace_recovery_codes(*, session: AsyncSession, user: User, now: datetime) -> list[str]:
    codes_repository = repository.RecoveryCodeRepository(session, user.organization_id)
    await codes_repository.delete_for_user(user.id)
    codes = []
    for _ in range(RECOVERY_CODES):
        # 12 characters from a 31-letter alphabet: about 59 bits, Argon2id-hashed.
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))
        code = f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"
        session.add(
            RecoveryCode(
                organization_id=user.organization_id,
                user_id=user.id,
                lookup=raw[:4],
                code_hash=await hash_password(raw),
                created_at=now,
            )
        )
        codes.append(code)
    await session.flush()
    return codes


async def _accept_recovery_code(
    session: AsyncSession, user: User, code: str, now: datetime
) -> bool:
    raw = code.replace("-", "").replace(" ", "").lower()
    if len(raw) != 12:
        return False
    codes_repository = repository.RecoveryCodeRepository(session, user.organization_id)
    for candidate in await codes_repository.unused(user.id, lookup=raw[:4]):
        if await verify_password(candidate.code_hash, raw):
            return await codes_repository.claim(candidate.id, now)
    return False


async def second_factor_required(session: AsyncSession, user: User) -> tuple[bool, bool]:
    """(a second step is owed, the user must enrol first)."""
    credential = await repository.TotpRepository(session, user.organization_id).for_user(user.id)
    enrolled = credential is not None and credential.confirmed_at is not None
    required = (await organization(session, user.organization_id)).mfa_required
    return enrolled or required, required and not enrolled


async def open_challenge(*, session: AsyncSession, user: User, now: datetime) -> str:
    token = CHALLENGE_PREFIX + secrets.token_urlsafe(32)
    session.add(
        MfaChallenge(
            organization_id=user.organization_id,
            user_id=user.id,
            token_hash=token_digest(token),
            created_at=now,
            expires_at=now + CHALLENGE_TTL,
        )
    )
    await session.flush()
    return token


async def challenge_user(
    *, session: AsyncSession, mfa_token: str, now: datetime
) -> tuple[MfaChallenge, User]:
    """The challenge and its user, or the one failure answer."""
    if not mfa_token.startswith(CHALLENGE_PREFIX) or len(mfa_token) > 128:
        raise SecondFactorFailed()
    challenge = await repository.find_challenge_by_token_hash(session, token_digest(mfa_token))
    if challenge is None or challenge.used_at is not None or challenge.expires_at <= now:
        raise SecondFactorFailed()
    user = await repository.UserRepository(session, challenge.organization_id).get(
        challenge.user_id
    )
    if user is None or not user.is_active:
        raise SecondFactorFailed()
    return challenge, user


@dataclass(frozen=True)
class SecondStep:
    user: User
    recovery_codes: list[str] | None  # set when this step confirmed a first enrolment


async def pass_second_step(
    *, session: AsyncSession, mfa_token: str, code: str, now: datetime, client_ip: str | None
) -> SecondStep:
    """Check the code for the challenge (TOTP, a recovery code, or the first code of a
    required enrolment); throttle failures per account; consume the challenge once."""
    challenge, user = await challenge_user(session=session, mfa_token=mfa_token, now=now)
    if not await repository.reserve_mfa_attempt(session, user.id, now=now, limit=MAX_FAILURES):
        # Locked: even a right code answers as a wrong one, and does not extend the lock.
        logger.warning("second_factor_refused_while_locked", user_id=str(user.id))
        _audit_user(
            session,
            user,
            client_ip,
            AuditAction.SECOND_FACTOR_FAILED,
            outcome=Outcome.DENIED,
            reason="locked",
        )
        raise SecondFactorFailed()
    credential = await repository.TotpRepository(session, user.organization_id).for_user(user.id)
    recovery_codes = None
    if credential is not None and credential.confirmed_at is None:
        accepted = await _accept_totp(session, credential, code, now)
        if accepted:
            credential.confirmed_at = now
            recovery_codes = await replace_recovery_codes(session=session, user=user, now=now)
            _audit_user(session, user, client_ip, AuditAction.USER_MFA_ENROLLED)
    elif credential is not None:
        accepted = await _accept_totp(
            session, credential, code, now
        ) or await _accept_recovery_code(session, user, code, now)
    else:
        accepted = False
    challenges = repository.MfaChallengeRepository(session, user.organization_id)
    if not accepted or not await challenges.claim(challenge.id, now):
        locked = await repository.lock_if_exhausted(
            session, user.id, now=now, limit=MAX_FAILURES, lock_for=LOCK_FOR
        )
        # Who and what happened, never the code.
        logger.warning("second_factor_failed", user_id=str(user.id), locked_now=locked)
        _audit_user(
            session,
            user,
            client_ip,
            AuditAction.SECOND_FACTOR_FAILED,
            outcome=Outcome.FAILURE,
            reason="wrong_code",
        )
        if locked:
            _audit_user(
                session,
                user,
                client_ip,
                AuditAction.LOCKED_OUT,
                outcome=Outcome.DENIED,
                reason="too_many_failures",
            )
        raise SecondFactorFailed()
    await repository.reset_mfa_failures(session, user.id)
    return SecondStep(user=user, recovery_codes=recovery_codes)


async def disable(
    *,
    session: AsyncSession,
    user: User,
    password: str,
    keep_session: uuid.UUID | None,
    now: datetime,
    client_ip: str | None,
) -> None:
    """Turn two-factor off (to reset it, enrol again). Needs the password; ends the user's
    other sessions."""
    await confirm_password(session, user, password, client_ip=client_ip, now=now)
    totps = repository.TotpRepository(session, user.organization_id)
    credential = await totps.for_user(user.id)
    if credential is None:
        raise NotFound("Two-factor is not on.")
    await session.delete(credential)
    await repository.RecoveryCodeRepository(session, user.organization_id).delete_for_user(user.id)
    await repository.SessionRepository(session, user.organization_id).end_all_for_user(
        user.id, now, except_session=keep_session
    )
    _audit_user(session, user, client_ip, AuditAction.USER_MFA_DISABLED)
    await session.flush()


async def new_recovery_codes(
    *, session: AsyncSession, user: User, password: str, now: datetime, client_ip: str | None
) -> list[str]:
    await confirm_password(session, user, password, client_ip=client_ip, now=now)
    enabled, _ = await status(session=session, user=user)
    if not enabled:
        raise NotFound("Two-factor is not on.")
    codes = await replace_recovery_codes(session=session, user=user, now=now)
    _audit_user(session, user, client_ip, AuditAction.USER_RECOVERY_CODES_REPLACED)
    return codes


async def status(*, session: AsyncSession, user: User) -> tuple[bool, int]:
    credential = await repository.TotpRepository(session, user.organization_id).for_user(user.id)
    enabled = credential is not None and credential.confirmed_at is not None
    left = len(
        await repository.RecoveryCodeRepository(session, user.organization_id).unused(user.id)
    )
    return enabled, left
