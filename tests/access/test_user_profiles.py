"""A user's profile and role, as set through /v1/users: only the organization's own profiles
and roles, `is_admin` as shorthand for the built-in Administrator, and a change that takes
effect on the user's very next request with the token they already hold."""

from __future__ import annotations

from typing import Any

from tests.access.conftest import (
    MODULES,
    add_member,
    builtin_profiles,
    create_profile,
    create_record,
    create_role,
    listed_ids,
)
from tests.conftest import PASSWORD, Org, assert_problem, error_fields, unique_email

NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"


async def users(org: Org) -> list[dict[str, Any]]:
    response = await org.client.get("/v1/users", headers=org.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def user(org: Org, user_id: str) -> dict[str, Any]:
    response = await org.client.get(f"/v1/users/{user_id}", headers=org.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_profiles_and_roles_of_another_organization_are_refused(
    org: Org, other_org: Org
) -> None:
    their_profile = await create_profile(other_org, {"contacts": ["read"]})
    their_role = await create_role(other_org, "Their Manager")
    their_admin_profile = (await builtin_profiles(other_org))["administrator"]
    before = await users(org)

    for field, value in (
        ("profile_id", their_profile),
        ("profile_id", their_admin_profile),
        ("profile_id", NO_SUCH_ID),
        ("role_id", their_role),
        ("role_id", NO_SUCH_ID),
    ):
        email = unique_email("newcomer")
        response = await org.client.post(
            "/v1/users",
            json={"email": email, field: value},
            headers=org.headers,
        )
        body = assert_problem(response, 422)
        assert error_fields(body) == {f"body.{field}"}
        refused_login = await org.client.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert refused_login.status_code == 401

    assert await users(org) == before
    # Nor are their users visible or changeable.
    stranger = await add_member(other_org)
    assert_problem(await org.client.get(f"/v1/users/{stranger.id}", headers=org.headers), 404)
    assert_problem(
        await org.client.patch(
            f"/v1/users/{stranger.id}",
            json={"profile_id": their_admin_profile},
            headers=org.headers,
        ),
        404,
    )
    assert_problem(await org.client.get("/v1/audit-events", headers=stranger.headers), 403)


async def test_is_admin_gives_the_builtin_administrator_profile(org: Org) -> None:
    builtin = await builtin_profiles(org)
    custom = await create_profile(org, {"contacts": ["read"]})

    admin = await add_member(org, is_admin=True)
    standard = await add_member(org)
    explicit = await add_member(org, is_admin=True, profile_id=custom)

    shown = await user(org, admin.id)
    assert shown["profile_id"] == builtin["administrator"] and shown["is_admin"] is True
    shown = await user(org, standard.id)
    assert shown["profile_id"] == builtin["standard"] and shown["is_admin"] is False
    # An explicit profile wins over the shorthand.
    shown = await user(org, explicit.id)
    assert shown["profile_id"] == custom and shown["is_admin"] is False
    # And the profiles behave as such.
    assert (await org.client.get("/v1/profiles", headers=admin.headers)).status_code == 200
    assert_problem(await org.client.get("/v1/profiles", headers=standard.headers), 403)
    assert_problem(await org.client.get("/v1/profiles", headers=explicit.headers), 403)


async def test_a_new_profile_applies_on_the_next_request(org: Org) -> None:
    builtin = await builtin_profiles(org)
    member = await add_member(org)
    colleague = await add_member(org)
    contact = await create_record(org, "contacts", owner_id=colleague.id, national_id="X 1234567")
    h = member.headers
    assert_problem(await org.client.get("/v1/audit-events", headers=h), 403)
    assert await listed_ids(org, "contacts", h) == []

    promoted = await org.client.patch(
        f"/v1/users/{member.id}", json={"profile_id": builtin["administrator"]}, headers=org.headers
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["is_admin"] is True

    assert (await org.client.get("/v1/audit-events", headers=h)).status_code == 200
    got = await org.client.get(f"/v1/contacts/{contact['id']}", headers=h)
    assert got.status_code == 200, got.text
    assert got.json()["national_id"] == "X 1234567"

    no_contacts = await create_profile(org, {m: ["read"] for m in MODULES if m != "contacts"})
    demoted = await org.client.patch(
        f"/v1/users/{member.id}", json={"profile_id": no_contacts}, headers=org.headers
    )
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["is_admin"] is False

    assert_problem(await org.client.get(f"/v1/contacts/{contact['id']}", headers=h), 403)
    assert_problem(await org.client.get("/v1/audit-events", headers=h), 403)
    assert (await org.client.get("/v1/leads", headers=h)).status_code == 200


async def test_is_admin_false_moves_an_administrator_to_standard(org: Org) -> None:
    builtin = await builtin_profiles(org)
    admin = await add_member(org, is_admin=True)

    response = await org.client.patch(
        f"/v1/users/{admin.id}", json={"is_admin": False}, headers=org.headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["profile_id"] == builtin["standard"]
    assert_problem(await org.client.get("/v1/users", headers=admin.headers), 403)


async def test_patch_refuses_another_organizations_profile_or_role(
    org: Org, other_org: Org
) -> None:
    member = await add_member(org)
    before = await user(org, member.id)
    their_admin_profile = (await builtin_profiles(other_org))["administrator"]
    their_role = await create_role(other_org, "Their Manager")

    for body, field in (
        ({"profile_id": their_admin_profile}, "body.profile_id"),
        ({"role_id": their_role}, "body.role_id"),
        ({"profile_id": NO_SUCH_ID}, "body.profile_id"),
    ):
        response = await org.client.patch(f"/v1/users/{member.id}", json=body, headers=org.headers)
        assert error_fields(assert_problem(response, 422)) == {field}
    assert_problem(
        await org.client.patch(
            f"/v1/users/{member.id}", json={"profile_id": None}, headers=org.headers
        ),
        422,
    )

    assert await user(org, member.id) == before
    assert_problem(await org.client.get("/v1/audit-events", headers=member.headers), 403)


async def test_a_new_role_changes_who_sees_the_users_records_on_the_next_request(org: Org) -> None:
    manager_role = await create_role(org, "Manager")
    rep_role = await create_role(org, "Rep", parent_id=manager_role)
    manager = await add_member(org, role_id=manager_role)
    rep = await add_member(org)
    contact = await create_record(org, "contacts", owner_id=rep.id)
    assert await listed_ids(org, "contacts", manager.headers) == []

    moved = await org.client.patch(
        f"/v1/users/{rep.id}", json={"role_id": rep_role}, headers=org.headers
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["role_id"] == rep_role
    assert await listed_ids(org, "contacts", manager.headers) == [contact["id"]]

    removed = await org.client.patch(
        f"/v1/users/{rep.id}", json={"role_id": None}, headers=org.headers
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["role_id"] is None
    assert await listed_ids(org, "contacts", manager.headers) == []
    assert_problem(
        await org.client.get(f"/v1/contacts/{contact['id']}", headers=manager.headers), 404
    )
