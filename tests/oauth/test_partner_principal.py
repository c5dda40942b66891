"""What a partner token may do on /v1, and revocation and introspection, over HTTP."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi.routing import APIRoute

from crm_service.clock import FixedClock
from crm_service.jobs.worker import run_due_jobs
from crm_service.main import ROUTERS
from crm_service.openapi import _scopes_needed
from tests.conftest import Org, assert_problem, count_rows
from tests.oauth.conftest import EVERY_RECORD_SCOPE, register, token


async def test_scope_is_enforced_per_route_with_the_rfc_6750_challenge(org: Org) -> None:
    partner = await register(org)
    reader = await token(org.client, partner, scope="crm.leads.read")
    assert (await org.client.get("/v1/leads", headers=reader)).status_code == 200
    for method, path, body in (
        ("POST", "/v1/leads", {"last_name": "Lovelace"}),
        ("GET", "/v1/contacts", None),
        ("GET", "/v1/accounts", None),
    ):
        response = await org.client.request(method, path, json=body, headers=reader)
        assert_problem(response, 403)
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert 'error="insufficient_scope"' in challenge
        needed = {"POST": "crm.leads.write"}.get(method, f"crm.{path.split('/')[2]}.read")
        assert f'scope="{needed}"' in challenge
    writer = await token(org.client, partner, scope="crm.leads.write crm.leads.read")
    created = await org.client.post("/v1/leads", json={"last_name": "Lovelace"}, headers=writer)
    assert created.status_code == 201, created.text
    delete = await org.client.delete(f"/v1/leads/{created.json()['id']}", headers=writer)
    assert_problem(delete, 403)
    assert 'scope="crm.leads.delete"' in delete.headers["www-authenticate"]


async def test_records_a_partner_creates_carry_source_api_and_its_client_id(org: Org) -> None:
    partner = await register(org)
    bearer = await token(org.client, partner)
    created = await org.client.post(
        "/v1/contacts", json={"last_name": "Hopper", "email": "grace@example.com"}, headers=bearer
    )
    assert created.status_code == 201, created.text
    record = await org.client.get(f"/v1/contacts/{created.json()['id']}", headers=org.headers)
    source = record.json()["source"]
    assert source["channel"] == "api" and source["client_id"] == partner.client_id
    events = await org.client.get("/v1/audit-events?limit=100", headers=org.headers)
    created_events = [e for e in events.json()["data"] if e["action"] == "record.created"]
    assert created_events[0]["actor_type"] == "client"
    assert created_events[0]["actor_id"] == partner.client_id


async def test_a_partner_reads_through_the_api_channel_with_sensitive_values_masked(
    org: Org,
) -> None:
    classified = await org.client.put(
        "/v1/settings/fields/contacts", json={"fields": {"phone": "sensitive"}}, headers=org.headers
    )
    assert classified.status_code == 200, classified.text
    created = await org.client.post(
        "/v1/contacts", json={"last_name": "Noether", "phone": "+442079460000"}, headers=org.headers
    )
    assert created.status_code == 201, created.text
    partner = await register(org)
    bearer = await token(org.client, partner)
    read = await org.client.get(f"/v1/contacts/{created.json()['id']}", headers=bearer)
    assert read.status_code == 200, read.text
    assert read.json()["phone"] is None and "phone" in read.json()["masked_fields"]


def _path(route: APIRoute) -> str:
    path = route.path
    for name in route.param_convertors:
        path = path.replace("{" + name + "}", str(uuid.uuid4()))
    return path


# Outside the record routes, what a partner scope may reach (DESIGN.md: consent, privacy and
# export; a subject's package with `crm.privacy.read`); every other /v1 route needs a person.
PARTNER_PREFIXES = ("/v1/consent/", "/v1/privacy/requests", "/v1/privacy/subjects/")


async def test_a_partner_token_never_reaches_me_or_any_route_needing_a_human_right(
    org: Org,
) -> None:
    scopes = [*EVERY_RECORD_SCOPE, "crm.consent.read", "crm.privacy.read", "crm.export"]
    partner = await register(org, scopes=scopes)
    bearer = await token(org.client, partner)
    record_prefixes = ("/v1/leads", "/v1/contacts", "/v1/accounts", "/v1/recycle-bin")
    checked = 0
    for router in ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute) or not route.path.startswith("/v1/"):
                continue
            if route.path.startswith(record_prefixes) or route.path.startswith("/v1/auth/"):
                continue
            if _scopes_needed(route.dependant):
                # Within a partner scope by design (consent, privacy, export): only those.
                assert route.path.startswith(PARTNER_PREFIXES), route.path
                continue
            for method in route.methods:
                response = await org.client.request(method, _path(route), json={}, headers=bearer)
                assert response.status_code == 403, f"{method} {route.path}: {response.text}"
                checked += 1
    assert checked >= 30
    me = await org.client.get("/v1/me", headers=bearer)
    assert_problem(me, 403)
    logout = await org.client.post("/v1/auth/logout", headers=bearer)
    assert_problem(logout, 403)


async def _form(http: httpx.AsyncClient, path: str, partner: Any, **form: str) -> httpx.Response:
    return await http.post(path, data=form, headers=partner.basic)


async def test_revocation_and_introspection_only_for_the_owning_client(
    org: Org, other_org: Org
) -> None:
    partner = await register(org, scopes=["crm.leads.read"])
    other = await register(other_org, scopes=["crm.leads.read"])
    bearer = await token(org.client, partner)
    access_token = bearer["Authorization"].removeprefix("Bearer ")

    active = await _form(org.client, "/oauth/introspect", partner, token=access_token)
    assert active.status_code == 200 and active.headers["cache-control"] == "no-store"
    body = active.json()
    assert body["active"] is True and body["scope"] == "crm.leads.read"
    assert body["client_id"] == partner.client_id and body["token_type"] == "Bearer"
    assert body["exp"] > body["iat"]
    # Another client's view of the token: inactive, and nothing more.
    foreign = await _form(org.client, "/oauth/introspect", other, token=access_token)
    assert foreign.json() == {"active": False}
    unknown = await _form(org.client, "/oauth/introspect", partner, token="crm_pt_" + "x" * 43)
    assert unknown.json() == {"active": False}
    # Another client cannot revoke it (200, nothing happens); an unknown token is 200 too.
    refused = await _form(org.client, "/oauth/revoke", other, token=access_token)
    assert refused.status_code == 200
    assert (await org.client.get("/v1/leads", headers=bearer)).status_code == 200
    nothing = await _form(org.client, "/oauth/revoke", partner, token="not-a-token")
    assert nothing.status_code == 200
    # The owner revokes: dead at once, and introspects as inactive.
    revoked = await _form(org.client, "/oauth/revoke", partner, token=access_token)
    assert revoked.status_code == 200
    dead = await org.client.get("/v1/leads", headers=bearer)
    assert_problem(dead, 401)
    assert 'error="invalid_token"' in dead.headers["www-authenticate"]
    after = await _form(org.client, "/oauth/introspect", partner, token=access_token)
    assert after.json() == {"active": False}
    # Both endpoints authenticate the client.
    anonymous = await org.client.post("/oauth/introspect", data={"token": access_token})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    missing = await _form(org.client, "/oauth/revoke", partner)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


async def test_expired_tokens_are_invalid(org: Org) -> None:
    partner = await register(org)
    bearer = await token(org.client, partner)
    clock = org.app.state.clock
    org.app.state.clock = FixedClock(clock.now())
    try:
        org.app.state.clock.advance(seconds=3601)
        expired = await org.client.get("/v1/leads", headers=bearer)
        assert_problem(expired, 401)
        assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    finally:
        org.app.state.clock = clock


async def test_the_client_and_organization_address_lists_hold_on_every_call(org: Org) -> None:
    partner = await register(org)
    bearer = await token(org.client, partner)
    fenced = await org.client.patch(
        f"/v1/oauth-clients/{partner.client_id}",
        json={"ip_allowlist": ["198.51.100.0/24"]},
        headers=org.headers,
    )
    assert fenced.status_code == 200
    blocked = await org.client.get("/v1/leads", headers=bearer)
    body = assert_problem(blocked, 403)
    assert body["type"].endswith("ip-not-allowed")
    # Back to anywhere: the organization's own list applies to partners too.
    await org.client.patch(
        f"/v1/oauth-clients/{partner.client_id}", json={"ip_allowlist": None}, headers=org.headers
    )
    assert (await org.client.get("/v1/leads", headers=bearer)).status_code == 200
    org_list = await org.client.put(
        "/v1/settings/ip-allowlist",
        json={"enabled": True, "cidrs": ["198.51.100.0/24"], "confirm_self_lockout": True},
        headers=org.headers,
    )
    assert org_list.status_code == 200, org_list.text
    assert_problem(await org.client.get("/v1/leads", headers=bearer), 403)


async def test_the_worker_forgets_expired_tokens(org: Org) -> None:
    partner = await register(org)
    await token(org.client, partner)
    assert await count_rows(org.app, "oauth_tokens", org.id) == 1
    later = org.app.state.clock.now() + timedelta(hours=2)
    done = await run_due_jobs(
        org.app.state.sessionmaker, org.app.state.settings, later, only={"forget_expired_tokens"}
    )
    assert done["forget_expired_tokens"] >= 1
    assert await count_rows(org.app, "oauth_tokens", org.id) == 0


async def test_the_recycle_bin_names_the_missing_scope_too(org: Org) -> None:
    created = await org.client.post("/v1/leads", json={"last_name": "Babbage"}, headers=org.headers)
    lead_id = created.json()["id"]
    assert (await org.client.delete(f"/v1/leads/{lead_id}", headers=org.headers)).status_code == 204
    partner = await register(org)
    reader = await token(org.client, partner, scope="crm.leads.read")
    refused = await org.client.post(f"/v1/recycle-bin/leads/{lead_id}/restore", headers=reader)
    assert_problem(refused, 403)
    assert (
        'error="insufficient_scope", scope="crm.leads.delete"'
        in refused.headers["www-authenticate"]
    )
