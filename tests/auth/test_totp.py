"""TOTP two-factor: enrolment, the second sign-in step, replay protection (also between two
service instances racing on one PostgreSQL database), recovery codes, per-account lockout,
mandatory two-factor, and disabling or resetting with the password.

Codes come from the small RFC 6238 implementation below, checked against the RFC's Appendix B
vectors, never from pyotp, so the service is held to an independent implementation. Time is
controlled with a FixedClock on `app.state.clock`, restored after each test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select, text, update

from crm_service.auth.models import RecoveryCode, TotpCredential, User
from crm_service.clock import FixedClock
from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.db.tenancy import Organization
from crm_service.main import create_app
from tests.conftest import (
    PASSWORD,
    Org,
    TestDatabases,
    assert_problem,
    create_user,
    make_settings,
    new_org,
    unique_email,
)

STEP = 30


# An independent RFC 6238 implementation (HMAC-SHA1, dynamic truncation, 30-second steps).


def hotp(key: bytes, counter: int, digits: int = 6) -> str:
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    (value,) = struct.unpack(">I", digest[offset : offset + 4])
    return f"{(value & 0x7FFFFFFF) % 10**digits:0{digits}d}"


def totp_at(key: bytes, unix_time: float, digits: int = 6) -> str:
    return hotp(key, int(unix_time) // STEP, digits)


def secret_key(secret: str) -> bytes:
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def code_at(secret: str, moment: datetime, steps: int = 0) -> str:
    """The code for the step `steps` away from the one holding `moment`."""
    return totp_at(secret_key(secret), moment.timestamp() + steps * STEP)


def wrong_code(secret: str, moment: datetime) -> str:
    """A well-formed code that no step near `moment` produces."""
    near = {code_at(secret, moment, steps) for steps in range(-3, 4)}
    return next(c for c in (f"{d}" * 6 for d in "0123456789") if c not in near)


def test_reference_totp_matches_the_rfc_6238_vectors() -> None:
    key = b"12345678901234567890"
    assert totp_at(key, 59, digits=8) == "94287082"
    assert totp_at(key, 1111111109, digits=8) == "07081804"
    assert totp_at(key, 1234567890, digits=8) == "89005924"
    # The 6-digit code is the last six digits of the same truncated value.
    assert [totp_at(key, t) for t in (59, 1111111109, 1234567890)] == [
        "287082",
        "081804",
        "005924",
    ]


# Helpers.


def step_start_near_now() -> datetime:
    """Five seconds into the current 30-second step: which step is "current" is unambiguous,
    and tokens issued now stay within their real-time lifetimes."""
    now = int(datetime.now(UTC).timestamp())
    return datetime.fromtimestamp(now // STEP * STEP + 5, UTC)


@pytest.fixture
def clock(app: Any) -> Iterator[FixedClock]:
    original = app.state.clock
    fixed = FixedClock(step_start_near_now())
    app.state.clock = fixed
    try:
        yield fixed
    finally:
        app.state.clock = original


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class TotpUser:
    id: str
    email: str
    secret: str
    recovery_codes: list[str]
    headers: dict[str, str]  # the password-only session that enrolled

    def code(self, moment: datetime, steps: int = 0) -> str:
        return code_at(self.secret, moment, steps)

    def wrong(self, moment: datetime) -> str:
        return wrong_code(self.secret, moment)


async def new_user(org: Org) -> tuple[str, str, dict[str, str]]:
    """A user of `org` (created through the API): id, email, and a signed-in session."""
    email = unique_email("totp")
    created = await create_user(org, {"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    return created.json()["id"], email, await org.login(email)


async def enrol(org: Org, clock: FixedClock) -> TotpUser:
    """A user with confirmed TOTP. The clock is then moved one step on, so the code that
    confirmed the enrolment is spent and the next step's code is fresh."""
    user_id, email, headers = await new_user(org)
    started = await org.client.post("/v1/me/mfa/totp", headers=headers)
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    confirmed = await org.client.post(
        "/v1/me/mfa/totp/confirm", json={"code": code_at(secret, clock.now())}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text
    clock.advance(seconds=STEP)
    return TotpUser(user_id, email, secret, confirmed.json()["recovery_codes"], headers)


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def mfa_token(client: httpx.AsyncClient, email: str) -> str:
    response = await login(client, email)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mfa_required"] is True and "access_token" not in body, body
    return str(body["mfa_token"])


async def second_step(client: httpx.AsyncClient, token: str, code: str) -> httpx.Response:
    return await client.post("/v1/auth/mfa", json={"mfa_token": token, "code": code})


async def sign_in(client: httpx.AsyncClient, email: str, code: str) -> httpx.Response:
    """Password, then the code, with a fresh mfa_token."""
    return await second_step(client, await mfa_token(client, email), code)


def assert_refused(response: httpx.Response, code: str) -> dict[str, Any]:
    """The second-factor failure: 401 problem, no token, and the code is not echoed."""
    body = assert_problem(response, 401)
    assert "access_token" not in body
    assert code not in response.text
    return body


def answer(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """What a client can observe of a response, bar the per-request id."""
    headers = {k: v for k, v in response.headers.items() if k.lower() != "x-request-id"}
    return response.status_code, headers, response.content


async def two_factor_status(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/v1/me/mfa", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def access_headers(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    return bearer(body["access_token"])


# Enrolment.


async def test_enrolment_gives_secret_uri_and_qr_code_and_needs_a_valid_first_code(
    org: Org, clock: FixedClock
) -> None:
    _, email, headers = await new_user(org)
    assert await two_factor_status(org.client, headers) == {
        "totp_enabled": False,
        "recovery_codes_left": 0,
    }

    started = await org.client.post("/v1/me/mfa/totp", headers=headers)
    assert started.status_code == 200, started.text
    enrolment = started.json()
    secret = enrolment["secret"]
    assert re.fullmatch(r"[A-Z2-7]+=*", secret)
    assert len(secret_key(secret)) >= 16  # RFC 4226: at least 128 bits

    uri = urlsplit(enrolment["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == f"/crm-service:{email}"
    query = parse_qs(uri.query)
    assert query["secret"] == [secret] and query["issuer"] == ["crm-service"]
    assert query.get("digits", ["6"]) == ["6"] and query.get("period", ["30"]) == ["30"]
    assert query.get("algorithm", ["SHA1"]) == ["SHA1"]

    media_type, _, data = enrolment["qr_svg"].partition(",")
    assert media_type.startswith("data:image/svg+xml")
    assert "<svg" in unquote(data)

    wrong = wrong_code(secret, clock.now())
    refused = await org.client.post(
        "/v1/me/mfa/totp/confirm", json={"code": wrong}, headers=headers
    )
    assert_refused(refused, wrong)
    assert (await two_factor_status(org.client, headers))["totp_enabled"] is False
    # Unconfirmed, it is not asked for at sign-in.
    assert "access_token" in (await login(org.client, email)).json()

    confirmed = await org.client.post(
        "/v1/me/mfa/totp/confirm", json={"code": code_at(secret, clock.now())}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert await two_factor_status(org.client, headers) == {
        "totp_enabled": True,
        "recovery_codes_left": 10,
    }

    # The recovery codes are shown once: confirming again gives none.
    clock.advance(seconds=STEP)
    again = await org.client.post(
        "/v1/me/mfa/totp/confirm", json={"code": code_at(secret, clock.now())}, headers=headers
    )
    assert again.status_code >= 400 and "recovery_codes" not in again.json()
    # Replacing the authenticator needs the password (see disable); a session alone cannot.
    replaced = await org.client.post("/v1/me/mfa/totp", headers=headers)
    assert_problem(replaced, 409)
    assert "secret" not in replaced.json()
    assert (await sign_in(org.client, email, code_at(secret, clock.now()))).status_code == 200


async def test_secret_and_recovery_codes_are_not_stored_in_plaintext(
    org: Org, clock: FixedClock, app: Any
) -> None:
    user = await enrol(org, clock)
    user_id = uuid.UUID(user.id)
    async with app.state.engine.connect() as connection:
        sealed = (
            await connection.execute(
                select(TotpCredential.secret_sealed).where(TotpCredential.user_id == user_id)
            )
        ).scalar_one()
        stored_codes = (
            await connection.execute(
                select(RecoveryCode.lookup, RecoveryCode.code_hash).where(
                    RecoveryCode.user_id == user_id
                )
            )
        ).all()
    sealed = bytes(sealed)
    assert sealed[0] == 0x01  # the sealed (AES-256-GCM) format
    assert user.secret.encode() not in sealed and user.secret.lower().encode() not in sealed
    assert secret_key(user.secret) not in sealed

    assert len(stored_codes) == 10
    stored = " ".join(f"{lookup} {code_hash}" for lookup, code_hash in stored_codes)
    assert all(code_hash.startswith("$argon2id$") for _, code_hash in stored_codes)
    for code in user.recovery_codes:
        assert code not in stored and code.replace("-", "") not in stored


# The second sign-in step.


async def test_login_asks_for_a_code_and_the_current_code_gives_a_working_token(
    org: Org, clock: FixedClock
) -> None:
    user = await enrol(org, clock)
    first = await login(org.client, user.email)
    assert first.status_code == 200
    body = first.json()
    assert body["mfa_required"] is True and body.get("enrolment_required", False) is False
    assert "access_token" not in body and isinstance(body["mfa_token"], str)
    # The mfa_token is not an access token.
    assert_problem(await org.client.get("/v1/me", headers=bearer(body["mfa_token"])), 401)

    code = user.code(clock.now())
    headers = await access_headers(await second_step(org.client, body["mfa_token"], code))
    me = await org.client.get("/v1/me", headers=headers)
    assert me.status_code == 200 and me.json()["email"] == user.email

    # The same code, with a new login and a new mfa_token, is refused.
    assert_refused(await sign_in(org.client, user.email, code), code)


async def test_previous_step_is_accepted_once_and_older_or_future_codes_never(
    org: Org, clock: FixedClock
) -> None:
    user = await enrol(org, clock)  # the confirming step is now the previous one
    clock.advance(seconds=2 * STEP)  # now three steps after the confirming one
    now = clock.now()

    two_back = user.code(now, -2)
    assert_refused(await sign_in(org.client, user.email, two_back), two_back)
    ahead = user.code(now, +1)
    assert_refused(await sign_in(org.client, user.email, ahead), ahead)

    previous = user.code(now, -1)
    assert (await sign_in(org.client, user.email, previous)).status_code == 200
    assert_refused(await sign_in(org.client, user.email, previous), previous)
    assert (await sign_in(org.client, user.email, user.code(now))).status_code == 200

    # Once the current step was used, the previous step is refused even though it never was.
    clock.advance(seconds=2 * STEP)
    now = clock.now()
    assert (await sign_in(org.client, user.email, user.code(now))).status_code == 200
    never_used = user.code(now, -1)
    assert_refused(await sign_in(org.client, user.email, never_used), never_used)


async def test_mfa_token_is_single_use_and_expires_after_five_minutes(
    org: Org, clock: FixedClock
) -> None:
    user = await enrol(org, clock)
    token = await mfa_token(org.client, user.email)
    assert (await second_step(org.client, token, user.code(clock.now()))).status_code == 200
    clock.advance(seconds=STEP)
    fresh = user.code(clock.now())
    assert_refused(await second_step(org.client, token, fresh), fresh)
    # The code itself was good: with a new mfa_token it works.
    assert (await sign_in(org.client, user.email, fresh)).status_code == 200

    clock.advance(seconds=STEP)
    early, late = await mfa_token(org.client, user.email), await mfa_token(org.client, user.email)
    clock.advance(minutes=4, seconds=50)
    assert (await second_step(org.client, early, user.code(clock.now()))).status_code == 200
    clock.advance(seconds=15)  # 5 min 5 s after `late` was issued, and a new step
    code = user.code(clock.now())
    assert_refused(await second_step(org.client, late, code), code)
    assert (await sign_in(org.client, user.email, code)).status_code == 200


async def test_recovery_code_works_once_with_or_without_dashes_and_in_any_case(
    org: Org, clock: FixedClock
) -> None:
    user = await enrol(org, clock)
    first, second = user.recovery_codes[0], user.recovery_codes[1]

    headers = await access_headers(await sign_in(org.client, user.email, first))
    assert (await org.client.get("/v1/me", headers=headers)).status_code == 200
    assert (await two_factor_status(org.client, user.headers))["recovery_codes_left"] == 9
    assert_refused(await sign_in(org.client, user.email, first), first)

    typed = second.replace("-", "").upper()
    assert (await sign_in(org.client, user.email, typed)).status_code == 200
    assert_refused(await sign_in(org.client, user.email, second), second)
    assert (await two_factor_status(org.client, user.headers))["recovery_codes_left"] == 8


# Throttling.


async def test_lockout_after_five_failures_answers_exactly_as_a_wrong_code_for_15_minutes(
    org: Org, clock: FixedClock
) -> None:
    user = await enrol(org, clock)
    wrong = user.wrong(clock.now())

    # Four failures do not lock, and a success starts the count again.
    wrong_answers: list[httpx.Response] = []
    for _ in range(2):
        token = await mfa_token(org.client, user.email)
        wrong_answers += [await second_step(org.client, token, wrong) for _ in range(4)]
        assert (await second_step(org.client, token, user.code(clock.now()))).status_code == 200
        clock.advance(seconds=STEP)
    for response in wrong_answers:
        assert_refused(response, wrong)

    token = await mfa_token(org.client, user.email)
    for _ in range(5):
        assert_refused(await second_step(org.client, token, wrong), wrong)
    locked_at = clock.now()

    right = user.code(clock.now())
    locked_right = await second_step(org.client, token, right)
    assert answer(locked_right) == answer(wrong_answers[0])
    assert answer(await second_step(org.client, token, wrong)) == answer(wrong_answers[0])
    recovery = user.recovery_codes[0]
    locked_recovery = await second_step(org.client, token, recovery)
    assert answer(locked_recovery) == answer(wrong_answers[0])
    assert (await two_factor_status(org.client, user.headers))["recovery_codes_left"] == 10

    clock.at = locked_at + timedelta(minutes=14, seconds=50)
    still_locked = await sign_in(org.client, user.email, user.code(clock.now()))
    assert answer(still_locked) == answer(wrong_answers[0])

    clock.at = locked_at + timedelta(minutes=15, seconds=5)
    headers = await access_headers(await sign_in(org.client, user.email, user.code(clock.now())))
    assert (await org.client.get("/v1/me", headers=headers)).status_code == 200


async def test_throttling_is_per_account_and_failures_add_up_across_tokens_and_addresses(
    org: Org, clock: FixedClock, app: Any
) -> None:
    target, bystander = await enrol(org, clock), await enrol(org, clock)
    wrong = target.wrong(clock.now())
    elsewhere = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.23", 40000)),
        base_url="http://testserver",
    )
    async with elsewhere:
        first = await mfa_token(org.client, target.email)
        for _ in range(3):
            assert_refused(await second_step(org.client, first, wrong), wrong)
        other = await mfa_token(elsewhere, target.email)
        for _ in range(2):
            assert_refused(await second_step(elsewhere, other, wrong), wrong)

    # Five failures in all, over two mfa_tokens and two addresses: the account is locked.
    right = target.code(clock.now())
    assert_refused(await sign_in(org.client, target.email, right), right)
    # Another user of the organization, from the same address, is not.
    bystander_code = bystander.code(clock.now())
    assert (await sign_in(org.client, bystander.email, bystander_code)).status_code == 200


# Mandatory two-factor.


async def test_mandatory_two_factor_sends_a_user_without_it_to_enrol_before_a_token(
    org: Org, clock: FixedClock, app: Any
) -> None:
    _, email, _ = await new_user(org)
    # There is no API for this organization setting yet, so it is set in the database.
    async with app.state.engine.begin() as connection:
        await connection.execute(
            update(Organization).where(Organization.id == org.id).values(mfa_required=True)
        )

    response = await login(org.client, email)
    assert response.status_code == 200
    body = response.json()
    assert body["mfa_required"] is True and body["enrolment_required"] is True
    assert "access_token" not in body
    token = body["mfa_token"]

    # No code gets a token before enrolment.
    guess = "123456"
    assert_refused(await second_step(org.client, token, guess), guess)
    assert_problem(
        await org.client.post("/v1/auth/mfa/enrolment", json={"mfa_token": "crm_mfa_" + "x" * 43}),
        401,
    )
    assert_problem(await org.client.post("/v1/auth/mfa/enrolment", json={"mfa_token": "nope"}), 401)

    started = await org.client.post("/v1/auth/mfa/enrolment", json={"mfa_token": token})
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    assert started.json()["otpauth_uri"].startswith("otpauth://totp/")
    wrong = wrong_code(secret, clock.now())
    assert_refused(await second_step(org.client, token, wrong), wrong)

    finished = await second_step(org.client, token, code_at(secret, clock.now()))
    headers = await access_headers(finished)
    codes = finished.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert await two_factor_status(org.client, headers) == {
        "totp_enabled": True,
        "recovery_codes_left": 10,
    }
    # The spent mfa_token cannot start another enrolment.
    assert_problem(await org.client.post("/v1/auth/mfa/enrolment", json={"mfa_token": token}), 401)

    # Next time: a code is asked for, no enrolment, and a password alone cannot replace it.
    clock.advance(seconds=STEP)
    again = (await login(org.client, email)).json()
    assert again["mfa_required"] is True and again["enrolment_required"] is False
    hijack = await org.client.post("/v1/auth/mfa/enrolment", json={"mfa_token": again["mfa_token"]})
    assert hijack.status_code >= 400 and "secret" not in hijack.json()
    signed_in = await second_step(org.client, again["mfa_token"], code_at(secret, clock.now()))
    assert signed_in.status_code == 200 and not signed_in.json().get("recovery_codes")


# Disabling, resetting, new recovery codes.


async def test_disabling_needs_the_password_and_ends_the_other_sessions(
    org: Org, clock: FixedClock
) -> None:
    user = await enrol(org, clock)
    current = await access_headers(await sign_in(org.client, user.email, user.code(clock.now())))

    refused = await org.client.post(
        "/v1/me/mfa/totp/disable", json={"password": "not the password"}, headers=current
    )
    assert assert_problem(refused, 403)["type"].endswith("/reauthentication-failed")
    assert (await org.client.get("/v1/me", headers=current)).status_code == 200
    assert (await two_factor_status(org.client, current))["totp_enabled"] is True
    assert (await org.client.get("/v1/me", headers=user.headers)).status_code == 200

    disabled = await org.client.post(
        "/v1/me/mfa/totp/disable", json={"password": PASSWORD}, headers=current
    )
    assert disabled.status_code == 204, disabled.text
    assert_problem(await org.client.get("/v1/me", headers=user.headers), 401)
    assert (await org.client.get("/v1/me", headers=current)).status_code == 200
    assert (await org.client.get("/v1/me", headers=org.headers)).status_code == 200
    assert await two_factor_status(org.client, current) == {
        "totp_enabled": False,
        "recovery_codes_left": 0,
    }
    direct = await login(org.client, user.email)
    assert direct.status_code == 200 and "access_token" in direct.json()

    # Resetting: a new enrolment gives a new secret; the old authenticator is useless.
    restarted = await org.client.post("/v1/me/mfa/totp", headers=current)
    assert restarted.status_code == 200, restarted.text
    assert restarted.json()["secret"] != user.secret


async def test_new_recovery_codes_need_the_password_and_replace_the_old_ones(
    org: Org, clock: FixedClock
) -> None:
    user = await enrol(org, clock)
    old = user.recovery_codes

    refused = await org.client.post(
        "/v1/me/mfa/recovery-codes", json={"password": "not the password"}, headers=user.headers
    )
    assert assert_problem(refused, 403)["type"].endswith("/reauthentication-failed")
    assert (await org.client.get("/v1/me", headers=user.headers)).status_code == 200
    assert (await sign_in(org.client, user.email, old[0])).status_code == 200

    replaced = await org.client.post(
        "/v1/me/mfa/recovery-codes", json={"password": PASSWORD}, headers=user.headers
    )
    assert replaced.status_code == 200, replaced.text
    new = replaced.json()["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    assert (await two_factor_status(org.client, user.headers))["recovery_codes_left"] == 10
    assert_refused(await sign_in(org.client, user.email, old[1]), old[1])
    assert (await sign_in(org.client, user.email, new[0])).status_code == 200
    assert (await two_factor_status(org.client, user.headers))["recovery_codes_left"] == 9


# Two service instances, one PostgreSQL database: replay records and throttling are shared
# and atomic.


@dataclass
class Instance:
    app: Any
    client: httpx.AsyncClient
    clock: FixedClock


@asynccontextmanager
async def service_instance(database_url: str, start: datetime) -> AsyncIterator[Instance]:
    application = create_app(make_settings(database_url))  # its own engine and pool
    async with LifespanManager(application):
        application.state.clock = FixedClock(start)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Instance(application, client, application.state.clock)


@pytest.fixture(scope="module")
async def two_instances(databases: TestDatabases) -> AsyncIterator[tuple[Instance, Instance]]:
    url = await databases.new("postgresql")
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    start = step_start_near_now()
    async with service_instance(url, start) as first, service_instance(url, start) as second:
        yield first, second


def advance_both(instances: tuple[Instance, Instance], seconds: int) -> None:
    for instance in instances:
        instance.clock.advance(seconds=seconds)
    assert instances[0].clock.now() == instances[1].clock.now()


@pytest.mark.postgres
async def test_two_instances_verifying_one_code_at_once_accept_it_exactly_once(
    two_instances: tuple[Instance, Instance],
) -> None:
    first, second = two_instances
    org = await new_org(first.app, first.client)
    user = await enrol(org, first.clock)
    second.clock.at = first.clock.at  # enrolment moved the first instance's clock on
    for _ in range(3):
        advance_both(two_instances, STEP)
        tokens = (
            await mfa_token(first.client, user.email),
            await mfa_token(second.client, user.email),
        )
        code = user.code(first.clock.now())
        answers = await asyncio.gather(
            second_step(first.client, tokens[0], code), second_step(second.client, tokens[1], code)
        )
        assert sorted(response.status_code for response in answers) == [200, 401], [
            response.text for response in answers
        ]


@pytest.mark.postgres
async def test_two_instances_using_one_recovery_code_at_once_accept_it_exactly_once(
    two_instances: tuple[Instance, Instance],
) -> None:
    first, second = two_instances
    org = await new_org(first.app, first.client)
    user = await enrol(org, first.clock)
    second.clock.at = first.clock.at  # enrolment moved the first instance's clock on
    code = user.recovery_codes[0]
    tokens = (
        await mfa_token(first.client, user.email),
        await mfa_token(second.client, user.email),
    )
    answers = await asyncio.gather(
        second_step(first.client, tokens[0], code), second_step(second.client, tokens[1], code)
    )
    assert sorted(response.status_code for response in answers) == [200, 401]
    status = await two_factor_status(second.client, user.headers)
    assert status["recovery_codes_left"] == 9


async def _waiting_on_locks(instance: Instance) -> int:
    async with instance.app.state.engine.connect() as connection:
        waiting = await connection.execute(
            select(func.count())
            .select_from(text("pg_stat_activity"))
            .where(text("datname = current_database() AND wait_event_type = 'Lock'"))
        )
        return int(waiting.scalar_one())


async def _until(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll `condition` until true or `timeout` seconds have passed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)


@pytest.mark.postgres
async def test_parallel_guesses_cannot_outrun_the_lockout(
    two_instances: tuple[Instance, Instance], caplog: pytest.LogCaptureFixture
) -> None:
    """Ten wrong guesses in flight at once on two instances (a slow database, here a held row
    lock, keeps them there): only five codes may be checked before the lock, the other five
    must be refused unchecked, and then the right code is refused too. (Which five get
    checked depends on the order the database grants the row; the bound does not.)"""
    caplog.set_level("INFO")
    first, second = two_instances
    org = await new_org(first.app, first.client)
    user = await enrol(org, first.clock)
    second.clock.at = first.clock.at
    now = first.clock.now()
    guessing = await mfa_token(first.client, user.email)
    wrong, right = user.wrong(now), user.code(now)

    async with first.app.state.engine.connect() as blocker:
        await blocker.execute(
            select(User.id).where(User.id == uuid.UUID(user.id)).with_for_update()
        )
        guesses = [
            asyncio.create_task(second_step(instance.client, guessing, wrong))
            for instance in (first, second) * 5
        ]

        async def guesses_stalled() -> bool:
            return all(g.done() for g in guesses) or await _waiting_on_locks(first) >= 10

        await _until(guesses_stalled)
        await blocker.rollback()
    for response in await asyncio.gather(*guesses):
        assert_refused(response, wrong)

    def events(name: str) -> int:
        return sum(
            1
            for record in caplog.records
            if isinstance(record.msg, dict)
            and record.msg.get("event") == name
            and record.msg.get("user_id") == user.id
        )

    assert events("second_factor_failed") == 5, "exactly five codes were checked"
    assert events("second_factor_refused_while_locked") == 5, "the rest were not checked"
    signing_in = await mfa_token(second.client, user.email)
    assert_refused(await second_step(second.client, signing_in, right), right)
