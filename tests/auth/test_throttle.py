"""Password guessing is slowed, and cannot be used to lock the owner out: an attacker at one
address guessing one account, guessing in parallel, guessing from many addresses, spraying
many emails, and guessing through two instances of the service sharing one database. Every
lock answers exactly as a wrong password does; only the per-address limit says 429."""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from crm_service.clock import FixedClock
from crm_service.jobs.worker import run_due_jobs
from crm_service.main import create_app
from tests.conftest import (
    PASSWORD,
    Org,
    assert_problem,
    create_user,
    make_settings,
    new_org,
    unique_email,
)

WRONG = "not the password at all"


def fresh_address() -> str:
    """An address no other test used (the database, and so its counters, is shared): an
    IPv6 /64 of its own, as the throttle groups IPv6 clients by /64."""
    return f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}::1"


@asynccontextmanager
async def service(database_url: str, **settings: Any) -> AsyncIterator[Any]:
    """An instance of the service of its own, on the shared test database, with a clock the
    test moves."""
    settings.setdefault("sign_in_failure_seconds", 0)
    app = create_app(make_settings(database_url, **settings))
    async with LifespanManager(app):
        app.state.clock = FixedClock(datetime.now(UTC))
        yield app


@asynccontextmanager
async def client_at(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


def same_answer(refused: httpx.Response, wrong: httpx.Response) -> None:
    """Two refusals a client cannot tell apart."""
    assert refused.status_code == wrong.status_code == 401
    assert refused.json() == wrong.json()
    assert refused.headers["www-authenticate"] == wrong.headers["www-authenticate"]


async def failed_reasons(org: Org, client: httpx.AsyncClient) -> list[str]:
    response = await client.get(
        "/v1/audit-events",
        params={"action": "auth.login_failed", "limit": 200},
        headers=org.headers,
    )
    assert response.status_code == 200, response.text
    return [event["reason"] for event in response.json()["data"]]


async def test_guessing_one_account_locks_out_that_address_only(database_url: str) -> None:
    attacker_ip, owner_ip = fresh_address(), fresh_address()
    async with service(database_url) as app:
        async with client_at(app, owner_ip) as owner, client_at(app, attacker_ip) as attacker:
            org = await new_org(app, owner)
            wrong = [await sign_in(attacker, org.admin_email, WRONG) for _ in range(5)]
            assert [r.status_code for r in wrong] == [401] * 5

            # The sixth try, even with the right password, is refused like a wrong one.
            same_answer(await sign_in(attacker, org.admin_email, PASSWORD), wrong[0])
            # The owner, elsewhere, is not held up.
            assert (await sign_in(owner, org.admin_email, PASSWORD)).status_code == 200

            # The lock-out is temporary and grows: a minute after the fifth failure...
            app.state.clock.advance(seconds=61)
            assert (await sign_in(attacker, org.admin_email, WRONG)).status_code == 401
            # ...then two minutes after the sixth.
            app.state.clock.advance(seconds=61)
            same_answer(await sign_in(attacker, org.admin_email, PASSWORD), wrong[0])
            app.state.clock.advance(seconds=60)
            assert (await sign_in(attacker, org.admin_email, PASSWORD)).status_code == 200

            reasons = await failed_reasons(org, owner)
            assert reasons.count("wrong_password") == 6
            assert reasons.count("locked_out") == 2


async def test_parallel_guesses_cannot_outrun_the_lock(database_url: str) -> None:
    attacker_ip, owner_ip = fresh_address(), fresh_address()
    async with service(database_url) as app:
        async with client_at(app, owner_ip) as owner, client_at(app, attacker_ip) as attacker:
            org = await new_org(app, owner)
            guesses = await asyncio.gather(
                *(sign_in(attacker, org.admin_email, f"{WRONG} {n}") for n in range(20))
            )
            assert {r.status_code for r in guesses} == {401}
            assert (await sign_in(attacker, org.admin_email, PASSWORD)).status_code == 401
            reasons = await failed_reasons(org, owner)
            # Only five passwords were ever checked; the rest were refused unchecked.
            assert reasons.count("wrong_password") == 5
            assert reasons.count("locked_out") == 16


async def test_the_account_cap_holds_against_many_addresses_until_an_admin_unlocks(
    database_url: str,
) -> None:
    owner_ip = fresh_address()
    async with service(database_url) as app:
        async with client_at(app, owner_ip) as owner:
            org = await new_org(app, owner)
            victim_email = unique_email("victim")
            created = await create_user(org, {"email": victim_email, "password": PASSWORD})
            assert created.status_code == 201, created.text
            victim_id = created.json()["id"]
            # Ten addresses, ten failures each, waiting out every lock-out in between.
            for _ in range(10):
                async with client_at(app, fresh_address()) as attacker:
                    for _ in range(10):
                        assert (await sign_in(attacker, victim_email, WRONG)).status_code == 401
                        app.state.clock.advance(hours=1, seconds=1)

            # NIST's cap: 100 consecutive failures and no password works, from anywhere.
            async with client_at(app, fresh_address()) as elsewhere:
                refused = await sign_in(elsewhere, victim_email, PASSWORD)
                same_answer(refused, await sign_in(elsewhere, victim_email, WRONG))
                app.state.clock.advance(days=3)
                assert (await sign_in(elsewhere, victim_email, PASSWORD)).status_code == 401

                # Days went by: the administrator signs in afresh.
                org.headers = await org.login(org.admin_email)
                events = await owner.get(
                    "/v1/audit-events",
                    params={"action": "auth.locked_out", "target_id": victim_id},
                    headers=org.headers,
                )
                assert [e["reason"] for e in events.json()["data"]] == ["password_failures"]

                # An administrator lifts it; the next right password signs in.
                unlocked = await owner.post(f"/v1/users/{victim_id}/unlock", headers=org.headers)
                assert unlocked.status_code == 204, unlocked.text
                assert (await sign_in(elsewhere, victim_email, PASSWORD)).status_code == 200


async def test_one_address_cannot_lock_the_owner_out(database_url: str) -> None:
    attacker_ip, owner_ip = fresh_address(), fresh_address()
    async with service(database_url) as app:
        async with client_at(app, owner_ip) as owner, client_at(app, attacker_ip) as attacker:
            org = await new_org(app, owner)
            # Past the cap in number, from one address, waiting out every lock-out.
            for _ in range(110):
                assert (await sign_in(attacker, org.admin_email, WRONG)).status_code == 401
                app.state.clock.advance(hours=1, seconds=1)
            assert (await sign_in(owner, org.admin_email, PASSWORD)).status_code == 200


async def test_spraying_many_emails_from_one_address_is_rate_limited(database_url: str) -> None:
    attacker_ip, owner_ip = fresh_address(), fresh_address()
    async with service(database_url, sign_in_address_failures=50) as app:
        async with client_at(app, attacker_ip) as attacker, client_at(app, owner_ip) as owner:
            org = await new_org(app, owner)
            answers = [await sign_in(attacker, unique_email("guess"), WRONG) for _ in range(50)]
            assert {r.status_code for r in answers} == {401}

            limited = await sign_in(attacker, org.admin_email, PASSWORD)
            body = assert_problem(limited, 429)
            assert body["type"].endswith("sign-in-throttled")
            assert 1 <= int(limited.headers["retry-after"]) <= 15 * 60
            # The limit is the address's: the owner elsewhere signs in.
            assert (await sign_in(owner, org.admin_email, PASSWORD)).status_code == 200
            # And it ends with its window.
            app.state.clock.advance(seconds=int(limited.headers["retry-after"]))
            assert (await sign_in(attacker, org.admin_email, PASSWORD)).status_code == 200


async def test_successful_sign_ins_do_not_use_up_the_address_limit(database_url: str) -> None:
    owner_ip = fresh_address()
    async with service(database_url, sign_in_address_failures=3) as app:
        async with client_at(app, owner_ip) as office:
            org = await new_org(app, office)
            for _ in range(10):
                assert (await sign_in(office, org.admin_email, PASSWORD)).status_code == 200


async def test_two_instances_count_as_one(database_url: str) -> None:
    attacker_ip, owner_ip = fresh_address(), fresh_address()
    async with service(database_url) as first, service(database_url) as second:
        second.state.clock = first.state.clock
        async with client_at(first, owner_ip) as owner:
            org = await new_org(first, owner)
            async with client_at(first, attacker_ip) as one, client_at(second, attacker_ip) as two:
                for client in (one, two, one, two, one):
                    assert (await sign_in(client, org.admin_email, WRONG)).status_code == 401
                # Five failures spread over both instances lock this address out on both.
                assert (await sign_in(two, org.admin_email, PASSWORD)).status_code == 401
                assert (await sign_in(one, org.admin_email, PASSWORD)).status_code == 401
            async with client_at(second, owner_ip) as owner_on_second:
                assert (
                    await sign_in(owner_on_second, org.admin_email, PASSWORD)
                ).status_code == 200


@pytest.mark.real_password_hashing
@pytest.mark.parametrize("samples", [25])
async def test_an_unknown_email_and_a_wrong_password_take_the_same_time(
    database_url: str, samples: int
) -> None:
    # The shipped floor: failed sign-ins answer no sooner than this.
    owner_ip = fresh_address()
    async with service(database_url, sign_in_failure_seconds=0.25) as app:
        async with client_at(app, owner_ip) as owner:
            org = await new_org(app, owner)
        timings: dict[str, list[float]] = {"unknown": [], "wrong": []}
        for _ in range(samples):
            # A fresh address each time, so no lock-out shortens either path.
            async with client_at(app, fresh_address()) as client:
                for kind, email in (
                    ("unknown", unique_email("nobody")),
                    ("wrong", org.admin_email),
                ):
                    started = time.perf_counter()
                    response = await sign_in(client, email, WRONG)
                    timings[kind].append(time.perf_counter() - started)
                    assert response.status_code == 401
        # Load on the machine only ever adds time, so the fastest answer of each kind is the
        # one that shows what the code does: both padded to the floor, neither beyond it by
        # more than noise. The medians must agree too, within a looser bound.
        fastest = {kind: min(times) for kind, times in timings.items()}
        middle = {kind: statistics.median(times) for kind, times in timings.items()}
        assert fastest["unknown"] >= 0.25 and fastest["wrong"] >= 0.25, fastest
        assert abs(fastest["unknown"] - fastest["wrong"]) < 0.01, fastest
        assert abs(middle["unknown"] - middle["wrong"]) < 0.05, middle


async def test_a_stolen_session_cannot_guess_the_password_unthrottled(database_url: str) -> None:
    thief_ip = fresh_address()
    async with service(database_url) as app:
        async with client_at(app, thief_ip) as thief:
            org = await new_org(app, thief)
            answers = [
                await thief.post(
                    "/v1/me/password",
                    json={
                        "current_password": f"{WRONG} {n}",
                        "new_password": "a brand new passphrase",
                    },
                    headers=org.headers,
                )
                for n in range(6)
            ]
            assert [r.status_code for r in answers] == [403] * 6
            # Past five, even the right password is refused at this address, as at sign-in.
            right = await thief.post(
                "/v1/me/password",
                json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
                headers=org.headers,
            )
            assert_problem(right, 403)
            assert (await sign_in(thief, org.admin_email, PASSWORD)).status_code == 401
            # The session itself stays good, and the password unchanged.
            assert (await thief.get("/v1/me", headers=org.headers)).status_code == 200
        async with client_at(app, fresh_address()) as owner:
            assert (await sign_in(owner, org.admin_email, PASSWORD)).status_code == 200


async def test_the_worker_forgets_old_counters_but_not_an_account_at_the_cap(
    database_url: str,
) -> None:
    async with service(database_url) as app:
        async with client_at(app, fresh_address()) as owner:
            org = await new_org(app, owner)
            victim = await create_user(org, {"email": unique_email("capped"), "password": PASSWORD})
            email = victim.json()["email"]
            for _ in range(10):
                async with client_at(app, fresh_address()) as attacker:
                    for _ in range(10):
                        await sign_in(attacker, email, WRONG)
                        app.state.clock.advance(hours=1, seconds=1)
            app.state.clock.advance(days=2)
            done = await run_due_jobs(
                app.state.sessionmaker,
                app.state.settings,
                app.state.clock.now(),
                only={"forget_sign_in_attempts"},
            )
            # Every address and pair counter went; the account at the cap stays locked.
            assert done["forget_sign_in_attempts"] >= 20
            async with client_at(app, fresh_address()) as elsewhere:
                assert (await sign_in(elsewhere, email, PASSWORD)).status_code == 401
