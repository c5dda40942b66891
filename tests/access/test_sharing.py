"""Sharing defaults and the role hierarchy, over HTTP, for every record module.

A hierarchy Director > Sales Manager > Rep North (Rep A), Rep South (Rep B), every user on the
Standard profile. For each organization-wide default (private, read_only, read_write) and each
module, a table of what each user can do with a record owned by Rep A: list it, find it by
exact-match lookup, get it, read its legal basis and shares, update it, set its legal basis,
delete it, convert it (leads). Rep A and the roles above always can; Rep B, beside Rep A, cannot
see it when private (404, absent from lists and lookups), reads but cannot change it when
read_only (403), and does everything when read_write. The Administrator sees everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.access.conftest import (
    LOOKUP_FIELD,
    MODULES,
    PERSON_MODULES,
    Member,
    add_member,
    admin_get,
    builtin_profiles,
    create_group,
    create_record,
    create_role,
    listed_ids,
    set_sharing,
)
from tests.conftest import Org, assert_problem, error_fields

LEVELS = ["private", "read_only", "read_write"]


@dataclass(frozen=True)
class Hierarchy:
    director: Member
    manager: Member
    rep_a: Member
    rep_b: Member
    rep_role: str  # Rep A's role


async def build_hierarchy(org: Org) -> Hierarchy:
    standard = (await builtin_profiles(org))["standard"]
    director_role = await create_role(org, "Director")
    manager_role = await create_role(org, "Sales Manager", parent_id=director_role)
    north = await create_role(org, "Rep North", parent_id=manager_role)
    south = await create_role(org, "Rep South", parent_id=manager_role)
    return Hierarchy(
        director=await add_member(org, role_id=director_role, profile_id=standard),
        manager=await add_member(org, role_id=manager_role, profile_id=standard),
        rep_a=await add_member(org, role_id=north, profile_id=standard),
        rep_b=await add_member(org, role_id=south, profile_id=standard),
        rep_role=north,
    )


async def observe(
    org: Org, module: str, viewer: dict[str, str], owner_id: str, shown: dict[str, Any]
) -> dict[str, Any]:
    """What `viewer` can do with records of `module` owned by `owner_id`: reads on `shown`,
    changes on fresh records; a refused change is checked to have changed nothing."""
    client = org.client
    path = f"/v1/{module}/{shown['id']}"
    lookup = {LOOKUP_FIELD[module]: shown[LOOKUP_FIELD[module]]}
    row: dict[str, Any] = {
        "get": (await client.get(path, headers=viewer)).status_code,
        "list": shown["id"] in await listed_ids(org, module, viewer),
        "lookup": shown["id"] in await listed_ids(org, module, viewer, **lookup),
        "shares": (await client.get(f"{path}/shares", headers=viewer)).status_code,
    }
    if module in PERSON_MODULES:
        row["legal_basis"] = (await client.get(f"{path}/legal-basis", headers=viewer)).status_code

    target = await create_record(org, module, owner_id=owner_id)
    path = f"/v1/{module}/{target['id']}"
    row["update"] = (
        await client.patch(path, json={"description": "Touched"}, headers=viewer)
    ).status_code
    if module in PERSON_MODULES:
        row["set_legal_basis"] = (
            await client.put(f"{path}/legal-basis", json={"basis": "contract"}, headers=viewer)
        ).status_code
    row["delete"] = (await client.delete(path, headers=viewer)).status_code
    if row["delete"] != 204:
        after = (await admin_get(org, module, target["id"])).json()
        if row["update"] != 200:
            assert after["description"] is None
        if row.get("set_legal_basis", 200) != 200:
            assert after["legal_basis"] is None
    else:
        assert (await admin_get(org, module, target["id"])).status_code == 404

    if module == "leads":
        lead = await create_record(org, module, owner_id=owner_id)
        row["convert"] = (
            await client.post(f"/v1/leads/{lead['id']}/convert", json={}, headers=viewer)
        ).status_code
        if row["convert"] != 201:
            assert (await admin_get(org, module, lead["id"])).json()["status"] == "new"
    return row


def can_do_everything(module: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "get": 200,
        "list": True,
        "lookup": True,
        "shares": 200,
        "update": 200,
        "delete": 204,
    }
    if module in PERSON_MODULES:
        row |= {"legal_basis": 200, "set_legal_basis": 200}
    if module == "leads":
        row["convert"] = 201
    return row


def reads_only(module: str) -> dict[str, Any]:
    row = can_do_everything(module) | {"update": 403, "delete": 403}
    if module in PERSON_MODULES:
        row["set_legal_basis"] = 403
    if module == "leads":
        row["convert"] = 403
    return row


def sees_nothing(module: str) -> dict[str, Any]:
    return {
        name: (False if isinstance(value, bool) else 404)
        for name, value in can_do_everything(module).items()
    }


REP_B = {"private": sees_nothing, "read_only": reads_only, "read_write": can_do_everything}


@pytest.mark.parametrize("level", LEVELS)
async def test_who_can_do_what_with_rep_a_records(org: Org, level: str) -> None:
    team = await build_hierarchy(org)
    await set_sharing(org, level)
    # The director, two levels up, is covered by the hierarchy test below.
    viewers = {
        "rep_a": team.rep_a.headers,
        "manager": team.manager.headers,
        "rep_b": team.rep_b.headers,
        "administrator": org.headers,
    }
    shown = {module: await create_record(org, module, owner_id=team.rep_a.id) for module in MODULES}

    actual = {
        (module, name): await observe(org, module, headers, team.rep_a.id, shown[module])
        for module in MODULES
        for name, headers in viewers.items()
    }

    expected = {
        (module, name): (REP_B[level] if name == "rep_b" else can_do_everything)(module)
        for module in MODULES
        for name in viewers
    }
    assert actual == expected


async def test_new_organizations_share_nothing_by_default(org: Org) -> None:
    response = await org.client.get("/v1/settings/sharing", headers=org.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"leads": "private", "contacts": "private", "accounts": "private"}


async def test_each_module_follows_its_own_default(org: Org) -> None:
    team = await build_hierarchy(org)
    await set_sharing(org, leads="read_only", contacts="private", accounts="read_write")
    lead = await create_record(org, "leads", owner_id=team.rep_a.id)
    contact = await create_record(org, "contacts", owner_id=team.rep_a.id)
    account = await create_record(org, "accounts", owner_id=team.rep_a.id)
    rep_b = team.rep_b.headers

    assert (await org.client.get(f"/v1/leads/{lead['id']}", headers=rep_b)).status_code == 200
    assert_problem(
        await org.client.patch(f"/v1/leads/{lead['id']}", json={"title": "X"}, headers=rep_b), 403
    )
    assert_problem(await org.client.get(f"/v1/contacts/{contact['id']}", headers=rep_b), 404)
    changed = await org.client.patch(
        f"/v1/accounts/{account['id']}", json={"industry": "Engines"}, headers=rep_b
    )
    assert changed.status_code == 200, changed.text


async def test_visibility_runs_down_the_hierarchy_not_up_or_sideways(org: Org) -> None:
    """Private: a rep does not see the manager's records, nor those of a peer in the same
    role; the manager sees neither the director's nor records of users outside the tree."""
    team = await build_hierarchy(org)
    peer = await add_member(org, role_id=team.rep_role)
    no_role = await add_member(org)
    managers = await create_record(org, "contacts", owner_id=team.manager.id)
    peers = await create_record(org, "contacts", owner_id=peer.id)
    directors = await create_record(org, "contacts", owner_id=team.director.id)
    outsiders = await create_record(org, "contacts", owner_id=no_role.id)

    async def visible(member: Member) -> set[str]:
        return set(await listed_ids(org, "contacts", member.headers))

    all_ids = {managers["id"], peers["id"], directors["id"], outsiders["id"]}
    assert await visible(team.rep_a) == set()
    assert await visible(peer) == {peers["id"]}
    assert await visible(team.manager) == {managers["id"], peers["id"]}
    assert await visible(team.director) == {managers["id"], peers["id"], directors["id"]}
    assert await visible(no_role) == {outsiders["id"]}
    assert set(await listed_ids(org, "contacts", org.headers)) == all_ids
    for record in (managers, directors, outsiders):
        assert_problem(
            await org.client.get(f"/v1/contacts/{record['id']}", headers=team.rep_a.headers), 404
        )


