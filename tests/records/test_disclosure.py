"""Every response that shows a record goes through the one disclosure policy.

One table of response paths (create, get, list, search, update, history, lead conversion),
each called by a user whose profile lacks `view_sensitive` and by one whose otherwise equal
profile has it, on a record holding a sensitive value (leads and contacts: `national_id`,
accounts: `tax_id`). Without the right the value is null and named in `masked_fields`, and
nothing is revealed. With it the value is shown and the response writes exactly one
`record.sensitive_revealed` event, naming every record whose value it showed, however many
records the response holds (create is no reveal: the caller sent the value). Every response
carries `withheld_fields`, empty while the organization has no compliance settings.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_service.audit.models import AuditEvent
from crm_service.records import disclosure
from crm_service.records.fields import Classification
from tests.access.conftest import (
    MODULES,
    SENSITIVE_FIELD,
    Member,
    add_member,
    create_profile,
    create_record,
    record_fields,
)
from tests.conftest import Org

REVEALED = "record.sensitive_revealed"
NOUN = {"leads": "lead", "contacts": "contact", "accounts": "account"}


@dataclass(frozen=True)
class Scene:
    org: Org
    viewer: Member
    sees: bool  # the viewer's profile has view_sensitive


@dataclass(frozen=True)
class Seen:
    """One record as a response showed it, and the sensitive value stored for it."""

    record_id: str
    module: str
    shown: dict[str, Any]  # the record's body: its sensitive field, masked and withheld fields
    stored: str | None


@dataclass(frozen=True)
class Answer:
    response: httpx.Response
    seen: list[Seen]
    reveals: bool  # the response may reveal (not a create, whose values the caller sent)


def secret_value() -> str:
    return "SV " + secrets.token_hex(5).upper()


async def scene_for(org: Org, sees: bool) -> Scene:
    profile = await create_profile(
        org,
        {module: ["create", "read", "update", "delete"] for module in MODULES},
        view_sensitive=sees,
    )
    return Scene(org, await add_member(org, profile_id=profile), sees)


async def stored_record(s: Scene, module: str, value: str | None, **fields: Any) -> dict[str, Any]:
    """A record of the viewer's, created by the administrator (whose create reveals nothing)."""
    extra = {SENSITIVE_FIELD[module]: value} if value is not None else {}
    return await create_record(s.org, module, owner_id=s.viewer.id, **extra, **fields)


async def call(s: Scene, method: str, path: str, body: Any = None) -> httpx.Response:
    response = await s.org.client.request(
        method,
        path,
        json=body,
        headers={**s.viewer.headers, "X-Request-ID": uuid.uuid4().hex},
    )
    assert response.status_code in (200, 201), response.text
    return response


def seen(module: str, body: dict[str, Any], stored: str | None) -> Seen:
    return Seen(body["id"], module, body, stored)


# --- the response paths ----------------------------------------------------------------------


async def create_path(s: Scene, module: str) -> Answer:
    field = SENSITIVE_FIELD[module]
    # A caller without view_sensitive may not set the field (tests/access/test_masking.py).
    value = secret_value() if s.sees else None
    body = record_fields(module, **({field: value} if value else {}), owner_id=s.viewer.id)
    response = await call(s, "POST", f"/v1/{module}", body)
    return Answer(response, [seen(module, response.json(), value)], reveals=False)


async def get_path(s: Scene, module: str) -> Answer:
    value = secret_value()
    record = await stored_record(s, module, value)
    response = await call(s, "GET", f"/v1/{module}/{record['id']}")
    return Answer(response, [seen(module, response.json(), value)], reveals=True)


async def _page(s: Scene, module: str, method: str, path: str, body: Any) -> Answer:
    values = {
        (await stored_record(s, module, v))["id"]: v for v in (secret_value(), secret_value(), None)
    }
    response = await call(s, method, path, body)
    data = response.json()["data"]
    assert sorted(item["id"] for item in data) == sorted(values)
    return Answer(response, [seen(module, item, values[item["id"]]) for item in data], reveals=True)


async def list_path(s: Scene, module: str) -> Answer:
    return await _page(s, module, "GET", f"/v1/{module}?limit=200", None)


async def search_path(s: Scene, module: str) -> Answer:
    return await _page(s, module, "POST", f"/v1/{module}/search", {"limit": 200})


async def update_path(s: Scene, module: str) -> Answer:
    value = secret_value()
    record = await stored_record(s, module, value)
    response = await call(
        s, "PATCH", f"/v1/{module}/{record['id']}", {"description": "Called back"}
    )
    return Answer(response, [seen(module, response.json(), value)], reveals=True)


async def history_path(s: Scene, module: str) -> Answer:
    """The history's created entry, read as the record it shows: its new values."""
    field = SENSITIVE_FIELD[module]
    value = secret_value()
    record = await stored_record(s, module, value)
    response = await call(s, "GET", f"/v1/{module}/{record['id']}/history")
    page = response.json()
    [created] = [entry for entry in page["data"] if entry["action"] == "created"]
    assert field in created["fields"], "the field's name is shown either way"
    body = {
        "id": record["id"],
        field: created["changes"][field]["new"],
        "masked_fields": page["masked_fields"],
        "withheld_fields": page["withheld_fields"],
    }
    return Answer(response, [seen(module, body, value)], reveals=True)


