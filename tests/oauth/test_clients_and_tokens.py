"""Partner clients and the token endpoint over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey
from sqlalchemy import text

from crm_service.clock import FixedClock
from tests.conftest import Org, assert_problem
from tests.oauth.conftest import Partner, register, token

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def _audit_actions(org: Org) -> list[str]:
    response = await org.client.get("/v1/audit-events?limit=100", headers=org.headers)
    assert response.status_code == 200, response.text
    return [event["action"] for event in response.json()["data"]]


def _oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert isinstance(body.get("error_description"), str)
    return body


async def test_client_lifecycle_secret_shown_once_and_hashed(org: Org) -> None:
    partner = await register(org, ip_allowlist=["198.51.100.0/24", "203.0.113.7"])
    assert partner.client_secret.startswith("crm_cs_")
    # 256 bits of randomness, base64url without padding: 43 characters after the prefix.
    assert len(partner.client_secret.removeprefix("crm_cs_")) >= 43
    assert partner.body["ip_allowlist"] == ["198.51.100.0/24", "203.0.113.7/32"]
    assert partner.body["rate_limits"]["burst"] == {"limit": 100, "window_seconds": 10}
    one = await org.client.get(f"/v1/oauth-clients/{partner.client_id}", headers=org.headers)
    assert one.status_code == 200 and "client_secret" not in one.json()
    listed = await org.client.get("/v1/oauth-clients", headers=org.headers)
    assert [c["client_id"] for c in listed.json()["data"]] == [partner.client_id]
    assert "client_secret" not in listed.text
    # At rest only a hash of the secret.
    async with org.app.state.engine.connect() as connection:
        dump = " ".join(
            str(value)
            for row in (await connection.execute(text("SELECT * FROM oauth_clients"))).all()
            for value in row
        )
    assert partner.client_secret not in dump
    assert hashlib.sha256(partner.client_secret.encode()).hexdigest() in dump

    changed = await org.client.patch(
        f"/v1/oauth-clients/{partner.client_id}",
        json={"name": "ERP", "rate_limits": {"daily": {"limit": 5}}},
        headers=org.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["rate_limits"]["daily"] == {"limit": 5}
    deleted = await org.client.delete(f"/v1/oauth-clients/{partner.client_id}", headers=org.headers)
    assert deleted.status_code == 204
    gone = await org.client.get(f"/v1/oauth-clients/{partner.client_id}", headers=org.headers)
    assert_problem(gone, 404)
    actions = await _audit_actions(org)
    for action in ("oauth_client.created", "oauth_client.updated", "oauth_client.deleted"):
        assert action in actions


async def test_clients_need_the_manage_integrations_right_and_stay_in_their_org(
    org: Org, other_org: Org
) -> None:
    standard = await org.add_user()
    refused = await org.client.post(
        "/v1/oauth-clients", json={"name": "x", "scopes": ["crm.leads.read"]}, headers=standard
    )
    assert_problem(refused, 403)
    partner = await register(org)
    foreign = await other_org.client.get(
        f"/v1/oauth-clients/{partner.client_id}", headers=other_org.headers
    )
    assert_problem(foreign, 404)
    admin_scope = await org.client.post(
        "/v1/oauth-clients", json={"name": "x", "scopes": ["crm.admin"]}, headers=org.headers
    )
    assert_problem(admin_scope, 422)


async def test_token_issued_with_no_store_and_audited(org: Org) -> None:
    partner = await register(org)
    response = await org.client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "crm.leads.read crm.contacts.read"},
        headers=partner.basic,
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "crm.contacts.read crm.leads.read"
    assert body["access_token"].startswith("crm_pt_")
    assert "refresh_token" not in body
    assert "oauth.token_issued" in await _audit_actions(org)
    events = await org.client.get("/v1/audit-events?limit=100", headers=org.headers)
    assert body["access_token"] not in events.text


async def test_every_error_of_the_token_endpoint(org: Org) -> None:
    partner = await register(org, scopes=["crm.leads.read"])
    http = org.client
    grant = {"grant_type": "client_credentials"}
    # invalid_request: no grant_type, a repeated parameter, not form-encoded, two methods.
    _oauth_error(
        await http.post("/oauth/token", data={}, headers=partner.basic), 400, "invalid_request"
    )
    repeated = await http.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={**partner.basic, "Content-Type": "application/x-www-form-urlencoded"},
    )
    _oauth_error(repeated, 400, "invalid_request")
    as_json = await http.post("/oauth/token", json=grant, headers=partner.basic)
    _oauth_error(as_json, 400, "invalid_request")
    two_methods = await http.post(
        "/oauth/token",
        data={**grant, "client_assertion_type": ASSERTION_TYPE, "client_assertion": "a.b.c"},
        headers=partner.basic,
    )
    _oauth_error(two_methods, 400, "invalid_request")
    # unsupported_grant_type: the password grant, refresh tokens, anything else.
    for other in ("password", "refresh_token", "authorization_code"):
        response = await http.post(
            "/oauth/token", data={"grant_type": other}, headers=partner.basic
        )
        _oauth_error(response, 400, "unsupported_grant_type")
    # invalid_client: no credentials, a wrong secret, an unknown client, a secret in the body.
    for headers in ({}, _basic(partner.client_id, "crm_cs_wrong"), _basic(str(uuid.uuid4()), "x")):
        response = await http.post("/oauth/token", data=grant, headers=headers)
        _oauth_error(response, 401, "invalid_client")
        assert response.headers["www-authenticate"].startswith("Basic")
    in_body = await http.post(
        "/oauth/token",
        data={**grant, "client_id": partner.client_id, "client_secret": partner.client_secret},
    )
    _oauth_error(in_body, 401, "invalid_client")
    # invalid_scope: beyond the client's, empty, unknown.
    for scope in ("crm.leads.write", "", "crm.leads.read crm.admin", "nonsense"):
        response = await http.post(
            "/oauth/token", data={**grant, "scope": scope}, headers=partner.basic
        )
        _oauth_error(response, 400, "invalid_scope")
    # unauthorized_client: a client called from outside its own address list.
    fenced = await register(org, ip_allowlist=["198.51.100.0/24"])
    _oauth_error(
        await http.post("/oauth/token", data=grant, headers=fenced.basic),
        400,
        "unauthorized_client",
    )
    actions = await _audit_actions(org)
    assert "oauth.token_refused" in actions


async def test_rotation_keeps_the_old_secret_for_the_grace_period(org: Org) -> None:
    partner = await register(org)
    rotated = await org.client.post(
        f"/v1/oauth-clients/{partner.client_id}/secret", headers=org.headers
    )
    assert rotated.status_code == 200, rotated.text
    new = Partner(partner.client_id, rotated.json()["client_secret"], {})
    assert new.client_secret != partner.client_secret
    assert rotated.json()["previous_secret_expires_at"] is not None
    await token(org.client, new)
    await token(org.client, partner)  # within the grace period
    clock = org.app.state.clock
    org.app.state.clock = FixedClock(clock.now())
    try:
        org.app.state.clock.advance(seconds=86401)
        late = await org.client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, headers=partner.basic
        )
        _oauth_error(late, 401, "invalid_client")
        await token(org.client, new)
    finally:
        org.app.state.clock = clock
    assert "oauth_client.secret_rotated" in await _audit_actions(org)


async def test_disabling_or_deleting_a_client_ends_its_tokens_at_once(org: Org) -> None:
    partner = await register(org)
    bearer = await token(org.client, partner)
    assert (await org.client.get("/v1/leads", headers=bearer)).status_code == 200
    disabled = await org.client.patch(
        f"/v1/oauth-clients/{partner.client_id}", json={"is_active": False}, headers=org.headers
    )
    assert disabled.status_code == 200
    refused = await org.client.get("/v1/leads", headers=bearer)
    assert_problem(refused, 401)
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    again = await org.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=partner.basic
    )
    _oauth_error(again, 401, "invalid_client")
    # Enabled again: the old token stays dead, a new one works.
    await org.client.patch(
        f"/v1/oauth-clients/{partner.client_id}", json={"is_active": True}, headers=org.headers
    )
    assert (await org.client.get("/v1/leads", headers=bearer)).status_code == 401
    fresh = await token(org.client, partner)
    await org.client.delete(f"/v1/oauth-clients/{partner.client_id}", headers=org.headers)
    assert (await org.client.get("/v1/leads", headers=fresh)).status_code == 401


async def test_wrong_secrets_are_throttled_like_passwords(org: Org) -> None:
    partner = await register(org)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=org.app, client=("192.0.2.55", 4000)),
        base_url="http://testserver",
    )
    async with http:
        wrong = _basic(partner.client_id, "crm_cs_" + "x" * 43)
        for _ in range(5):
            response = await http.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, headers=wrong
            )
            _oauth_error(response, 401, "invalid_client")
        # The client at this address is now locked: even the right secret answers alike.
        locked = await http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, headers=partner.basic
        )
        _oauth_error(locked, 401, "invalid_client")
    # From elsewhere the partner is not held up.
    await token(org.client, partner)


def _assertion(key: ECKey, client_id: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": "http://127.0.0.1:8000/oauth/token",
        "exp": now + 120,
        "iat": now,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode({"alg": "ES256", "kid": "k1"}, payload, key)


async def test_private_key_jwt_and_a_replayed_jti_is_refused(org: Org) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key = ECKey.import_key(private)
    public = {**key.as_dict(private=False), "kid": "k1", "use": "sig"}
    partner = await register(org, jwks={"keys": [public]}, scopes=["crm.leads.read"])
    assertion = _assertion(key, partner.client_id)
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    first = await org.client.post("/oauth/token", data=form)
    assert first.status_code == 200, first.text
    bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert (await org.client.get("/v1/leads", headers=bearer)).status_code == 200
    replayed = await org.client.post("/oauth/token", data=form)
    _oauth_error(replayed, 401, "invalid_client")
    # Signed by another key, for another audience, expired, too long-lived, someone else's.
    stranger = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    now = int(time.time())
    for bad in (
        _assertion(stranger, partner.client_id),
        _assertion(key, partner.client_id, aud="https://elsewhere.example/token"),
        _assertion(key, partner.client_id, exp=now - 10),
        _assertion(key, partner.client_id, exp=now + 3600),
        _assertion(key, partner.client_id, sub=str(uuid.uuid4())),
        _assertion(key, partner.client_id, jti=None),
    ):
        response = await org.client.post("/oauth/token", data={**form, "client_assertion": bad})
        _oauth_error(response, 401, "invalid_client")
    refused = await org.client.post(
        "/v1/oauth-clients",
        json={
            "name": "x",
            "scopes": ["crm.leads.read"],
            "jwks": {"keys": [key.as_dict(private=True)]},
        },
        headers=org.headers,
    )
    assert_problem(refused, 422)
    assert json.dumps(key.as_dict(private=True)["d"]) not in refused.text


async def test_jwks_are_typed_public_keys_and_a_point_off_its_curve_is_refused(org: Org) -> None:
    ec_key = {**ECKey.import_key(ec.generate_private_key(ec.SECP256R1())).as_dict(), "kid": "k1"}
    ed_key = {**OKPKey.generate_key("Ed25519").as_dict(private=False), "use": "sig"}
    partner = await register(org, jwks={"keys": [ec_key, ed_key]})
    # Each key is answered with the members it has, no nulls for the others.
    assert partner.body["jwks"] == {"keys": [ec_key, ed_key]}

    def create(key: dict[str, Any]) -> Any:
        body = {"name": "x", "scopes": ["crm.leads.read"], "jwks": {"keys": [key]}}
        return org.client.post("/v1/oauth-clients", json=body, headers=org.headers)

    other = ECKey.import_key(ec.generate_private_key(ec.SECP256R1())).as_dict()
    off_curve = {**ec_key, "y": other["y"]}
    for key, rule in (
        (off_curve, "jwk"),
        ({**ec_key, "crv": "P-521"}, "key_type"),
        ({"kty": "oct", "k": "c2VjcmV0"}, "key_type"),
        ({**ec_key, "x": ec_key["x"][:-1]}, "string_too_short"),
        ({**ec_key, "x5u": "https://example.com/keys"}, "extra_forbidden"),
    ):
        refused = await create(key)
        assert_problem(refused, 422)
        assert [error["rule"] for error in refused.json()["errors"]] == [rule], key
    listed = await org.client.get("/v1/oauth-clients", headers=org.headers)
    assert [client["name"] for client in listed.json()["data"]] == ["Marketing tool"]
