"""Delegated administration cannot escalate: a user holding some administration rights tries
every route that could give them, or an account they control, more than they hold. Each try
is refused with 403, changes nothing, and leaves an `access.delegation_refused` event; the
same routes used within the delegate's own rights still work.

The table is compared whole, so a route that starts letting one escalation through, or
starts refusing a legitimate change, fails the test by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.access.conftest import (
    Member,
    add_member,
    audit_events,
    builtin_profiles,
    create_group,
    create_profile,
    create_role,
)
from tests.conftest import PASSWORD, Org, assert_problem, new_org, unique_email

# The delegate: every operation but export, no sensitive values, user and access administration.
DELEGATE_MODULES = {
    m: ["create", "read", "update", "delete"] for m in ("leads", "contacts", "accounts")
}
DELEGATE_RIGHTS = ["manage_users", "manage_access"]


@dataclass
class Scene:
    org: Org
    delegate: Member
    delegate_profile: str
    ceo_role: str
    manager_role: str  # the delegate's role
    rep_role: str
    rep: Member  # a Standard user in the Rep role
    within_profile: str  # a profile the delegate covers
    sensitive_profile: str  # the delegate's profile plus view_sensitive
    audit_profile: str  # the delegate's profile plus view_audit
    export_profile: str  # the delegate's profile plus contacts:export
    second_admin: Member
    foreign_group: str  # a group the delegate is not in
    builtin: dict[str, str]


async def scene(org: Org) -> Scene:
    ceo = await create_role(org, "CEO")
    manager = await create_role(org, "Manager", parent_id=ceo)
    rep_role = await create_role(org, "Rep", parent_id=manager)
    delegate_profile = await create_profile(org, DELEGATE_MODULES, rights=DELEGATE_RIGHTS)
    delegate = await add_member(org, profile_id=delegate_profile, role_id=manager)
    rep = await add_member(org, role_id=rep_role)
    with_export = {**DELEGATE_MODULES, "contacts": DELEGATE_MODULES["contacts"] + ["export"]}
    return Scene(
        org=org,
        delegate=delegate,
        delegate_profile=delegate_profile,
        ceo_role=ceo,
        manager_role=manager,
        rep_role=rep_role,
        rep=rep,
        within_profile=await create_profile(org, {"contacts": ["read"]}, rights=["manage_users"]),
        sensitive_profile=await create_profile(
            org, DELEGATE_MODULES, view_sensitive=True, rights=DELEGATE_RIGHTS
        ),
        audit_profile=await create_profile(
            org, DELEGATE_MODULES, rights=[*DELEGATE_RIGHTS, "view_audit"]
        ),
        export_profile=await create_profile(org, with_export, rights=DELEGATE_RIGHTS),
        second_admin=await add_member(org, is_admin=True),
        foreign_group=await create_group(org, [rep.id]),
        builtin=await builtin_profiles(org),
    )


Attempt = Callable[[Scene, httpx.AsyncClient], Awaitable[httpx.Response]]


def new_user(**fields: Any) -> Callable[[Scene], dict[str, Any]]:
    def body(s: Scene) -> dict[str, Any]:
        resolved = {k: (v(s) if callable(v) else v) for k, v in fields.items()}
        return {"email": unique_email("new"), **resolved}

    return body


def post(path: str, body: Callable[[Scene], dict[str, Any]]) -> Attempt:
    return lambda s, c: c.post(path, json=body(s), headers=s.delegate.headers)


def patch(path: Callable[[Scene], str], body: Callable[[Scene], dict[str, Any]]) -> Attempt:
    return lambda s, c: c.patch(path(s), json=body(s), headers=s.delegate.headers)


ESCALATIONS: dict[str, Attempt] = {
    "create user: is_admin": post("/v1/users", new_user(is_admin=True)),
    "create user: Administrator profile": post(
        "/v1/users", new_user(profile_id=lambda s: s.builtin["administrator"])
    ),
    "create user: + view_sensitive": post(
        "/v1/users", new_user(profile_id=lambda s: s.sensitive_profile)
    ),
    "create user: + view_audit": post("/v1/users", new_user(profile_id=lambda s: s.audit_profile)),
    "create user: + contacts export": post(
        "/v1/users", new_user(profile_id=lambda s: s.export_profile)
    ),
    "create user: role above own": post("/v1/users", new_user(role_id=lambda s: s.ceo_role)),
    "patch user: is_admin": patch(lambda s: f"/v1/users/{s.rep.id}", lambda s: {"is_admin": True}),
    "patch user: + view_sensitive": patch(
        lambda s: f"/v1/users/{s.rep.id}", lambda s: {"profile_id": s.sensitive_profile}
    ),
    "patch user: move a peer above own role": patch(
        lambda s: f"/v1/users/{s.rep.id}", lambda s: {"role_id": s.ceo_role}
    ),
    "patch user: disable an Administrator": patch(
        lambda s: f"/v1/users/{s.second_admin.id}", lambda s: {"is_active": False}
    ),
    "patch user: demote an Administrator": patch(
        lambda s: f"/v1/users/{s.second_admin.id}", lambda s: {"is_admin": False}
    ),
    "end an Administrator's sessions": lambda s, c: c.delete(
        f"/v1/users/{s.second_admin.id}/sessions", headers=s.delegate.headers
    ),
    "patch own profile: + view_sensitive": patch(
        lambda s: f"/v1/profiles/{s.delegate_profile}", lambda s: {"view_sensitive": True}
    ),
    "patch own profile: + view_audit": patch(
        lambda s: f"/v1/profiles/{s.delegate_profile}",
        lambda s: {"rights": [*DELEGATE_RIGHTS, "view_audit"]},
    ),
    "patch own profile: even narrowing": patch(
        lambda s: f"/v1/profiles/{s.delegate_profile}", lambda s: {"description": "mine"}
    ),
    "create profile: + view_all_records": post(
        "/v1/profiles",
        lambda s: {"name": "Wide", "modules": DELEGATE_MODULES, "rights": ["view_all_records"]},
    ),
    "create profile: + view_sensitive": post(
        "/v1/profiles", lambda s: {"name": "Peek", "view_sensitive": True}
    ),
    "patch another profile: + view_sensitive": patch(
        lambda s: f"/v1/profiles/{s.within_profile}", lambda s: {"view_sensitive": True}
    ),
    "patch a profile holding more: narrow it": patch(
        lambda s: f"/v1/profiles/{s.audit_profile}", lambda s: {"rights": []}
    ),
    "create role: at the top": post("/v1/roles", lambda s: {"name": "Board"}),
    "patch own role: to the top": patch(
        lambda s: f"/v1/roles/{s.manager_role}", lambda s: {"parent_id": None}
    ),
    "patch a role above: rename": patch(
        lambda s: f"/v1/roles/{s.ceo_role}", lambda s: {"name": "Chief"}
    ),
    "patch a role below: hang it above own": patch(
        lambda s: f"/v1/roles/{s.rep_role}", lambda s: {"parent_id": s.ceo_role}
    ),
    "group: join one not a member of": patch(
        lambda s: f"/v1/groups/{s.foreign_group}",
        lambda s: {"member_ids": [s.rep.id, s.delegate.id]},
    ),
    "group: create without self": post(
        "/v1/groups", lambda s: {"name": "Proxy", "member_ids": [s.rep.id]}
    ),
    "sharing: open to read_write": lambda s, c: c.put(
        "/v1/settings/sharing",
        json={"leads": "read_write", "contacts": "private", "accounts": "private"},
        headers=s.delegate.headers,
    ),
}

WITHIN: dict[str, tuple[Attempt, int]] = {
    "create user: Standard in a role below": (
        post("/v1/users", new_user(role_id=lambda s: s.rep_role)),
        202,
    ),
    "create user: a profile within own": (
        post("/v1/users", new_user(profile_id=lambda s: s.within_profile)),
        202,
    ),
    "patch user: a peer into own role": (
        patch(lambda s: f"/v1/users/{s.rep.id}", lambda s: {"role_id": s.manager_role}),
        200,
    ),
    "create profile: within own": (
        post("/v1/profiles", lambda s: {"name": "Reader", "modules": {"leads": ["read"]}}),
        201,
    ),
    "create role: below own": (
        post("/v1/roles", lambda s: {"name": "Intern", "parent_id": s.rep_role}),
        201,
    ),
    "create group: with self": (
        post("/v1/groups", lambda s: {"name": "Team", "member_ids": [s.delegate.id, s.rep.id]}),
        201,
    ),
}


async def snapshot(org: Org) -> dict[str, Any]:
    """Everything an escalation could change, as the organization's Administrator sees it."""
    found = {}
    for path in ("/v1/users", "/v1/profiles", "/v1/roles", "/v1/groups", "/v1/settings/sharing"):
        response = await org.client.get(path, headers=org.headers)
        assert response.status_code == 200, response.text
        found[path] = response.json()
    return found


