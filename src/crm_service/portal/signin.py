"""Signing in to the privacy portal with a one-time code mailed to the address, and the
short session it opens.

- **The code**: six digits, mailed through the outbox, valid for ten minutes, opened once,
  dead after five attempts. It is kept as an HMAC keyed by the sign-in's own 256-bit token,
  which only the browser that asked for it holds (in the code form), so the table alone
  does not let anyone try the million codes.
- **The same answer for every address**: a sign-in row is written whether or not the
  organization knows the address; for an unknown (or, past its hourly mail limit, a
  throttled) address the row is dead and no mail goes out, and the page says "if we know this
  address, we have sent a code" either way. The router answers no sooner than
  `CRM_PORTAL_ANSWER_SECONDS`, so the mail's extra work does not tell either.
- **Throttles**: per source address (code requests and code attempts alike, an hour: 429) and
  per email address (codes mailed an hour: more are answered as usual and not mailed), on
  the consent pages' database counters, keyed by HMACs so no address is stored.
- **The session**: a 256-bit random cookie token, stored as its SHA-256 with the address's
  blind index and the address sealed under the organization's key; it ends when signed out,
  after `CRM_PORTAL_SESSION_IDLE_SECONDS` unused, or after its absolute lifetime. Every POST
  of a signed-in page carries a synchronizer token derived from the cookie's token (an
  HMAC, so nothing more is stored), checked before anything happens.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.config import Settings
from crm_service.consent import throttle
from crm_service.consent.sealing import new_token, token_hash
from crm_service.crypto.blind_index import IndexKind, blind_index
from crm_service.crypto.codec import FieldContext
from crm_service.crypto.service import (
    keyring_for,
    open_organization_secret,
    seal_organization_secret,
)
from crm_service.db.tenancy import Organization
from crm_service.errors import NotFound, TooManyRequests
from crm_service.mail.outbox import enqueue
from crm_service.portal.models import PortalSession, PortalSignIn
from crm_service.portal.repository import PortalSessionRepository, SignInRepository
from crm_service.privacy.repository import subjects_with

CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5
CODE_DIGITS = 6


class PortalThrottled(TooManyRequests):
    slug, title = "rate-limited", "Too many attempts"


@dataclass(frozen=True)
class SignedIn:
    """A live portal session: whose it is and the token its forms must carry."""

    session_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    email_bidx: str
    csrf_token: str


def subject_actor(organization_id: uuid.UUID, client_ip: str | None) -> Actor:
    """The data subject acting in the portal (no user; their address proved by a code)."""
    return Actor(organization_id, "subject", None, client_ip)


def code_mac(sign_in_token: str, code: str) -> str:
    return hmac.new(sign_in_token.encode(), code.encode(), hashlib.sha256).hexdigest()


def csrf_token_for(session_token: str) -> str:
    """The synchronizer token of a session: bound to its cookie, stored nowhere."""
    return hmac.new(session_token.encode(), b"portal csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(csrf_token_for(session_token), sent)


def valid_email(text: str | None) -> str | None:
    """The address normalized as mail is sent to it, or None when it is not one."""
    if not text or len(text) > 254:
        return None
    try:
        return validate_email(text.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return None


async def organization(session: AsyncSession, organization_id: uuid.UUID) -> Organization:
    found = await session.get(Organization, organization_id)
    if found is None:
        raise NotFound("No such privacy portal.")
    return found


async def email_index(session: AsyncSession, organization_id: uuid.UUID, email: str) -> str:
    key = await keyring_for(session, organization_id).index_key()
    return blind_index(key, IndexKind.EMAIL, email, phone_region=session.info.get("phone_region"))


async def subjects_of(
    session: AsyncSession, organization_id: uuid.UUID, email_bidx: str
) -> list[uuid.UUID]:
    """The data subjects with a lead or contact of this address (by its blind index)."""
    return sorted(await subjects_with(session, organization_id, IndexKind.EMAIL, email_bidx))


async def limit_address(
    session: AsyncSession,
    organization_id: uuid.UUID,
    client_ip: str | None,
    *,
    now: datetime,
    settings: Settings,
) -> None:
    """429 once the source address (an IPv6 client's /64) made
    `CRM_PORTAL_ADDRESS_HOURLY_LIMIT` sign-in steps."""
    key = await throttle.counter_key(session, organization_id, "portal", "ip", _source(client_ip))
    hits, retry_after = await throttle.hit(session, key, timedelta(hours=1), now)
    if hits > settings.portal_address_hourly_limit:
        raise PortalThrottled(
            "Too many sign-in attempts from your address; try again later.",
            headers={"Retry-After": str(retry_after)},
        )


def _source(client_ip: str | None) -> str:
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return "-"
    if address.version == 6:
        # One subscriber usually holds a whole /64.
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


async def request_code(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    email: str,
    language: str,
    client_ip: str | None,
    now: datetime,
    settings: Settings,
) -> str:
    """Start a sign-in for `email` (already valid); the sign-in token for the code form.
    A code is mailed only when the organization knows the address and it is within its
    hourly limit; the caller cannot tell which."""
    found = await organization(session, organization_id)
    await limit_address(session, organization_id, client_ip, now=now, settings=settings)
    sign_ins = SignInRepository(session, organization_id)
    bidx = await email_index(session, organization_id, email)
    mailed, _ = await throttle.hit(
        session,
        await throttle.counter_key(session, organization_id, "portal", "email", bidx),
        timedelta(hours=1),
        now,
    )
    subjects = await subjects_of(session, organization_id, bidx)
    live = bool(subjects) and mailed <= settings.portal_email_hourly_limit
    token, hashed = new_token()
    code = new_code()
    await sign_ins.add(
        PortalSignIn(
            id=uuid.uuid4(),
            organization_id=organization_id,
            token_hash=hashed,
            email_bidx=bidx,
            code_mac=code_mac(token, code),
            live=live,
            attempts=0,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
    )
    if live:
        await enqueue(
            session,
            organization_id=organization_id,
            to=email,
            template="portal_code",
            context={
                "organization_name": found.name,
                "code": code,
                "valid_minutes": int(CODE_TTL.total_seconds() // 60),
                "link": f"{settings.public_base_url.rstrip('/')}/portal/{organization_id}",
            },
            language=language,
            # Sealed under the person's key: erasing them makes the queued mail unreadable.
            subject_id=subjects[0],
        )
    return token


def _email_context(organization_id: uuid.UUID, session_id: uuid.UUID) -> FieldContext:
    return FieldContext(organization_id, "portal_sessions", "email_sealed", session_id)


async def sign_in(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    sign_in_token: str,
    email: str,
    code: str,
    language: str,
    client_ip: str | None,
    now: datetime,
    settings: Settings,
) -> str | None:
    """Open a session with the mailed code; the session's cookie token, or None when the
    code is wrong, used, expired, tried too often or was never mailed (one answer for all).
    A wrong attempt is counted in the request's transaction (the page answers 200, so it
    commits)."""
    await organization(session, organization_id)
    await limit_address(session, organization_id, client_ip, now=now, settings=settings)
    sign_ins = SignInRepository(session, organization_id)
    row = await sign_ins.by_token_hash(token_hash(sign_in_token))
    if row is None or not await sign_ins.count_attempt(row.id, now=now, allowed=MAX_ATTEMPTS):
        return None
    bidx = await email_index(session, organization_id, email)
    matches = hmac.compare_digest(row.code_mac, code_mac(sign_in_token, code.strip()))
    if not (matches and row.live and hmac.compare_digest(row.email_bidx, bidx)):
        return None
    if not await sign_ins.use(row.id, now=now):
        return None
    token, hashed = new_token()
    session_id = uuid.uuid4()
    await PortalSessionRepository(session, organization_id).add(
        PortalSession(
            id=session_id,
            organization_id=organization_id,
            token_hash=hashed,
            email_bidx=bidx,
            email_sealed=await seal_organization_secret(
                session, organization_id, email, _email_context(organization_id, session_id)
            ),
            language=language,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=settings.portal_session_absolute_seconds),
        )
    )
    audit(
        session,
        subject_actor(organization_id, client_ip),
        AuditAction.PORTAL_SIGNED_IN,
        target_type="portal_session",
        target_id=session_id,
    )
    return token


async def signed_in(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    session_token: str | None,
    now: datetime,
    settings: Settings,
) -> SignedIn | None:
    """The live session the cookie names in this organization, or None; using it keeps
    it from going idle."""
    if not session_token or len(session_token) > 64:
        return None
    row = await PortalSessionRepository(session, organization_id).by_token_hash(
        token_hash(session_token)
    )
    idle = timedelta(seconds=settings.portal_session_idle_seconds)
    if row is None or row.expires_at <= now or row.last_seen_at + idle <= now:
        return None
    email = await open_organization_secret(
        session, organization_id, row.email_sealed, _email_context(organization_id, row.id)
    )
    if email is None:
        return None
    row.last_seen_at = now
    await session.flush()
    return SignedIn(
        session_id=row.id,
        organization_id=organization_id,
        email=email,
        email_bidx=row.email_bidx,
        csrf_token=csrf_token_for(session_token),
    )


async def sign_out(session: AsyncSession, *, visit: SignedIn, client_ip: str | None) -> None:
    await PortalSessionRepository(session, visit.organization_id).end(visit.session_id)
    audit(
        session,
        subject_actor(visit.organization_id, client_ip),
        AuditAction.PORTAL_SIGNED_OUT,
        target_type="portal_session",
        target_id=visit.session_id,
    )