async def test_a_record_given_to_another_owner_leaves_the_old_owners_view(org: Org) -> None:
    team = await build_hierarchy(org)
    contact = await create_record(org, "contacts", owner_id=team.rep_a.id)
    path = f"/v1/contacts/{contact['id']}"

    handed_over = await org.client.patch(
        path, json={"owner_id": team.rep_b.id}, headers=team.rep_a.headers
    )
    assert handed_over.status_code == 200, handed_over.text

    assert_problem(await org.client.get(path, headers=team.rep_a.headers), 404)
    assert (await org.client.get(path, headers=team.rep_b.headers)).status_code == 200
    assert (await org.client.get(path, headers=team.manager.headers)).status_code == 200


async def foreign_attempts(
    org: Org, other_org: Org, module: str, headers: dict[str, str], their_group: str
) -> dict[str, Any]:
    """What a user of `other_org` gets when naming a record of `org`."""
    mine = await create_record(org, module)
    path = f"/v1/{module}/{mine['id']}"
    lookup = {LOOKUP_FIELD[module]: mine[LOOKUP_FIELD[module]]}
    attempts = {
        "get": await org.client.get(path, headers=headers),
        "update": await org.client.patch(path, json={"description": "x"}, headers=headers),
        "shares": await org.client.get(f"{path}/shares", headers=headers),
        "delete": await org.client.delete(path, headers=headers),
        "share": await org.client.put(
            f"{path}/shares/{their_group}", json={"access": "read_write"}, headers=headers
        ),
    }
    if module in PERSON_MODULES:
        attempts["legal_basis"] = await org.client.get(f"{path}/legal-basis", headers=headers)
        attempts["set_legal_basis"] = await org.client.put(
            f"{path}/legal-basis", json={"basis": "contract"}, headers=headers
        )
    if module == "leads":
        attempts["convert"] = await org.client.post(f"{path}/convert", json={}, headers=headers)
    for response in attempts.values():
        if response.status_code == 404:
            assert_problem(response, 404)
    row: dict[str, Any] = {name: r.status_code for name, r in attempts.items()}
    row["listed"] = mine["id"] in await listed_ids(other_org, module, headers)
    row["found"] = await listed_ids(other_org, module, headers, **lookup) != []
    after = (await admin_get(org, module, mine["id"])).json()
    row["unchanged"] = after["etag"] == mine["etag"]
    return row


