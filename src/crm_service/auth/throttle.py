"""Password guessing, slowed: per source address, per account at an address, per account.

- **Address**: at most `sign_in_address_failures` failed sign-ins per source address (an IPv6
  client's /64) in a fixed 15-minute window, whatever the email; then 429 with Retry-After.
- **Account at an address**: five attempts, then a lock-out that doubles with each further
  failure (1, 2, 4 … minutes, at most an hour). Answered exactly as a wrong password.
- **Account**: NIST SP 800-63B's cap: after 100 consecutive failures the account accepts no
  password until an administrator unlocks it. Each address adds at most ten failures to that
  count, so nobody locks someone else out for good from one address, and the owner signing in
  from elsewhere is not held up by a guesser's lock-outs.

A locked attempt still spends one password verification, so its answer costs what a wrong
password costs. Counters live in the database (every instance shares them, and row locks
make parallel guesses count one by one). The attempt is counted in a short transaction of its
own, before the request's session touches the database, so no row stays locked across a
password verification and no sign-in ever holds two connections of the pool; a success is
taken back in the request's own transaction.
"""

from __future__ import annotations

import ipaddress
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.auth import repository
from crm_service.auth.models import User
from crm_service.auth.passwords import verify_password
from crm_service.db.session import commit
from crm_service.errors import Forbidden

ADDRESS_WINDOW = timedelta(minutes=15)
PAIR_FREE_ATTEMPTS = 5
PAIR_MAX_LOCK = timedelta(hours=1)
ACCOUNT_CAP = 100
ADDRESS_SHARE_OF_CAP = 10
# Rows untouched this long are forgotten by the worker (never an account at the cap).
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Before a password is checked: may it be (`allowed`), or is this address throttled
    (`retry_after` seconds: answer 429)?"""

    allowed: bool
    retry_after: int | None = None
    # This attempt brought the account to the cap: worth an audit event of its own.
    reached_cap: bool = False


def _address(client_ip: str | None) -> str:
    if client_ip is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return "unknown"
    if address.version == 6:
        # One subscriber usually holds a whole /64.
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _pair_lock(attempts: int) -> timedelta:
    return min(timedelta(minutes=2 ** min(attempts - PAIR_FREE_ATTEMPTS, 6)), PAIR_MAX_LOCK)


async def _count_account_attempt(
    session: AsyncSession, user_id: uuid.UUID, address: str, now: datetime
) -> Verdict:
    """Count an attempt at the account from `address` (the pair, then the account: always in
    that order, so two transactions never wait on each other's rows crosswise)."""
    pair_key, account_key = f"pair:{user_id}:{address}", f"account:{user_id}"
    await repository.ensure_attempt_rows(session, [pair_key, account_key], now)
    attempts = await repository.count_pair_failure(session, pair_key, now=now)
    if attempts is not None and attempts >= PAIR_FREE_ATTEMPTS:
        await repository.lock_pair(session, pair_key, now + _pair_lock(attempts))
    counted = attempts is not None and attempts <= ADDRESS_SHARE_OF_CAP
    account = await repository.count_account_failure(
        session, account_key, now=now, cap=ACCOUNT_CAP, counts=counted
    )
    if attempts is None or account is None:
        return Verdict(allowed=False)
    return Verdict(allowed=True, reached_cap=counted and account >= ACCOUNT_CAP)


class SignInThrottle:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, address_failures: int
    ) -> None:
        self._sessionmaker = sessionmaker
        self._address_failures = address_failures

    async def reserve(self, *, email: str, client_ip: str | None, now: datetime) -> Verdict:
        """Count this attempt as a failure before the password is checked (a success takes
        it back), so parallel guesses cannot slip past a limit."""
        address = _address(client_ip)
        address_key = f"address:{address}"
        async with self._sessionmaker() as session:
            user_id = await repository.find_user_id_for_login(session, email)
            await repository.ensure_attempt_rows(session, [address_key], now)
            # Locked in one order everywhere: address, then pair, then account.
            window_ends = await repository.count_address_failure(
                session,
                address_key,
                now=now,
                window=ADDRESS_WINDOW,
                limit=self._address_failures,
            )
            if window_ends is not None:
                await commit(session)
                return Verdict(
                    allowed=False,
                    retry_after=max(1, math.ceil((window_ends - now).total_seconds())),
                )
            if user_id is None:
                await commit(session)
                return Verdict(allowed=True)
            verdict = await _count_account_attempt(session, user_id, address, now)
            await commit(session)
        return verdict

    async def reserve_client(
        self, *, client_id: uuid.UUID | None, client_ip: str | None, now: datetime
    ) -> Verdict:
        """The same counting for a partner client's secret (`oauth`): the address's budget is
        shared with password sign-ins, and the client at an address and the client from
        anywhere are counted under its id as an account is under a user's (ids are unique, so
        the keys never meet). `succeeded` and `lift_locks` take the client's id likewise."""
        address = _address(client_ip)
        address_key = f"address:{address}"
        async with self._sessionmaker() as session:
            await repository.ensure_attempt_rows(session, [address_key], now)
            window_ends = await repository.count_address_failure(
                session,
                address_key,
                now=now,
                window=ADDRESS_WINDOW,
                limit=self._address_failures,
            )
            if window_ends is not None or client_id is None:
                await commit(session)
                if window_ends is None:
                    return Verdict(allowed=True)
                return Verdict(
                    allowed=False,
                    retry_after=max(1, math.ceil((window_ends - now).total_seconds())),
                )
            verdict = await _count_account_attempt(session, client_id, address, now)
            await commit(session)
        return verdict


async def succeeded(
    session: AsyncSession, *, user_id: uuid.UUID, client_ip: str | None, now: datetime
) -> None:
    """The right password: the account's and this pair's counts start again, and the
    address's failure that `reserve` counted is taken back (in the request's transaction)."""
    address = _address(client_ip)
    await repository.uncount_address_failure(session, f"address:{address}", now)
    await repository.clear_attempts(session, [f"pair:{user_id}:{address}", f"account:{user_id}"])


class ReauthenticationFailed(Forbidden):
    """The signed-in user's password, asked again before a sensitive change, was wrong (or the
    account is locked). 403, not 401: the session is still good; its count is kept."""

    slug, title = "reauthentication-failed", "Password confirmation failed"
    keeps_changes = True

    def __init__(self) -> None:
        super().__init__("The password is wrong.")


async def confirm_password(
    session: AsyncSession, user: User, password: str, *, client_ip: str | None, now: datetime
) -> None:
    """Ask a signed-in user for their password again. A stolen session must not be a way to
    guess it unthrottled, so this counts like a sign-in at this address (in the request's
    transaction: the user's own rows, locked only while their one confirmation runs)."""
    address = _address(client_ip)
    verdict = await _count_account_attempt(session, user.id, address, now)
    if not await verify_password(user.password_hash if verdict.allowed else None, password):
        raise ReauthenticationFailed()
    await repository.clear_attempts(session, [f"pair:{user.id}:{address}", f"account:{user.id}"])


async def lift_locks(session: AsyncSession, user_id: uuid.UUID) -> None:
    """An administrator lifts every sign-in lock of the account (in the request's
    transaction, audited by the caller)."""
    await repository.clear_attempts(session, [f"account:{user_id}"], prefixes=(f"pair:{user_id}:",))


async def forget_old_attempts(session: AsyncSession, now: datetime) -> int:
    return await repository.purge_attempts(session, before=now - FORGET_AFTER, now=now)
