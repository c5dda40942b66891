"""OpenID Connect single sign-on against a real provider (npm oidc-provider on loopback):
the whole browser flow, linking by (issuer, subject), and ID tokens that must be refused."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from crm_service.auth.sso import SsoRefused, validate_id_token
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
from tests.sso.conftest import (
    CRM_CLIENT_ID,
    OTHER_CLIENT_ID,
    OIDCProvider,
    authorize,
    default_clients,
    jwt_payload,
    start_provider,
)

FRONTEND = "https://app.example/signed-in"


@dataclass
class Service:
    app: Any
    client: httpx.AsyncClient
    browser: httpx.AsyncClient  # talks to the provider over loopback, keeps its cookies


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[Service]:
    # The provider knows the callback as http://testserver/v1/auth/sso/callback.
    app = create_app(make_settings(database_url, public_base_url="http://testserver"))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
            httpx.AsyncClient(timeout=10) as browser,
        ):
            yield Service(app=app, client=client, browser=browser)


async def configure(org: Org, provider: OIDCProvider, **options: Any) -> httpx.Response:
    body = {
        "issuer": provider.issuer,
        "client_id": CRM_CLIENT_ID,
        "client_secret": provider.clients[CRM_CLIENT_ID],
        "frontend_redirect_url": FRONTEND,
        **options,
    }
    return await org.client.put("/v1/settings/sso", json=body, headers=org.headers)


async def sign_in(service: Service, org: Org, subject: str) -> dict[str, str]:
    """The browser's round trip; returns the fragment the app receives."""
    start = await service.client.get(f"/v1/auth/sso/{org.id}/start", params={"login_hint": subject})
    assert start.status_code == 302, start.text
    callback = await authorize(service.browser, start.headers["location"])
    assert callback.startswith("http://testserver/v1/auth/sso/callback?"), callback
    back = await service.client.get(callback.removeprefix("http://testserver"))
    assert back.status_code == 302, back.text
    location = back.headers["location"]
    assert location.startswith(FRONTEND + "#")
    fragment = {k: v[0] for k, v in parse_qs(urlsplit(location).fragment).items()}
    fragment["_callback"] = callback
    return fragment


async def redeem(service: Service, code: str) -> httpx.Response:
    return await service.client.post("/v1/auth/sso/token", json={"sso_code": code})