async def test_delegated_administration_cannot_escalate(org: Org) -> None:
    s = await scene(org)
    before = await snapshot(org)

    outcomes = {}
    for name, attempt in ESCALATIONS.items():
        response = await attempt(s, org.client)
        outcomes[name] = response.status_code
        if response.status_code == 403:
            assert_problem(response, 403)
    assert outcomes == dict.fromkeys(ESCALATIONS, 403)

    assert await snapshot(org) == before
    refused = await audit_events(org, action="access.delegation_refused")
    assert len(refused) == len(ESCALATIONS)
    assert {event["actor_id"] for event in refused} == {s.delegate.id}
    assert {event["outcome"] for event in refused} == {"denied"}
    # The escalated account was never made: the Administrator-profile user cannot sign in.
    assert (await org.client.get("/v1/users", headers=org.headers)).json() == before["/v1/users"]


async def test_delegated_administration_works_within_its_own_rights(org: Org) -> None:
    s = await scene(org)
    outcomes = {
        name: (await attempt(s, org.client)).status_code for name, (attempt, _) in WITHIN.items()
    }
    assert outcomes == {name: expected for name, (_, expected) in WITHIN.items()}
    assert await audit_events(org, action="access.delegation_refused") == []


async def test_a_user_admin_cannot_sign_in_as_an_administrator_they_made(org: Org) -> None:
    s = await scene(org)
    email = unique_email("shadow")
    refused = await org.client.post(
        "/v1/users",
        json={"email": email, "is_admin": True},
        headers=s.delegate.headers,
    )
    assert_problem(refused, 403)
    login = await org.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(login, 401)
    # And the delegate still cannot read the audit log or sensitive values themselves.
    assert_problem(await org.client.get("/v1/audit-events", headers=s.delegate.headers), 403)


@pytest.mark.parametrize("change", [{"is_admin": False}, {"is_active": False}])
async def test_two_administrators_demoting_each_other_at_once_leave_one(
    app: Any, client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    org = await new_org(app, client)
    other = await add_member(org, is_admin=True)

    results = await asyncio.gather(
        client.patch(f"/v1/users/{other.id}", json=change, headers=org.headers),
        client.patch(f"/v1/users/{org.admin_id}", json=change, headers=other.headers),
    )

    statuses = sorted(response.status_code for response in results)
    assert statuses in ([200, 409], [200, 401], [200, 403]), [r.text for r in results]
    # Whichever of the two is still an active Administrator can list the users.
    listed = await client.get("/v1/users", headers=org.headers)
    if listed.status_code != 200:
        listed = await client.get("/v1/users", headers=other.headers)
    users = listed.json()["data"]
    active_admins = [u for u in users if u["is_admin"] and u["is_active"]]
    assert len(active_admins) == 1
