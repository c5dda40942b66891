"""GET /v1/audit-events: what an administrator reads of the organization's log.

Administrators only; one organization's events only; filters by actor, action, target and
time (`since` inclusive, `until` exclusive); newest first; keyset pages that never repeat or
skip an event; bad input is a 422 problem; each event names the request and client address it
came from.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.conftest import Org, assert_problem, error_fields

CLIENT_IP = "203.0.113.7"  # the address the shared test client connects from


async def list_events(
    org: Org, headers: dict[str, str] | None = None, **params: Any
) -> list[dict[str, Any]]:
    response = await org.client.get(
        "/v1/audit-events", params={"limit": 200, **params}, headers=headers or org.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None, "a test org's log fits on one page of 200"
    return body["data"]


async def create_contact(
    org: Org, headers: dict[str, str] | None = None, **extra: str
) -> httpx.Response:
    response = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Lovelace"},
        headers={**(headers or org.headers), **extra},
    )
    assert response.status_code == 201, response.text
    return response


async def me(org: Org, headers: dict[str, str]) -> str:
    response = await org.client.get("/v1/me", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


# --- who may read what -----------------------------------------------------------------------


async def test_only_administrators_read_the_log(org: Org) -> None:
    user = await org.add_user(is_admin=False)
    refused = await org.client.get("/v1/audit-events", headers=user)
    assert_problem(refused, 403)
    anonymous = await org.client.get("/v1/audit-events")
    assert_problem(anonymous, 401)
    assert (await org.client.get("/v1/audit-events", headers=org.headers)).status_code == 200


async def test_another_organizations_events_are_never_visible(org: Org, other_org: Org) -> None:
    theirs = (await create_contact(other_org)).json()["id"]
    mine = (await create_contact(org)).json()["id"]

    seen = await list_events(org)
    assert mine in {event["target_id"] for event in seen}
    assert theirs not in {event["target_id"] for event in seen}
    assert str(other_org.admin_id) not in {event["actor_id"] for event in seen}
    their_events = await list_events(other_org)
    assert {event["id"] for event in seen}.isdisjoint(event["id"] for event in their_events)
    # Asking for them by name finds nothing either.
    assert await list_events(org, target_id=theirs) == []
    assert await list_events(org, actor_id=str(other_org.admin_id)) == []


# --- filters and order -----------------------------------------------------------------------


async def test_filters_by_actor_action_target_and_type(org: Org) -> None:
    colleague = await org.add_user(is_admin=False)
    colleague_id = await me(org, colleague)
    contact = (await create_contact(org)).json()["id"]
    changed = await org.client.patch(
        f"/v1/contacts/{contact}", json={"title": "Engineer"}, headers=org.headers
    )
    assert changed.status_code == 200, changed.text
    assert (
        await org.client.delete(f"/v1/contacts/{contact}", headers=org.headers)
    ).status_code == 204
    theirs = (await create_contact(org, colleague)).json()["id"]
    account = await org.client.post(
        "/v1/accounts", json={"name": "Engines Ltd"}, headers=org.headers
    )
    assert account.status_code == 201, account.text

    by_target = await list_events(org, target_id=contact)
    assert [e["action"] for e in by_target] == [
        "record.deleted",
        "record.updated",
        "record.created",
    ]
    assert by_target[1]["fields"] == ["title"]
    assert all(
        e["target_type"] == "contact" and e["actor_id"] == str(org.admin_id) for e in by_target
    )

    by_colleague = await list_events(org, actor_id=colleague_id)
    # Accepting their invitation was the colleague's act too.
    assert {e["action"] for e in by_colleague} == {
        "user.invitation_accepted",
        "auth.login_succeeded",
        "record.created",
    }
    assert {e["actor_id"] for e in by_colleague} == {colleague_id}
    assert theirs in {e["target_id"] for e in by_colleague}

    created = await list_events(org, action="record.created")
    assert {e["action"] for e in created} == {"record.created"}
    assert {contact, theirs, account.json()["id"]} <= {e["target_id"] for e in created}

    contacts = await list_events(org, target_type="contact")
    assert {e["target_type"] for e in contacts} == {"contact"}
    assert {e["target_id"] for e in contacts} == {contact, theirs}

    mine_created = await list_events(
        org, target_type="contact", action="record.created", actor_id=str(org.admin_id)
    )
    assert [e["target_id"] for e in mine_created] == [contact]


async def test_events_come_newest_first(org: Org) -> None:
    for _ in range(3):
        await create_contact(org)
    events = await list_events(org)
    assert len(events) >= 6  # organization and admin created, a sign-in, three contacts
    keys = [(at(e), e["id"]) for e in events]
    assert keys == sorted(keys, reverse=True)
    assert events[-1]["action"] == "organization.created"


async def test_since_is_inclusive_and_until_exclusive(org: Org) -> None:
    contact = (await create_contact(org)).json()["id"]
    for title in ("Engineer", "Architect"):
        response = await org.client.patch(
            f"/v1/contacts/{contact}", json={"title": title}, headers=org.headers
        )
        assert response.status_code == 200, response.text
    created, first_change, second_change = reversed(await list_events(org, target_id=contact))
    moment = first_change["occurred_at"]  # exactly as the API wrote it

    since = await list_events(org, target_id=contact, since=moment)
    assert [e["id"] for e in since] == [second_change["id"], first_change["id"]]
    until = await list_events(org, target_id=contact, until=moment)
    assert [e["id"] for e in until] == [created["id"]]
    between = await list_events(
        org, target_id=contact, since=moment, until=second_change["occurred_at"]
    )
    assert [e["id"] for e in between] == [first_change["id"]]
    # The same instant in another offset is the same instant.
    india = timezone(timedelta(hours=5, minutes=30))
    shifted = at(first_change).astimezone(india).isoformat()
    same = await list_events(org, target_id=contact, since=shifted)
    assert [e["id"] for e in same] == [second_change["id"], first_change["id"]]


# --- paging ----------------------------------------------------------------------------------


async def test_pages_of_two_walk_every_event_once_in_order(org: Org) -> None:
    for _ in range(4):
        await create_contact(org)
    everything = [e["id"] for e in await list_events(org)]
    assert len(everything) >= 7

    walked: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        response = await org.client.get("/v1/audit-events", params=params, headers=org.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert 1 <= len(page["data"]) <= 2
        walked += [e["id"] for e in page["data"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert walked == everything
    assert len(set(walked)) == len(walked)
    assert pages == -(-len(everything) // 2)


async def test_a_page_cursor_keeps_its_place_while_new_events_arrive(org: Org) -> None:
    for _ in range(3):
        await create_contact(org)
    before = [e["id"] for e in await list_events(org)]
    first = await org.client.get("/v1/audit-events", params={"limit": 2}, headers=org.headers)
    await create_contact(org)  # newer than every page: must not shift what comes next
    rest: list[str] = []
    cursor = first.json()["next_cursor"]
    while cursor is not None:
        page = await org.client.get(
            "/v1/audit-events", params={"limit": 2, "cursor": cursor}, headers=org.headers
        )
        rest += [e["id"] for e in page.json()["data"]]
        cursor = page.json()["next_cursor"]
    assert [e["id"] for e in first.json()["data"]] + rest == before


def _cursor(content: Any) -> str:
    raw = json.dumps(content).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-01-01T00:00:00"}, "query.since"),
        ({"until": "2026-01-01T10:00:00"}, "query.until"),
        ({"since": "yesterday"}, "query.since"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "query.since"),
        ({"until": "9999-12-31T23:59:59-14:00"}, "query.until"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        (
            {
                "cursor": _cursor(
                    {"s": "created_at", "v": "2026-01-01T00:00:00+00:00", "i": uuid.uuid4().hex}
                )
            },
            "query.cursor",
        ),
        (
            {
                "cursor": _cursor(
                    {"s": "-created_at", "v": "2026-01-01T00:00:00", "i": uuid.uuid4().hex}
                )
            },
            "query.cursor",
        ),
        (
            {"cursor": _cursor({"s": "-created_at", "v": "2026-01-01T00:00:00+00:00", "i": 12345})},
            "query.cursor",
        ),
        ({"cursor": _cursor(["-created_at"])}, "query.cursor"),
        ({"action": "record.teleported"}, "query.action"),
        ({"actor_id": "someone"}, "query.actor_id"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "201"}, "query.limit"),
        ({"colour": "red"}, "query.colour"),
    ],
    ids=[
        "naive-since",
        "naive-until",
        "not-a-time",
        "since-before-year-1-in-utc",
        "until-after-year-9999-in-utc",
        "garbage-cursor",
        "cursor-of-another-order",
        "cursor-with-naive-time",
        "cursor-with-a-number-for-id",
        "cursor-not-an-object",
        "unknown-action",
        "actor-not-a-uuid",
        "limit-0",
        "limit-201",
        "unknown-parameter",
    ],
)
async def test_bad_queries_answer_422_naming_the_parameter(
    org: Org, params: dict[str, str], field: str
) -> None:
    response = await org.client.get("/v1/audit-events", params=params, headers=org.headers)
    body = assert_problem(response, 422)
    assert field in error_fields(body)


# --- where an event came from ----------------------------------------------------------------


async def test_events_carry_the_request_id_and_client_address(org: Org) -> None:
    response = await create_contact(org)
    request_id = response.headers["x-request-id"]
    (event,) = await list_events(org, target_id=response.json()["id"])
    assert event["request_id"] == request_id
    assert event["client_ip"] == CLIENT_IP
    assert event["actor_type"] == "user" and event["actor_id"] == str(org.admin_id)
    assert event["outcome"] == "success"

    # A caller's own request id (a trace id from its gateway) is kept, so both logs join up.
    traced = await create_contact(org, **{"X-Request-ID": "gateway-trace.42"})
    assert traced.headers["x-request-id"] == "gateway-trace.42"
    (event,) = await list_events(org, target_id=traced.json()["id"])
    assert event["request_id"] == "gateway-trace.42"

    login = await org.client.post(
        "/v1/auth/login", json={"email": org.admin_email, "password": "wrong password here"}
    )
    assert_problem(login, 401)
    failed = await list_events(org, action="auth.login_failed")
    assert [(e["request_id"], e["client_ip"]) for e in failed] == [
        (login.headers["x-request-id"], CLIENT_IP)
    ]