async def test_a_full_sign_in_creates_the_user_once_and_links_by_subject(
    service: Service, oidc_provider: OIDCProvider
) -> None:
    org = await new_org(service.app, service.client)
    assert (await configure(org, oidc_provider, allow_jit=True)).status_code == 200
    subject = f"alice-{secrets.token_hex(4)}"

    fragment = await sign_in(service, org, subject)
    assert "sso_code" in fragment, fragment
    token = await redeem(service, fragment["sso_code"])
    assert token.status_code == 200 and token.json()["token_type"] == "Bearer"
    me = await service.client.get(
        "/v1/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    assert me.json()["email"] == f"{subject}@example.com"
    assert me.json()["is_admin"] is False and me.json()["organization_id"] == str(org.id)

    again = await redeem(service, (await sign_in(service, org, subject))["sso_code"])
    me_again = await service.client.get(
        "/v1/me", headers={"Authorization": f"Bearer {again.json()['access_token']}"}
    )
    assert me_again.json()["id"] == me.json()["id"]


async def test_the_state_and_the_sso_code_work_once(
    service: Service, oidc_provider: OIDCProvider
) -> None:
    org = await new_org(service.app, service.client)
    await configure(org, oidc_provider, allow_jit=True)
    fragment = await sign_in(service, org, f"bob-{secrets.token_hex(4)}")
    replay = await service.client.get(fragment["_callback"].removeprefix("http://testserver"))
    assert_problem(replay, 400)
    assert (await redeem(service, fragment["sso_code"])).status_code == 200
    assert_problem(await redeem(service, fragment["sso_code"]), 401)
    assert_problem(await redeem(service, "made-up-code"), 401)


async def test_without_just_in_time_users_only_linked_subjects_get_in(
    service: Service, oidc_provider: OIDCProvider
) -> None:
    org = await new_org(service.app, service.client)
    await configure(org, oidc_provider, allow_jit=False)
    subject = f"carol-{secrets.token_hex(4)}"
    assert (await sign_in(service, org, subject)).get("sso_error") == "no_linked_user"

    # An existing user whose email has nothing to do with the subject: linking is by sub.
    email = unique_email("carol.at.work")
    created = await create_user(org, {"email": email, "password": PASSWORD})
    linked = await org.client.post(
        "/v1/settings/sso/identities",
        json={"user_id": created.json()["id"], "subject": subject},
        headers=org.headers,
    )
    assert linked.status_code == 204
    token = await redeem(service, (await sign_in(service, org, subject))["sso_code"])
    me = await service.client.get(
        "/v1/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    assert me.json()["email"] == email


async def test_an_existing_account_is_never_taken_over_by_email(
    service: Service, oidc_provider: OIDCProvider
) -> None:
    org = await new_org(service.app, service.client)
    await configure(org, oidc_provider, allow_jit=True)
    subject = f"dave-{secrets.token_hex(4)}"
    # The provider will assert email <subject>@example.com; a user with it already exists.
    created = await create_user(org, {"email": f"{subject}@example.com", "password": PASSWORD})
    assert created.status_code == 201, created.text
    assert (await sign_in(service, org, subject)).get("sso_error") == "email_in_use"


async def test_required_sso_refuses_passwords_except_for_the_break_glass_admin(
    service: Service, oidc_provider: OIDCProvider
) -> None:
    org = await new_org(service.app, service.client)
    email = unique_email("staff")
    await create_user(org, {"email": email, "password": PASSWORD})
    without_admin = await configure(org, oidc_provider, require_sso=True)
    assert_problem(without_admin, 422)
    assert (
        await configure(org, oidc_provider, require_sso=True, break_glass_user_id=str(org.admin_id))
    ).status_code == 200

    refused = await service.client.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert assert_problem(refused, 403)["type"].endswith("/sso-required")
    wrong = await service.client.post(
        "/v1/auth/login", json={"email": email, "password": "not the password"}
    )
    assert_problem(wrong, 401)  # a wrong password learns nothing about the SSO rule
    admin = await service.client.post(
        "/v1/auth/login", json={"email": org.admin_email, "password": PASSWORD}
    )
    assert admin.status_code == 200


async def test_configuration_is_checked_by_discovery_and_hides_the_secret(
    service: Service, oidc_provider: OIDCProvider
) -> None:
    org = await new_org(service.app, service.client)
    bad = await configure(org, oidc_provider, issuer="http://127.0.0.1:9/nowhere")
    assert "body.issuer" in {e["field"] for e in assert_problem(bad, 422)["errors"]}
    assert_problem(await org.client.get("/v1/settings/sso", headers=org.headers), 404)

    saved = await configure(org, oidc_provider)
    assert saved.status_code == 200
    secret = oidc_provider.clients[CRM_CLIENT_ID]
    shown = await org.client.get("/v1/settings/sso", headers=org.headers)
    assert secret not in shown.text and secret not in saved.text
    assert shown.json()["redirect_uri"] == "http://testserver/v1/auth/sso/callback"
    async with service.app.state.engine.connect() as connection:
        stored = (
            (await connection.execute(text("SELECT client_secret_sealed FROM identity_providers")))
            .scalars()
            .all()
        )
    assert stored and all(secret.encode() not in bytes(value) for value in stored)


# --- ID tokens from a real provider, checked by the validator --------------------------


async def real_id_token(provider: OIDCProvider, client_id: str, subject: str) -> tuple[str, str]:
    """An ID token the provider issued to `client_id`, and the nonce of its request."""
    request = provider.auth_request(client_id, login_hint=subject)
    async with httpx.AsyncClient(timeout=10) as browser:
        location = await authorize(browser, request.url)
        code = parse_qs(urlsplit(location).query)["code"][0]
        response = await browser.post(
            provider.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": request.redirect_uri,
                "code_verifier": request.code_verifier,
            },
            auth=(client_id, provider.clients[client_id]),
        )
    response.raise_for_status()
    return response.json()["id_token"], request.nonce


async def jwks_of(provider: OIDCProvider) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(provider.metadata["jwks_uri"])).raise_for_status().json()


