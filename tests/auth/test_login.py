"""Sign-in: one answer for every failure, Argon2id hashes, hashed opaque tokens, logout."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from crm_service.auth.models import AuthSession
from crm_service.auth.tokens import token_digest
from crm_service.db.base import utcnow
from tests.conftest import PASSWORD, Org, create_user, unique_email


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def test_login_returns_a_bearer_token_that_works(org: Org) -> None:
    response = await _login(org.client, org.admin_email.upper(), PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 12 * 3600
    assert body["access_token"].startswith("crm_at_") and len(body["access_token"]) >= 7 + 43
    me = await org.client.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["email"] == org.admin_email


async def test_unknown_email_and_wrong_password_answer_alike(org: Org) -> None:
    wrong_password = await _login(org.client, org.admin_email, "not the password at all")
    unknown_email = await _login(org.client, unique_email("nobody"), "not the password at all")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.headers["www-authenticate"] == unknown_email.headers["www-authenticate"]


@pytest.mark.real_password_hashing
async def test_unknown_email_costs_a_password_verification_too(org: Org) -> None:
    """Without the dummy Argon2 verification an unknown email answers ~20x faster."""

    async def median(email: str) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            await _login(org.client, email, "not the password at all")
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    known, unknown = await median(org.admin_email), await median(unique_email("nobody"))
    assert 0.33 < unknown / known < 3.0, f"known {known:.4f}s vs unknown {unknown:.4f}s"


async def test_disabled_user_cannot_sign_in_and_answer_is_the_same(org: Org, app: Any) -> None:
    email = unique_email("leaver")
    created = await create_user(org, {"email": email, "password": PASSWORD})
    async with app.state.engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET is_active = :no WHERE email = :email"),
            {"no": False, "email": email},
        )
    assert created.status_code == 201
    disabled = await _login(org.client, email, PASSWORD)
    wrong = await _login(org.client, org.admin_email, "not the password at all")
    assert disabled.status_code == 401 and disabled.json() == wrong.json()


async def test_passwords_are_argon2id_and_tokens_are_stored_only_hashed(org: Org, app: Any) -> None:
    token = org.headers["Authorization"].removeprefix("Bearer ")
    async with app.state.engine.connect() as connection:
        hashes = (await connection.execute(text("SELECT password_hash FROM users"))).scalars().all()
        sessions = (
            (await connection.execute(text("SELECT token_hash FROM auth_sessions"))).scalars().all()
        )
    assert hashes and all(h.startswith("$argon2id$v=19$m=19456,t=2,p=1$") for h in hashes)
    assert token not in sessions and all(len(h) == 64 for h in sessions)
    assert not any(PASSWORD in h for h in hashes)


async def test_logout_makes_the_token_unusable_at_once(org: Org) -> None:
    headers = await org.login(org.admin_email)
    assert (await org.client.get("/v1/me", headers=headers)).status_code == 200
    assert (await org.client.post("/v1/auth/logout", headers=headers)).status_code == 204
    after = await org.client.get("/v1/me", headers=headers)
    assert after.status_code == 401
    assert 'error="invalid_token"' in after.headers["www-authenticate"]
    # The other session of the same user is untouched.
    assert (await org.client.get("/v1/me", headers=org.headers)).status_code == 200


async def test_expired_and_idle_sessions_are_refused(org: Org, app: Any) -> None:
    expired, idle = await org.login(org.admin_email), await org.login(org.admin_email)
    now = utcnow()
    async with app.state.sessionmaker() as session:
        for headers, values in (
            (expired, {"expires_at": now - timedelta(seconds=1)}),
            (idle, {"last_used_at": now - timedelta(minutes=31)}),
        ):
            digest = token_digest(headers["Authorization"].removeprefix("Bearer "))
            await session.execute(
                update(AuthSession).where(AuthSession.token_hash == digest).values(**values)
            )
        await session.commit()
    assert (await org.client.get("/v1/me", headers=expired)).status_code == 401
    assert (await org.client.get("/v1/me", headers=idle)).status_code == 401
    assert (await org.client.get("/v1/me", headers=org.headers)).status_code == 200


async def test_malformed_and_forged_tokens_are_refused(org: Org) -> None:
    for value in ("Bearer", "Bearer ", "Basic abc", "Bearer crm_at_forged", "Bearer " + "x" * 5000):
        response = await org.client.get("/v1/me", headers={"Authorization": value})
        assert response.status_code == 401, value


async def test_admin_creates_users_who_can_sign_in(org: Org) -> None:
    email = unique_email("new")
    created = await create_user(
        org, {"email": email, "password": PASSWORD, "full_name": "New Person"}
    )
    assert created.status_code == 201
    assert created.headers["location"] == f"/v1/users/{created.json()['id']}"
    assert "password" not in created.text and "hash" not in created.text
    headers = await org.login(email)
    me = await org.client.get("/v1/me", headers=headers)
    assert me.json()["is_admin"] is False and me.json()["organization_id"] == str(org.id)

    listed = await org.client.get("/v1/users", headers=org.headers)
    assert {u["email"] for u in listed.json()["data"]} == {org.admin_email, email}


async def test_only_admins_manage_users(org: Org) -> None:
    standard = await org.add_user()
    response = await org.client.post("/v1/users", json={"email": unique_email()}, headers=standard)
    assert response.status_code == 403
    assert "crm.admin" in response.json()["detail"]
    assert (await org.client.get("/v1/users", headers=standard)).status_code == 403


async def test_duplicate_and_weak_user_input_is_refused(org: Org) -> None:
    duplicate = await create_user(org, {"email": org.admin_email.upper(), "password": PASSWORD})
    assert duplicate.status_code == 409
    short = await create_user(org, {"email": unique_email(), "password": "short"})
    assert short.status_code == 422
    assert short.json()["errors"][0]["field"] == "body.password"
    assert "short" not in short.text.replace("string_too_short", "")
    listed = await org.client.get("/v1/users", headers=org.headers)
    assert len(listed.json()["data"]) == 1