async def test_other_organizations_ids_answer_404(org: Org, other_org: Org) -> None:
    # Even where everyone shares everything, nothing crosses organizations.
    await set_sharing(other_org, "read_write")
    await set_sharing(org, "read_write")
    their_user = await add_member(other_org)
    their_group = await create_group(other_org, [their_user.id])
    callers = {"their_admin": other_org.headers, "their_user": their_user.headers}

    actual = {
        (module, who): await foreign_attempts(org, other_org, module, headers, their_group)
        for module in MODULES
        for who, headers in callers.items()
    }

    expected = {
        (module, who): {
            **{
                name: 404
                for name, value in can_do_everything(module).items()
                if not isinstance(value, bool)
            },
            "share": 404,
            "listed": False,
            "found": False,
            "unchanged": True,
        }
        for module in MODULES
        for who in callers
    }
    assert actual == expected
    # And the other way round, for this organization's administrator.
    for module in MODULES:
        theirs = await create_record(other_org, module)
        assert_problem(await admin_get(org, module, theirs["id"]), 404)


async def test_references_to_records_the_caller_cannot_see_are_refused(org: Org) -> None:
    """Private: Rep B cannot link a contact, or a converted lead, to Rep A's account."""
    team = await build_hierarchy(org)
    hidden = await create_record(org, "accounts", owner_id=team.rep_a.id)
    mine = await create_record(org, "contacts", owner_id=team.rep_b.id)
    lead = await create_record(org, "leads", owner_id=team.rep_b.id)
    h = team.rep_b.headers

    created = await org.client.post(
        "/v1/contacts", json={"last_name": "Babbage", "account_id": hidden["id"]}, headers=h
    )
    assert error_fields(assert_problem(created, 422)) == {"body.account_id"}
    linked = await org.client.patch(
        f"/v1/contacts/{mine['id']}", json={"account_id": hidden["id"]}, headers=h
    )
    assert error_fields(assert_problem(linked, 422)) == {"body.account_id"}
    converted = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json={"account_id": hidden["id"]}, headers=h
    )
    assert error_fields(assert_problem(converted, 422)) == {"body.account_id"}

    assert (await admin_get(org, "contacts", mine["id"])).json()["account_id"] is None
    assert (await admin_get(org, "leads", lead["id"])).json()["status"] == "new"
    # The manager above both reps may link them.
    allowed = await org.client.patch(
        f"/v1/contacts/{mine['id']}",
        json={"account_id": hidden["id"]},
        headers=team.manager.headers,
    )
    assert allowed.status_code == 200, allowed.text