async def conversion_path(s: Scene, module: str) -> Answer:
    assert module == "leads"
    value = secret_value()
    lead = await stored_record(s, "leads", value, company=f"Engines {secrets.token_hex(3)}")
    response = await call(s, "POST", f"/v1/leads/{lead['id']}/convert", {})
    body = response.json()
    assert body["account"] is not None, "the company became an account"
    return Answer(
        response,
        [
            seen("leads", body["lead"], value),
            # The contact carries the lead's value; the new account has no tax id.
            seen("contacts", body["contact"], value),
            seen("accounts", body["account"], None),
        ],
        reveals=True,
    )


Path = Callable[[Scene, str], Awaitable[Answer]]
PATHS: dict[str, Path] = {
    "create": create_path,
    "get": get_path,
    "list": list_path,
    "search": search_path,
    "update": update_path,
    "history": history_path,
}
CASES = [(name, module) for name in PATHS for module in MODULES] + [("conversion", "leads")]
ALL_PATHS: dict[str, Path] = {**PATHS, "conversion": conversion_path}


async def reveal_events(org: Org, response: httpx.Response) -> list[AuditEvent]:
    request_id = response.request.headers["X-Request-ID"]
    async with org.app.state.sessionmaker() as session:
        result = await session.execute(
            select(AuditEvent).where(
                AuditEvent.organization_id == org.id,
                AuditEvent.request_id == request_id,
                AuditEvent.action == REVEALED,
            )
        )
        return list(result.scalars())


# --- the table -------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "module"), CASES, ids=[f"{p}-{m}" for p, m in CASES])
async def test_without_view_sensitive_every_path_masks_and_reveals_nothing(
    org: Org, path: str, module: str
) -> None:
    s = await scene_for(org, sees=False)

    answer = await ALL_PATHS[path](s, module)

    for item in answer.seen:
        field = SENSITIVE_FIELD[item.module]
        assert item.shown[field] is None
        assert item.shown["masked_fields"] == [field]
        assert item.shown["withheld_fields"] == []
        if item.stored is not None:
            assert item.stored not in answer.response.text
    assert await reveal_events(org, answer.response) == []


@pytest.mark.parametrize(("path", "module"), CASES, ids=[f"{p}-{m}" for p, m in CASES])
async def test_with_view_sensitive_every_path_shows_and_writes_one_reveal_per_response(
    org: Org, path: str, module: str
) -> None:
    s = await scene_for(org, sees=True)

    answer = await ALL_PATHS[path](s, module)

    for item in answer.seen:
        assert item.shown[SENSITIVE_FIELD[item.module]] == item.stored
        assert item.shown["masked_fields"] == []
        assert item.shown["withheld_fields"] == []
    events = await reveal_events(org, answer.response)
    if not answer.reveals:
        assert events == [], "the caller sent the values: showing them back is no reveal"
        return
    [event] = events
    revealed = [item for item in answer.seen if item.stored is not None]
    assert sorted(json.loads(event.target_ids or "[]")) == sorted(
        item.record_id for item in revealed
    )
    assert event.target_id == (revealed[0].record_id if len(revealed) == 1 else None)
    assert event.target_type == NOUN[module]
    assert event.actor_id == uuid.UUID(s.viewer.id)
    assert json.loads(event.fields) == sorted({SENSITIVE_FIELD[item.module] for item in revealed})
    written = [event.target_id, event.target_ids, event.fields, event.reason]
    for item in revealed:
        assert item.stored not in json.dumps(written), "events name records and fields only"


# --- withholding -----------------------------------------------------------------------------


def withhold(monkeypatch: pytest.MonkeyPatch, *classes: Classification) -> None:
    """Compliance settings that withhold `classes`. They are not built yet (the policy asks
    `withheld_classifications`, which withholds nothing today), so this stands in for them,
    to show what the responses do with a withheld field."""

    async def withheld(*_: Any) -> frozenset[Classification]:
        return frozenset(classes)

    monkeypatch.setattr(disclosure, "withheld_classifications", withheld)


@pytest.mark.parametrize("module", MODULES)
async def test_a_withheld_field_is_left_out_named_and_never_revealed(
    org: Org, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await scene_for(org, sees=True)
    field = SENSITIVE_FIELD[module]
    value = secret_value()
    record = await stored_record(s, module, value)
    withhold(monkeypatch, Classification.SENSITIVE)

    got = await call(s, "GET", f"/v1/{module}/{record['id']}")
    listed = await call(s, "GET", f"/v1/{module}")
    history = await call(s, "GET", f"/v1/{module}/{record['id']}/history")

    for body in (got.json(), *listed.json()["data"]):
        assert field not in body, "withheld: absent, not null"
        assert body["withheld_fields"] == [field]
        assert body["masked_fields"] == [], "withheld wins over shown and masked"
    page = history.json()
    assert page["withheld_fields"] == [field]
    [created] = page["data"]
    assert field in created["fields"] and field not in created["changes"]
    for response in (got, listed, history):
        assert value not in response.text
        assert await reveal_events(org, response) == []


async def test_a_withheld_field_can_be_neither_filtered_on_nor_set(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await scene_for(org, sees=True)
    record = await stored_record(s, "contacts", None)
    withhold(monkeypatch, Classification.PERSONAL)

    # An exact-match filter would tell the value it matches.
    by_email = await s.org.client.post(
        "/v1/contacts/search", json={"email": record["email"]}, headers=s.viewer.headers
    )
    setting = await s.org.client.patch(
        f"/v1/contacts/{record['id']}", json={"email": "new@example.com"}, headers=s.viewer.headers
    )

    for refused in (by_email, setting):
        assert refused.status_code == 403, refused.text
        assert "compliance settings" in refused.json()["detail"]
    monkeypatch.undo()
    unchanged = await s.org.client.get(f"/v1/contacts/{record['id']}", headers=s.org.headers)
    assert unchanged.json()["email"] == record["email"]
