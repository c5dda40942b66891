"""Sessions: idle and absolute expiry (on a controllable clock), listing and ending them,
and revocation when the password changes or the user is disabled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from crm_service.clock import FixedClock
from tests.conftest import PASSWORD, Org, assert_problem, create_user, unique_email


@pytest.fixture
def clock(app: Any) -> Iterator[FixedClock]:
    original = app.state.clock
    app.state.clock = FixedClock(datetime.now(UTC))
    try:
        yield app.state.clock
    finally:
        app.state.clock = original


async def me(org: Org, headers: dict[str, str]) -> int:
    return (await org.client.get("/v1/me", headers=headers)).status_code


async def test_idle_sessions_end_after_30_minutes_unused(org: Org, clock: FixedClock) -> None:
    headers = await org.login(org.admin_email)
    for _ in range(4):  # used every 25 minutes: stays alive for 100 minutes
        clock.advance(minutes=25)
        assert await me(org, headers) == 200
    clock.advance(minutes=31)
    assert await me(org, headers) == 401


async def test_sessions_end_after_12_hours_however_busy(org: Org, clock: FixedClock) -> None:
    headers = await org.login(org.admin_email)
    for _ in range(47):  # every 15 minutes for 11 h 45 min
        clock.advance(minutes=15)
        assert await me(org, headers) == 200
    clock.advance(minutes=15)
    assert await me(org, headers) == 401


async def test_list_and_end_my_own_sessions(org: Org) -> None:
    other = await org.login(org.admin_email)
    listed = await org.client.get("/v1/me/sessions", headers=org.headers)
    sessions = listed.json()["data"]
    assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
    other_id = next(s["id"] for s in sessions if not s["current"])

    assert (
        await org.client.delete(f"/v1/me/sessions/{other_id}", headers=org.headers)
    ).status_code == 204
    assert await me(org, other) == 401 and await me(org, org.headers) == 200
    assert_problem(await org.client.delete(f"/v1/me/sessions/{other_id}", headers=org.headers), 404)


async def test_nobody_ends_someone_elses_session_through_their_own_list(org: Org) -> None:
    colleague = await org.add_user()
    theirs = (await org.client.get("/v1/me/sessions", headers=colleague)).json()["data"][0]["id"]
    assert_problem(await org.client.delete(f"/v1/me/sessions/{theirs}", headers=org.headers), 404)
    assert await me(org, colleague) == 200


async def test_admins_end_every_session_of_a_user(org: Org, other_org: Org) -> None:
    email = unique_email("worker")
    created = await create_user(org, {"email": email, "password": PASSWORD})
    user_id = created.json()["id"]
    first, second = await org.login(email), await org.login(email)
    ended = await org.client.delete(f"/v1/users/{user_id}/sessions", headers=org.headers)
    assert ended.status_code == 204
    assert await me(org, first) == 401 and await me(org, second) == 401
    # Another organization's admin cannot reach this user at all.
    assert_problem(
        await other_org.client.delete(f"/v1/users/{user_id}/sessions", headers=other_org.headers),
        404,
    )
    assert_problem(await org.client.delete(f"/v1/users/{user_id}/sessions", headers=first), 401)


async def test_changing_the_password_ends_the_other_sessions(org: Org) -> None:
    other = await org.login(org.admin_email)
    wrong = await org.client.post(
        "/v1/me/password",
        json={"current_password": "not my password", "new_password": "a brand new passphrase"},
        headers=org.headers,
    )
    # 403, not 401: a frontend must not read a mistyped password as "signed out".
    assert assert_problem(wrong, 403)["type"].endswith("/reauthentication-failed")
    assert await me(org, org.headers) == 200 and await me(org, other) == 200

    changed = await org.client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=org.headers,
    )
    assert changed.status_code == 204
    assert await me(org, other) == 401 and await me(org, org.headers) == 200
    old = await org.client.post(
        "/v1/auth/login", json={"email": org.admin_email, "password": PASSWORD}
    )
    assert_problem(old, 401)
    assert (await org.login(org.admin_email, "a brand new passphrase"))["Authorization"]


async def test_disabling_a_user_ends_all_their_sessions_at_once(org: Org) -> None:
    email = unique_email("leaver")
    created = await create_user(org, {"email": email, "password": PASSWORD})
    user_id = created.json()["id"]
    sessions = [await org.login(email) for _ in range(3)]
    disabled = await org.client.patch(
        f"/v1/users/{user_id}", json={"is_active": False}, headers=org.headers
    )
    assert disabled.status_code == 200 and disabled.json()["is_active"] is False
    for headers in sessions:
        assert await me(org, headers) == 401
    login = await org.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    wrong = await org.client.post(
        "/v1/auth/login", json={"email": email, "password": "nope nope nope"}
    )
    assert login.status_code == wrong.status_code == 401 and login.json() == wrong.json()
    # And back again: a fresh sign-in works, the old sessions stay ended.
    await org.client.patch(f"/v1/users/{user_id}", json={"is_active": True}, headers=org.headers)
    assert await me(org, await org.login(email)) == 200
    assert await me(org, sessions[0]) == 401


async def test_admins_cannot_disable_or_demote_themselves(org: Org) -> None:
    for change in ({"is_active": False}, {"is_admin": False}):
        response = await org.client.patch(
            f"/v1/users/{org.admin_id}", json=change, headers=org.headers
        )
        assert_problem(response, 409)
    assert await me(org, org.headers) == 200


async def test_mandatory_two_factor_is_an_admin_setting(org: Org) -> None:
    standard = await org.add_user()
    assert_problem(
        await org.client.put(
            "/v1/settings/security", json={"mfa_required": True}, headers=standard
        ),
        403,
    )
    turned_on = await org.client.put(
        "/v1/settings/security", json={"mfa_required": True}, headers=org.headers
    )
    assert turned_on.json() == {"mfa_required": True}
    assert (await org.client.get("/v1/settings/security", headers=org.headers)).json() == {
        "mfa_required": True
    }
    answer = await org.client.post(
        "/v1/auth/login", json={"email": org.admin_email, "password": PASSWORD}
    )
    assert answer.json()["mfa_required"] is True and answer.json()["enrolment_required"] is True
    assert "access_token" not in answer.json()
