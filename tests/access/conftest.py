"""Builders for access-control tests: users in roles and profiles, groups, sharing defaults and
records owned by a given user, all made through the API as an administrator would."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import Org, create_user, unique_email

MODULES = ["leads", "contacts", "accounts"]
PERSON_MODULES = ["leads", "contacts"]
# The exact-match lookup each module offers on a value every test record has.
LOOKUP_FIELD = {"leads": "email", "contacts": "email", "accounts": "name"}
# The field each module classifies sensitive by default.
SENSITIVE_FIELD = {"leads": "national_id", "contacts": "national_id", "accounts": "tax_id"}
MAX_PAGE = 200


@dataclass(frozen=True)
class Member:
    """A signed-in user of the organization."""

    id: str
    email: str
    headers: dict[str, str]


async def add_member(
    org: Org,
    *,
    role_id: str | None = None,
    profile_id: str | None = None,
    is_admin: bool = False,
) -> Member:
    email = unique_email("member")
    body: dict[str, Any] = {"email": email, "is_admin": is_admin}
    if role_id is not None:
        body["role_id"] = role_id
    if profile_id is not None:
        body["profile_id"] = profile_id
    response = await create_user(org, body)
    assert response.status_code == 201, response.text
    return Member(id=response.json()["id"], email=email, headers=await org.login(email))


async def create_role(org: Org, name: str, parent_id: str | None = None) -> str:
    response = await org.client.post(
        "/v1/roles", json={"name": name, "parent_id": parent_id}, headers=org.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def create_profile(
    org: Org,
    modules: dict[str, list[str]],
    *,
    view_sensitive: bool = False,
    rights: list[str] | None = None,
) -> str:
    response = await org.client.post(
        "/v1/profiles",
        json={
            "name": "Profile " + secrets.token_hex(4),
            "modules": modules,
            "view_sensitive": view_sensitive,
            "rights": rights or [],
        },
        headers=org.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def builtin_profiles(org: Org) -> dict[str, str]:
    """Ids of the built-in profiles, by their `builtin` name (administrator, standard)."""
    response = await org.client.get("/v1/profiles", headers=org.headers)
    assert response.status_code == 200, response.text
    return {p["builtin"]: p["id"] for p in response.json()["data"] if p["builtin"]}


async def set_sharing(org: Org, level: str | None = None, **per_module: str) -> None:
    body = {module: per_module.get(module, level or "private") for module in MODULES}
    response = await org.client.put("/v1/settings/sharing", json=body, headers=org.headers)
    assert response.status_code == 200, response.text
    assert response.json() == body


async def create_group(org: Org, member_ids: list[str]) -> str:
    response = await org.client.post(
        "/v1/groups",
        json={"name": "Group " + secrets.token_hex(4), "member_ids": member_ids},
        headers=org.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def record_fields(module: str, **fields: Any) -> dict[str, Any]:
    """A valid create body for `module` whose lookup value is unique."""
    tag = secrets.token_hex(4)
    if module == "accounts":
        return {"name": f"Difference Engines {tag}", **fields}
    return {"last_name": f"Lovelace{tag}", "email": unique_email("ada"), **fields}


async def create_record(
    org: Org, module: str, *, owner_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A record created by the organization's administrator, owned by `owner_id`."""
    body = record_fields(module, **fields)
    if owner_id is not None:
        body["owner_id"] = owner_id
    response = await org.client.post(f"/v1/{module}", json=body, headers=org.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def admin_get(org: Org, module: str, record_id: str) -> httpx.Response:
    return await org.client.get(f"/v1/{module}/{record_id}", headers=org.headers)


async def listed_ids(org: Org, module: str, headers: dict[str, str], **params: str) -> list[str]:
    response = await org.client.get(
        f"/v1/{module}", params={"limit": MAX_PAGE, **params}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None, "a test organization's records fit on one page"
    return [item["id"] for item in body["data"]]


async def searched_ids(org: Org, module: str, headers: dict[str, str], **filters: str) -> list[str]:
    response = await org.client.post(
        f"/v1/{module}/search", json={"limit": MAX_PAGE, **filters}, headers=headers
    )
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def audit_events(org: Org, **params: str) -> list[dict[str, Any]]:
    response = await org.client.get(
        "/v1/audit-events", params={"limit": MAX_PAGE, **params}, headers=org.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None, "a test organization's log fits on one page"
    return body["data"]
