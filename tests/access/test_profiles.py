"""Profiles: what a user may do per module and which administration they may do.

An operation the profile lacks answers 403 whatever the record; the built-in profiles cannot be
deleted and the Administrator cannot be changed; a profile users hold cannot be deleted;
administration needs its right; nobody changes their own profile; roles cannot form cycles.
"""

from __future__ import annotations

import pytest

from tests.access.conftest import (
    MODULES,
    add_member,
    admin_get,
    builtin_profiles,
    create_profile,
    create_record,
    create_role,
    listed_ids,
    record_fields,
)
from tests.conftest import Org, assert_problem, count_rows, error_fields

EVERYTHING = ["create", "read", "update", "delete", "export"]


def all_modules(**overrides: list[str]) -> dict[str, list[str]]:
    return {module: overrides.get(module, EVERYTHING) for module in MODULES}


async def test_without_contacts_delete_delete_is_refused(org: Org) -> None:
    profile = await create_profile(
        org, all_modules(contacts=["create", "read", "update", "export"])
    )
    user = await add_member(org, profile_id=profile)
    contact = await create_record(org, "contacts", owner_id=user.id)
    lead = await create_record(org, "leads", owner_id=user.id)

    refused = await org.client.delete(f"/v1/contacts/{contact['id']}", headers=user.headers)

    assert_problem(refused, 403)
    assert (await admin_get(org, "contacts", contact["id"])).status_code == 200
    # Only that module: the same user deletes their lead.
    deleted = await org.client.delete(f"/v1/leads/{lead['id']}", headers=user.headers)
    assert deleted.status_code == 204, deleted.text


async def test_without_leads_create_create_is_refused(org: Org) -> None:
    profile = await create_profile(org, all_modules(leads=["read", "update", "delete"]))
    user = await add_member(org, profile_id=profile)

    refused = await org.client.post("/v1/leads", json=record_fields("leads"), headers=user.headers)

    assert_problem(refused, 403)
    assert await count_rows(org.app, "leads", org.id) == 0
    created = await org.client.post(
        "/v1/contacts", json=record_fields("contacts"), headers=user.headers
    )
    assert created.status_code == 201, created.text


async def test_converting_needs_contacts_create(org: Org) -> None:
    profile = await create_profile(org, all_modules(contacts=["read", "update"]))
    user = await add_member(org, profile_id=profile)
    lead = await create_record(org, "leads", owner_id=user.id)

    refused = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json={}, headers=user.headers
    )

    assert_problem(refused, 403)
    assert (await admin_get(org, "leads", lead["id"])).json()["status"] == "new"
    assert await count_rows(org.app, "contacts", org.id) == 0


@pytest.mark.parametrize("module", MODULES)
async def test_without_read_list_get_and_search_are_refused(org: Org, module: str) -> None:
    profile = await create_profile(org, all_modules(**{module: ["create", "update", "delete"]}))
    user = await add_member(org, profile_id=profile)
    own = await create_record(org, module, owner_id=user.id)

    assert_problem(await org.client.get(f"/v1/{module}", headers=user.headers), 403)
    assert_problem(
        await org.client.post(f"/v1/{module}/search", json={}, headers=user.headers), 403
    )
    assert_problem(await org.client.get(f"/v1/{module}/{own['id']}", headers=user.headers), 403)
    assert_problem(
        await org.client.get(f"/v1/{module}/{own['id']}/shares", headers=user.headers), 403
    )
    # The operation is refused before anything about the record is looked at.
    missing = "00000000-0000-4000-8000-000000000000"
    assert_problem(await org.client.get(f"/v1/{module}/{missing}", headers=user.headers), 403)


async def test_a_module_left_out_of_the_profile_allows_nothing(org: Org) -> None:
    profile = await create_profile(org, {"contacts": EVERYTHING})
    user = await add_member(org, profile_id=profile)
    account = await create_record(org, "accounts", owner_id=user.id)
    path = f"/v1/accounts/{account['id']}"

    assert_problem(await org.client.get("/v1/accounts", headers=user.headers), 403)
    assert_problem(
        await org.client.post("/v1/accounts", json={"name": "Mine"}, headers=user.headers), 403
    )
    assert_problem(await org.client.get(path, headers=user.headers), 403)
    assert_problem(await org.client.patch(path, json={"industry": "x"}, headers=user.headers), 403)
    assert_problem(await org.client.delete(path, headers=user.headers), 403)
    assert (await admin_get(org, "accounts", account["id"])).json()["industry"] is None
    assert await listed_ids(org, "contacts", user.headers) == []