async def test_the_validator_accepts_the_right_token_and_refuses_each_wrong_one(
    oidc_provider: OIDCProvider,
) -> None:
    jwks = await jwks_of(oidc_provider)
    token, nonce = await real_id_token(oidc_provider, CRM_CLIENT_ID, "erin")
    now = datetime.now(UTC)
    expected = {"jwks": jwks, "issuer": oidc_provider.issuer, "client_id": CRM_CLIENT_ID}
    claims = validate_id_token(token, nonce=nonce, now=now, **expected)
    assert claims["sub"] == "erin"

    with pytest.raises(SsoRefused):  # a wrong nonce (a replayed or injected token)
        validate_id_token(token, nonce="another-nonce", now=now, **expected)
    expiry = datetime.fromtimestamp(jwt_payload(token)["exp"], UTC)
    with pytest.raises(SsoRefused):  # expired (past the one-minute leeway)
        validate_id_token(token, nonce=nonce, now=expiry + timedelta(minutes=2), **expected)

    other_token, other_nonce = await real_id_token(oidc_provider, OTHER_CLIENT_ID, "erin")
    with pytest.raises(SsoRefused):  # issued to another client: wrong audience
        validate_id_token(other_token, nonce=other_nonce, now=now, **expected)

    tampered = token.rsplit(".", 1)[0] + "." + token.rsplit(".", 1)[1][::-1]
    with pytest.raises(SsoRefused):  # signature broken
        validate_id_token(tampered, nonce=nonce, now=now, **expected)


async def test_tokens_from_another_issuer_are_refused(oidc_provider: OIDCProvider) -> None:
    async with start_provider(default_clients()) as impostor:
        token, nonce = await real_id_token(impostor, CRM_CLIENT_ID, "frank")
        now = datetime.now(UTC)
        with pytest.raises(SsoRefused):  # signed by keys our provider never published
            validate_id_token(
                token,
                jwks=await jwks_of(oidc_provider),
                issuer=oidc_provider.issuer,
                client_id=CRM_CLIENT_ID,
                nonce=nonce,
                now=now,
            )
        with pytest.raises(SsoRefused):  # its own keys, but not the configured issuer
            validate_id_token(
                token,
                jwks=await jwks_of(impostor),
                issuer=oidc_provider.issuer,
                client_id=CRM_CLIENT_ID,
                nonce=nonce,
                now=now,
            )


async def test_an_unknown_organization_has_no_sign_in(service: Service) -> None:
    assert_problem(await service.client.get(f"/v1/auth/sso/{uuid.uuid4()}/start"), 404)


async def _actions(org: Org) -> list[str]:
    """The organization's audit actions, oldest first."""
    response = await org.client.get("/v1/audit-events", params={"limit": 200}, headers=org.headers)
    assert response.status_code == 200, response.text
    return [event["action"] for event in reversed(response.json()["data"])]


async def test_single_sign_on_writes_its_audit_events(
    service: Service, oidc_provider: OIDCProvider
) -> None:
    """The SSO routes the audit route walk cannot reach without the provider."""
    org = await new_org(service.app, service.client)
    assert (await configure(org, oidc_provider, allow_jit=False)).status_code == 200
    subject = f"dora-{secrets.token_hex(4)}"
    assert (await sign_in(service, org, subject)).get("sso_error") == "no_linked_user"
    user = await create_user(org, {"email": unique_email("dora"), "password": PASSWORD})
    linked = await org.client.post(
        "/v1/settings/sso/identities",
        json={"user_id": user.json()["id"], "subject": subject},
        headers=org.headers,
    )
    assert linked.status_code == 204
    token = await redeem(service, (await sign_in(service, org, subject))["sso_code"])
    assert token.status_code == 200
    removed = await org.client.delete("/v1/settings/sso", headers=org.headers)
    assert removed.status_code == 204

    actions = await _actions(org)
    expected_order = [
        "settings.sso_configured",
        "auth.sso_login_refused",
        "user.invited",
        "user.created",
        "user.invitation_accepted",
        "user.identity_linked",
        "auth.sso_login_succeeded",
        "auth.login_succeeded",
        "settings.sso_removed",
    ]
    since_configured = actions[actions.index("settings.sso_configured") :]
    assert since_configured == expected_order, actions
    refused = await org.client.get(
        "/v1/audit-events", params={"action": "auth.sso_login_refused"}, headers=org.headers
    )
    [event] = refused.json()["data"]
    assert event["reason"] == "no_linked_user" and event["outcome"] == "failure"
    signed_in = await org.client.get(
        "/v1/audit-events",
        params={"action": "auth.login_succeeded", "actor_id": user.json()["id"]},
        headers=org.headers,
    )
    assert [e["reason"] for e in signed_in.json()["data"]] == ["single_sign_on"]
