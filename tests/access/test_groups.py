"""Record shares: a private record shared with a group, read_only or read_write.

Members of the group read a record shared read_only (it is listed and found by lookups too)
but cannot change it (403); read_write lets them update it. Users outside the group still get
404. Removing the share, removing the member or deleting the group takes the access away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.access.conftest import (
    LOOKUP_FIELD,
    MODULES,
    Member,
    add_member,
    admin_get,
    create_group,
    create_record,
    listed_ids,
    searched_ids,
)
from tests.conftest import Org, assert_problem


@dataclass(frozen=True)
class Setting:
    owner: Member
    member: Member
    outsider: Member
    group_id: str  # the member's group
    other_group_id: str  # the outsider's group


async def arrange(org: Org) -> Setting:
    """Three Standard users without roles; sharing stays private (the default)."""
    owner, member, outsider = [await add_member(org) for _ in range(3)]
    return Setting(
        owner,
        member,
        outsider,
        await create_group(org, [member.id]),
        await create_group(org, [outsider.id]),
    )


async def share(
    org: Org, module: str, record_id: str, group_id: str, access: str, headers: dict[str, str]
) -> Any:
    return await org.client.put(
        f"/v1/{module}/{record_id}/shares/{group_id}", json={"access": access}, headers=headers
    )


async def reads(org: Org, module: str, record: dict[str, Any], member: Member) -> dict[str, Any]:
    """Whether `member` gets the record, sees it listed and finds it by lookup and search."""
    lookup = {LOOKUP_FIELD[module]: record[LOOKUP_FIELD[module]]}
    got = await org.client.get(f"/v1/{module}/{record['id']}", headers=member.headers)
    return {
        "get": got.status_code,
        "list": record["id"] in await listed_ids(org, module, member.headers),
        "lookup": record["id"] in await listed_ids(org, module, member.headers, **lookup),
        "search": record["id"] in await searched_ids(org, module, member.headers, **lookup),
    }


READS = {"get": 200, "list": True, "lookup": True, "search": True}
HIDDEN = {"get": 404, "list": False, "lookup": False, "search": False}


async def read_only_share(org: Org, s: Setting, module: str) -> dict[str, Any]:
    record = await create_record(org, module, owner_id=s.owner.id)
    path = f"/v1/{module}/{record['id']}"
    before = await reads(org, module, record, s.member)
    shared = await share(org, module, record["id"], s.group_id, "read_only", s.owner.headers)
    assert shared.status_code == 200, shared.text
    assert (shared.json()["group_id"], shared.json()["access"]) == (s.group_id, "read_only")
    member = s.member.headers
    row = {
        "before": before,
        "member": await reads(org, module, record, s.member),
        "outsider": await reads(org, module, record, s.outsider),
        "update": (await org.client.patch(path, json={"description": "Mine"}, headers=member)),
        "delete": (await org.client.delete(path, headers=member)),
        # A reader may not pass the record on either.
        "reshare": await share(org, module, record["id"], s.other_group_id, "read_only", member),
    }
    if module == "leads":
        row["convert"] = await org.client.post(f"{path}/convert", json={}, headers=member)
    row = {k: v.status_code if isinstance(v, httpx.Response) else v for k, v in row.items()}
    after = (await admin_get(org, module, record["id"])).json()
    row["unchanged"] = after["etag"] == record["etag"] and after["description"] is None
    return row


async def test_read_only_share_lets_members_read_but_not_change(org: Org) -> None:
    s = await arrange(org)

    actual = {module: await read_only_share(org, s, module) for module in MODULES}

    expected = {
        module: {
            "before": HIDDEN,
            "member": READS,
            "outsider": HIDDEN,
            "update": 403,
            "delete": 403,
            "reshare": 403,
            **({"convert": 403} if module == "leads" else {}),
            "unchanged": True,
        }
        for module in MODULES
    }
    assert actual == expected


async def read_write_share(org: Org, s: Setting, module: str) -> dict[str, Any]:
    record = await create_record(org, module, owner_id=s.owner.id)
    path = f"/v1/{module}/{record['id']}"
    first = await share(org, module, record["id"], s.group_id, "read_only", org.headers)
    assert first.status_code == 200, first.text
    # Sharing again with the same group changes the access of the one share.
    upgraded = await share(org, module, record["id"], s.group_id, "read_write", s.owner.headers)
    assert upgraded.status_code == 200, upgraded.text
    listed = await org.client.get(f"{path}/shares", headers=s.owner.headers)
    assert listed.status_code == 200, listed.text
    updated = await org.client.patch(
        path, json={"description": "Shared work"}, headers=s.member.headers
    )
    refused = await org.client.patch(
        path, json={"description": "Outsider"}, headers=s.outsider.headers
    )
    return {
        "shares": [(x["group_id"], x["access"]) for x in listed.json()["data"]],
        "member_update": updated.status_code,
        "outsider_update": refused.status_code,
        "stored": (await admin_get(org, module, record["id"])).json()["description"],
        "member": await reads(org, module, record, s.member),
        "outsider": await reads(org, module, record, s.outsider),
    }


async def test_read_write_share_lets_members_update(org: Org) -> None:
    s = await arrange(org)

    actual = {module: await read_write_share(org, s, module) for module in MODULES}

    expected = {
        module: {
            "shares": [(s.group_id, "read_write")],
            "member_update": 200,
            "outsider_update": 404,
            "stored": "Shared work",
            "member": READS,
            "outsider": HIDDEN,
        }
        for module in MODULES
    }
    assert actual == expected


async def test_read_write_share_lets_members_convert_a_lead(org: Org) -> None:
    s = await arrange(org)
    lead = await create_record(org, "leads", owner_id=s.owner.id)
    assert (
        await share(org, "leads", lead["id"], s.group_id, "read_write", s.owner.headers)
    ).status_code == 200

    converted = await org.client.post(
        f"/v1/leads/{lead['id']}/convert", json={}, headers=s.member.headers
    )

    assert converted.status_code == 201, converted.text
    assert converted.json()["lead"]["status"] == "converted"


async def unshared(org: Org, s: Setting, module: str) -> dict[str, Any]:
    record = await create_record(org, module, owner_id=s.owner.id)
    path = f"/v1/{module}/{record['id']}/shares"
    shared = await share(org, module, record["id"], s.group_id, "read_write", s.owner.headers)
    assert shared.status_code == 200, shared.text
    with_share = await reads(org, module, record, s.member)
    removed = await org.client.delete(f"{path}/{s.group_id}", headers=s.owner.headers)
    return {
        "with_share": with_share,
        "removed": removed.status_code,
        "without_share": await reads(org, module, record, s.member),
        "shares": (await org.client.get(path, headers=s.owner.headers)).json()["data"],
        "removed_again": (
            await org.client.delete(f"{path}/{s.group_id}", headers=s.owner.headers)
        ).status_code,
    }


async def test_removing_the_share_removes_access(org: Org) -> None:
    s = await arrange(org)

    actual = {module: await unshared(org, s, module) for module in MODULES}

    expected = {
        "with_share": READS,
        "removed": 204,
        "without_share": HIDDEN,
        "shares": [],
        "removed_again": 404,
    }
    assert actual == dict.fromkeys(MODULES, expected)


async def test_removing_the_member_removes_access(org: Org) -> None:
    s = await arrange(org)
    contact = await create_record(org, "contacts", owner_id=s.owner.id)
    assert (
        await share(org, "contacts", contact["id"], s.group_id, "read_write", org.headers)
    ).status_code == 200
    assert await reads(org, "contacts", contact, s.member) == READS

    emptied = await org.client.patch(
        f"/v1/groups/{s.group_id}", json={"member_ids": [s.outsider.id]}, headers=org.headers
    )
    assert emptied.status_code == 200, emptied.text
    assert emptied.json()["member_ids"] == [s.outsider.id]

    # The same session token: membership is read on each request.
    assert await reads(org, "contacts", contact, s.member) == HIDDEN
    assert_problem(
        await org.client.patch(
            f"/v1/contacts/{contact['id']}", json={"title": "x"}, headers=s.member.headers
        ),
        404,
    )
    assert await reads(org, "contacts", contact, s.outsider) == READS


async def test_deleting_the_group_removes_its_shares(org: Org) -> None:
    s = await arrange(org)
    contact = await create_record(org, "contacts", owner_id=s.owner.id)
    account = await create_record(org, "accounts", owner_id=s.owner.id)
    for module, record in (("contacts", contact), ("accounts", account)):
        assert (
            await share(org, module, record["id"], s.group_id, "read_only", org.headers)
        ).status_code == 200
        assert await reads(org, module, record, s.member) == READS

    deleted = await org.client.delete(f"/v1/groups/{s.group_id}", headers=org.headers)
    assert deleted.status_code == 204, deleted.text

    assert_problem(await org.client.get(f"/v1/groups/{s.group_id}", headers=org.headers), 404)
    for module, record in (("contacts", contact), ("accounts", account)):
        assert await reads(org, module, record, s.member) == HIDDEN
        shares = await org.client.get(f"/v1/{module}/{record['id']}/shares", headers=org.headers)
        assert shares.status_code == 200, shares.text
        assert shares.json()["data"] == []
    # A new group with the same member does not inherit the old group's shares.
    await create_group(org, [s.member.id])
    assert await reads(org, "contacts", contact, s.member) == HIDDEN


async def test_a_share_for_one_module_opens_no_record_of_another(org: Org) -> None:
    """Shares name the module: sharing a contact does not open an account with the same id
    space, nor any other contact of the owner."""
    s = await arrange(org)
    shared = await create_record(org, "contacts", owner_id=s.owner.id)
    unshared = await create_record(org, "contacts", owner_id=s.owner.id)
    account = await create_record(org, "accounts", owner_id=s.owner.id)
    assert (
        await share(org, "contacts", shared["id"], s.group_id, "read_only", org.headers)
    ).status_code == 200

    assert await listed_ids(org, "contacts", s.member.headers) == [shared["id"]]
    assert await listed_ids(org, "accounts", s.member.headers) == []
    assert_problem(
        await org.client.get(f"/v1/contacts/{unshared['id']}", headers=s.member.headers), 404
    )
    assert_problem(
        await org.client.get(f"/v1/accounts/{account['id']}", headers=s.member.headers), 404
    )


async def test_only_who_may_change_a_record_may_share_it(org: Org, other_org: Org) -> None:
    s = await arrange(org)
    contact = await create_record(org, "contacts", owner_id=s.owner.id)
    path = f"/v1/contacts/{contact['id']}/shares/{s.group_id}"

    # Someone who cannot see it: 404, and the record stays unshared.
    assert_problem(
        await org.client.put(path, json={"access": "read_write"}, headers=s.outsider.headers), 404
    )
    assert_problem(await org.client.delete(path, headers=s.outsider.headers), 404)
    # A group of another organization, or none at all: 404.
    their_group = await create_group(other_org, [])
    assert_problem(
        await share(org, "contacts", contact["id"], their_group, "read_only", org.headers), 404
    )
    assert_problem(
        await share(
            org,
            "contacts",
            contact["id"],
            "00000000-0000-4000-8000-000000000000",
            "read_only",
            org.headers,
        ),
        404,
    )
    # An access level that does not exist: 422.
    assert_problem(
        await share(org, "contacts", contact["id"], s.group_id, "owner", org.headers), 422
    )
    listed = await org.client.get(f"/v1/contacts/{contact['id']}/shares", headers=org.headers)
    assert listed.json()["data"] == []
    assert await reads(org, "contacts", contact, s.member) == HIDDEN


async def test_a_standard_user_cannot_manage_groups(org: Org) -> None:
    s = await arrange(org)
    for response in (
        await org.client.get("/v1/groups", headers=s.member.headers),
        await org.client.post(
            "/v1/groups",
            json={"name": "Mine", "member_ids": [s.member.id]},
            headers=s.member.headers,
        ),
        await org.client.patch(
            f"/v1/groups/{s.group_id}",
            json={"member_ids": [s.outsider.id]},
            headers=s.member.headers,
        ),
        await org.client.delete(f"/v1/groups/{s.group_id}", headers=s.member.headers),
    ):
        assert_problem(response, 403)
    group = await org.client.get(f"/v1/groups/{s.group_id}", headers=org.headers)
    assert group.json()["member_ids"] == [s.member.id]


async def test_group_members_must_be_users_of_the_organization(org: Org, other_org: Org) -> None:
    stranger = await add_member(other_org)
    response = await org.client.post(
        "/v1/groups", json={"name": "Mixed", "member_ids": [stranger.id]}, headers=org.headers
    )
    assert_problem(response, 422)
    listed = await org.client.get("/v1/groups", headers=org.headers)
    assert listed.json()["data"] == []