async def test_changing_a_profile_changes_what_its_holders_can_do(org: Org) -> None:
    profile = await create_profile(org, all_modules())
    user = await add_member(org, profile_id=profile)
    assert (await org.client.get("/v1/contacts", headers=user.headers)).status_code == 200

    changed = await org.client.patch(
        f"/v1/profiles/{profile}",
        json={"modules": all_modules(contacts=["create"])},
        headers=org.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["modules"]["contacts"] == ["create"]

    assert_problem(await org.client.get("/v1/contacts", headers=user.headers), 403)


async def test_the_builtin_administrator_cannot_be_changed(org: Org) -> None:
    builtin = await builtin_profiles(org)
    before = await org.client.get(f"/v1/profiles/{builtin['administrator']}", headers=org.headers)

    for body in ({"rights": []}, {"view_sensitive": False}, {"name": "Root"}, {"modules": {}}):
        refused = await org.client.patch(
            f"/v1/profiles/{builtin['administrator']}", json=body, headers=org.headers
        )
        assert_problem(refused, 409)

    after = await org.client.get(f"/v1/profiles/{builtin['administrator']}", headers=org.headers)
    assert after.json() == before.json()
    assert after.json()["view_sensitive"] is True
    assert set(after.json()["rights"]) == {
        "manage_users",
        "manage_settings",
        "manage_access",
        "view_audit",
        "view_all_records",
        "manage_integrations",
        "manage_privacy",
        "view_restricted",
    }


async def test_builtin_profiles_cannot_be_deleted(org: Org) -> None:
    builtin = await builtin_profiles(org)
    assert set(builtin) == {"administrator", "standard"}

    for profile_id in builtin.values():
        assert_problem(
            await org.client.delete(f"/v1/profiles/{profile_id}", headers=org.headers), 409
        )

    assert await builtin_profiles(org) == builtin
    # Standard may be changed, unlike the Administrator.
    changed = await org.client.patch(
        f"/v1/profiles/{builtin['standard']}",
        json={"description": "Our sales team"},
        headers=org.headers,
    )
    assert changed.status_code == 200, changed.text


async def test_a_profile_users_hold_cannot_be_deleted(org: Org) -> None:
    profile = await create_profile(org, all_modules())
    user = await add_member(org, profile_id=profile)

    assert_problem(await org.client.delete(f"/v1/profiles/{profile}", headers=org.headers), 409)
    assert (await org.client.get(f"/v1/profiles/{profile}", headers=org.headers)).status_code == 200

    standard = (await builtin_profiles(org))["standard"]
    moved = await org.client.patch(
        f"/v1/users/{user.id}", json={"profile_id": standard}, headers=org.headers
    )
    assert moved.status_code == 200, moved.text
    deleted = await org.client.delete(f"/v1/profiles/{profile}", headers=org.headers)
    assert deleted.status_code == 204, deleted.text
    assert_problem(await org.client.get(f"/v1/profiles/{profile}", headers=org.headers), 404)


async def test_users_need_manage_users(org: Org) -> None:
    access_admin = await add_member(
        org, profile_id=await create_profile(org, all_modules(), rights=["manage_access"])
    )
    user_admin = await add_member(
        org, profile_id=await create_profile(org, all_modules(), rights=["manage_users"])
    )
    standard_user = await add_member(org)

    for who in (access_admin, standard_user):
        h = who.headers
        assert_problem(await org.client.get("/v1/users", headers=h), 403)
        assert_problem(await org.client.get(f"/v1/users/{user_admin.id}", headers=h), 403)
        assert_problem(
            await org.client.post(
                "/v1/users",
                json={"email": "new.person@example.com"},
                headers=h,
            ),
            403,
        )
        assert_problem(
            await org.client.patch(
                f"/v1/users/{standard_user.id}", json={"is_active": False}, headers=h
            ),
            403,
        )
    assert (await org.client.get("/v1/users", headers=user_admin.headers)).status_code == 200
    assert (await org.client.get("/v1/users/" + standard_user.id, headers=org.headers)).json()[
        "is_active"
    ] is True
    # Each right opens its own administration only.
    assert (await org.client.get("/v1/profiles", headers=access_admin.headers)).status_code == 200
    assert_problem(await org.client.get("/v1/profiles", headers=user_admin.headers), 403)


async def test_nobody_changes_their_own_profile(org: Org) -> None:
    builtin = await builtin_profiles(org)
    me = f"/v1/users/{org.admin_id}"

    assert_problem(
        await org.client.patch(me, json={"profile_id": builtin["standard"]}, headers=org.headers),
        409,
    )
    assert_problem(await org.client.patch(me, json={"is_admin": False}, headers=org.headers), 409)

    mine = await org.client.get(me, headers=org.headers)
    assert mine.json()["profile_id"] == builtin["administrator"]
    assert mine.json()["is_admin"] is True
    assert (await org.client.get("/v1/profiles", headers=org.headers)).status_code == 200


async def test_a_user_admin_cannot_raise_their_own_profile(org: Org) -> None:
    builtin = await builtin_profiles(org)
    user_admin = await add_member(
        org, profile_id=await create_profile(org, all_modules(), rights=["manage_users"])
    )

    refused = await org.client.patch(
        f"/v1/users/{user_admin.id}",
        json={"profile_id": builtin["administrator"]},
        headers=user_admin.headers,
    )

    assert_problem(refused, 409)
    assert_problem(await org.client.get("/v1/profiles", headers=user_admin.headers), 403)


async def test_role_cycles_are_refused(org: Org) -> None:
    top = await create_role(org, "Top")
    middle = await create_role(org, "Middle", parent_id=top)
    bottom = await create_role(org, "Bottom", parent_id=middle)

    for role, parent in ((top, bottom), (top, middle), (middle, middle)):
        refused = await org.client.patch(
            f"/v1/roles/{role}", json={"parent_id": parent}, headers=org.headers
        )
        body = assert_problem(refused, 422)
        assert error_fields(body) == {"body.parent_id"}

    roles = await org.client.get("/v1/roles", headers=org.headers)
    assert {r["id"]: r["parent_id"] for r in roles.json()["data"]} == {
        top: None,
        middle: top,
        bottom: middle,
    }


async def test_a_standard_user_cannot_manage_access(org: Org) -> None:
    user = await add_member(org)
    h = user.headers
    standard = (await builtin_profiles(org))["standard"]

    for response in (
        await org.client.get("/v1/profiles", headers=h),
        await org.client.get(f"/v1/profiles/{standard}", headers=h),
        await org.client.post(
            "/v1/profiles", json={"name": "Mine", "view_sensitive": True}, headers=h
        ),
        await org.client.patch(
            f"/v1/profiles/{standard}", json={"view_sensitive": True}, headers=h
        ),
        await org.client.get("/v1/roles", headers=h),
        await org.client.post("/v1/roles", json={"name": "Boss"}, headers=h),
        await org.client.get("/v1/settings/sharing", headers=h),
        await org.client.put(
            "/v1/settings/sharing",
            json={"leads": "read_write", "contacts": "read_write", "accounts": "read_write"},
            headers=h,
        ),
    ):
        assert_problem(response, 403)

    profile = await org.client.get(f"/v1/profiles/{standard}", headers=org.headers)
    assert profile.json()["view_sensitive"] is False
    sharing = await org.client.get("/v1/settings/sharing", headers=org.headers)
    assert set(sharing.json().values()) == {"private"}


async def test_view_all_records_is_what_lets_a_profile_see_every_record(org: Org) -> None:
    owner = await add_member(org)
    auditor = await add_member(
        org, profile_id=await create_profile(org, all_modules(), rights=["view_all_records"])
    )
    user_admin = await add_member(
        org, profile_id=await create_profile(org, all_modules(), rights=["manage_users"])
    )
    contact = await create_record(org, "contacts", owner_id=owner.id)

    assert await listed_ids(org, "contacts", auditor.headers) == [contact["id"]]
    assert (
        await org.client.get(f"/v1/contacts/{contact['id']}", headers=auditor.headers)
    ).status_code == 200
    assert await listed_ids(org, "contacts", user_admin.headers) == []
    assert_problem(
        await org.client.get(f"/v1/contacts/{contact['id']}", headers=user_admin.headers), 404
    )


async def test_profiles_with_unknown_modules_or_operations_are_refused(org: Org) -> None:
    before = await builtin_profiles(org)
    for modules in ({"invoices": ["read"]}, {"contacts": ["read", "fly"]}):
        response = await org.client.post(
            "/v1/profiles", json={"name": "Odd", "modules": modules}, headers=org.headers
        )
        assert_problem(response, 422)
    response = await org.client.post(
        "/v1/profiles", json={"name": "Odd", "rights": ["own_everything"]}, headers=org.headers
    )
    assert_problem(response, 422)
    listed = await org.client.get("/v1/profiles", headers=org.headers)
    assert {p["id"] for p in listed.json()["data"]} == set(before.values())
