"""The SSO test harness is a real OpenID provider: discovery, code + PKCE, tokens, refusals.

Plain httpx against the node process; no crm-service code is involved.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.sso.conftest import (
    CRM_CLIENT_ID,
    CRM_REDIRECT_URI,
    AuthorizeError,
    AuthRequest,
    OIDCProvider,
    authorize,
    default_clients,
    jwt_payload,
    start_provider,
)


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


async def get_code(provider: OIDCProvider, login_hint: str, http: httpx.AsyncClient | None = None):
    """Run a whole authorization request for login_hint; returns (request, code)."""
    request = provider.auth_request(CRM_CLIENT_ID, login_hint=login_hint)
    async with httpx.AsyncClient(timeout=10) as own:
        location = await authorize(http or own, request.url)
    assert location.startswith(CRM_REDIRECT_URI + "?"), location
    params = query(location)
    assert params["state"] == request.state
    assert params["iss"] == provider.issuer  # RFC 9207
    return request, params["code"]


async def redeem(
    provider: OIDCProvider,
    request: AuthRequest,
    code: str,
    *,
    verifier: str | None = None,
    post: bool = False,
) -> httpx.Response:
    """Exchange a code at the token endpoint as crm-service (client_secret_basic or _post)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": verifier or request.code_verifier or "",
    }
    secret = provider.clients[CRM_CLIENT_ID]
    async with httpx.AsyncClient(timeout=10) as http:
        if post:
            form |= {"client_id": CRM_CLIENT_ID, "client_secret": secret}
            return await http.post(provider.token_endpoint, data=form)
        return await http.post(provider.token_endpoint, data=form, auth=(CRM_CLIENT_ID, secret))


async def test_discovery_document(oidc_provider: OIDCProvider) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{oidc_provider.issuer}/.well-known/openid-configuration")
        assert response.status_code == 200
        metadata = response.json()
        assert metadata["issuer"] == oidc_provider.issuer
        assert oidc_provider.issuer == f"http://127.0.0.1:{oidc_provider.port}"
        for endpoint in ("jwks_uri", "authorization_endpoint", "token_endpoint"):
            assert metadata[endpoint].startswith(oidc_provider.issuer + "/"), endpoint
        assert "S256" in metadata["code_challenge_methods_supported"]
        assert {"openid", "email", "profile"} <= set(metadata["scopes_supported"])
        keys = (await http.get(metadata["jwks_uri"])).json()["keys"]
        assert keys and all("d" not in key for key in keys)  # public halves only


async def test_code_flow_with_pkce_yields_id_token(oidc_provider: OIDCProvider) -> None:
    request, code = await get_code(oidc_provider, "alice")
    response = await redeem(oidc_provider, request, code)
    assert response.status_code == 200, response.text
    tokens = response.json()
    claims = jwt_payload(tokens["id_token"])
    assert claims["iss"] == oidc_provider.issuer
    assert claims["aud"] == CRM_CLIENT_ID
    assert claims["sub"] == "alice"
    assert claims["nonce"] == request.nonce
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
    assert claims["name"] == "alice"
    assert abs(claims["exp"] - (time.time() + oidc_provider.id_token_ttl)) < 30
    # A code is good once.
    again = await redeem(oidc_provider, request, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_client_secret_post_is_accepted(oidc_provider: OIDCProvider) -> None:
    request, code = await get_code(oidc_provider, "carol")
    response = await redeem(oidc_provider, request, code, post=True)
    assert response.status_code == 200, response.text
    assert jwt_payload(response.json()["id_token"])["sub"] == "carol"


async def test_request_without_pkce_is_refused(oidc_provider: OIDCProvider) -> None:
    request = oidc_provider.auth_request(CRM_CLIENT_ID, login_hint="alice", pkce=False)
    async with httpx.AsyncClient(timeout=10) as http:
        location = await authorize(http, request.url)
    params = query(location)
    assert location.startswith(CRM_REDIRECT_URI + "?")
    assert "code" not in params
    assert params["error"] == "invalid_request" and "PKCE" in params["error_description"]


async def test_wrong_code_verifier_is_refused(oidc_provider: OIDCProvider) -> None:
    request, code = await get_code(oidc_provider, "alice")
    response = await redeem(oidc_provider, request, code, verifier="x" * 43)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_login_hint_is_required(oidc_provider: OIDCProvider) -> None:
    request = oidc_provider.auth_request(CRM_CLIENT_ID, login_hint=None)
    async with httpx.AsyncClient(timeout=10) as http:
        with pytest.raises(AuthorizeError) as refused:
            await authorize(http, request.url)
    assert refused.value.response.status_code == 400
    assert "login_hint" in refused.value.response.text


async def test_login_hint_wins_over_an_existing_session(oidc_provider: OIDCProvider) -> None:
    async with httpx.AsyncClient(timeout=10) as browser:  # one cookie jar for both logins
        for subject in ("alice", "bob", "bob"):
            request, code = await get_code(oidc_provider, subject, browser)
            response = await redeem(oidc_provider, request, code)
            assert jwt_payload(response.json()["id_token"])["sub"] == subject


async def test_second_provider_is_independent(oidc_provider: OIDCProvider) -> None:
    async with start_provider(default_clients(), id_token_ttl=5) as other:
        assert other.issuer != oidc_provider.issuer and other.port != oidc_provider.port
        async with httpx.AsyncClient(timeout=10) as http:
            first = (await http.get(oidc_provider.metadata["jwks_uri"])).json()["keys"]
            second = (await http.get(other.metadata["jwks_uri"])).json()["keys"]
        assert {k["n"] for k in first}.isdisjoint(k["n"] for k in second)
        assert other.clients[CRM_CLIENT_ID] != oidc_provider.clients[CRM_CLIENT_ID]
        request, code = await get_code(other, "dave")
        claims = jwt_payload((await redeem(other, request, code)).json()["id_token"])
        assert claims["iss"] == other.issuer and claims["exp"] - claims["iat"] == 5
