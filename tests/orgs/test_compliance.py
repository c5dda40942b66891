"""Compliance settings: per channel, the classifications withheld from what leaves.

Set by an administrator with `manage_integrations`, audited, read on every request (a second
instance on the same database sees a change at once). The `api` channel is shown at the
policy level here (a partner client's principal); exports and webhooks show theirs over HTTP.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from crm_service.kit.modules import Module
from crm_service.main import create_app
from crm_service.records.disclosure import Channel, DisclosurePolicy
from crm_service.records.storage import RecordStorage
from crm_service.security.principal import Principal
from crm_service.security.scopes import ALL_SCOPES
from tests.access.conftest import add_member, audit_events, create_profile, create_record
from tests.conftest import CLIENT_IP, Org, assert_problem, make_settings

PATH = "/v1/settings/compliance"
NOTHING = {"api": [], "export": [], "integrations": []}


async def put(org: Org, withhold: dict[str, Any], headers: dict[str, str] | None = None):
    return await org.client.put(PATH, json={"withhold": withhold}, headers=headers or org.headers)


async def test_nothing_is_withheld_until_an_administrator_says_so(org: Org) -> None:
    response = await org.client.get(PATH, headers=org.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"withhold": NOTHING}

    response = await put(org, {"export": ["sensitive"], "integrations": ["sensitive", "personal"]})
    assert response.status_code == 200, response.text
    expected = {"api": [], "export": ["sensitive"], "integrations": ["personal", "sensitive"]}
    assert response.json() == {"withhold": expected}
    assert (await org.client.get(PATH, headers=org.headers)).json() == {"withhold": expected}

    events = await audit_events(org, action="settings.compliance_changed")
    assert len(events) == 1
    assert events[0]["fields"] == ["export", "integrations"]
    # The same settings again change nothing and audit nothing.
    assert (await put(org, expected)).status_code == 200
    assert len(await audit_events(org, action="settings.compliance_changed")) == 1


async def test_only_manage_integrations_may_read_or_change_them(org: Org) -> None:
    profile = await create_profile(org, {"contacts": ["read"]}, rights=["manage_settings"])
    member = await add_member(org, profile_id=profile)
    assert_problem(await org.client.get(PATH, headers=member.headers), 403)
    assert_problem(await put(org, {"api": ["sensitive"]}, member.headers), 403)
    assert (await org.client.get(PATH, headers=org.headers)).json() == {"withhold": NOTHING}


@pytest.mark.parametrize(
    "withhold",
    [{"api": ["none"]}, {"screen": ["sensitive"]}, {"api": "sensitive"}, {"api": [None]}],
)
async def test_bad_settings_are_refused_and_change_nothing(org: Org, withhold: Any) -> None:
    assert_problem(await put(org, withhold), 422)
    assert (await org.client.get(PATH, headers=org.headers)).json() == {"withhold": NOTHING}


async def test_signed_in_users_screen_is_never_withheld_from(org: Org) -> None:
    await put(org, {"api": ["personal", "sensitive"], "export": ["personal", "sensitive"]})
    record = await create_record(org, "contacts", national_id="AB 123")
    response = await org.client.get(f"/v1/contacts/{record['id']}", headers=org.headers)
    body = response.json()
    assert body["withheld_fields"] == []
    assert body["email"] == record["email"] and body["national_id"] == "AB 123"


def partner(org: Org) -> Principal:
    """A partner client's principal as the OAuth feature makes one: no profile, scopes only."""
    return Principal(
        organization_id=org.id, user_id=None, scopes=ALL_SCOPES, client_id="partner-test"
    )


@pytest.mark.parametrize(
    ("withhold", "withheld"),
    [
        ([], []),
        (["sensitive"], ["national_id"]),
        (["personal"], None),  # every personal field of contacts
    ],
)
async def test_the_api_channel_withholds_for_partner_clients(
    org: Org, withhold: list[str], withheld: list[str] | None
) -> None:
    await put(org, {"api": withhold})
    async with org.app.state.sessionmaker() as session:
        storage = RecordStorage(session, org.id, Module.CONTACTS)
        policy = DisclosurePolicy(session, partner(org))
        assert policy.channel is Channel.API
        disclosure = await policy.fields(storage)
        classification = await storage.classification()
    if withheld is None:
        withheld = sorted(n for n, c in classification.items() if c.value == "personal")
    assert list(disclosure.withheld) == withheld
    # A partner has no profile: sensitive values it is not withheld are masked instead.
    assert list(disclosure.masked) == ([] if "sensitive" in withhold else ["national_id"])


async def test_a_change_holds_on_another_instance_at_its_next_request(
    org: Org, database_url: str
) -> None:
    other = create_app(make_settings(database_url))
    async with LifespanManager(other):
        transport = httpx.ASGITransport(app=other, client=(CLIENT_IP, 50001))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            # The other instance answers once (anything it could cache is now warm)...
            first = await http.get("/v1/contacts/export?format=ndjson", headers=org.headers)
            assert first.headers["withheld-fields"] == ""
            await put(org, {"export": ["personal"]})
            # ...and its next request follows the change made through this instance.
            second = await http.get("/v1/contacts/export?format=ndjson", headers=org.headers)
            assert "email" in second.headers["withheld-fields"].split(",")
            await put(org, {})
            third = await http.get(
                f"/v1/contacts/export?format=ndjson&owner_id={uuid.uuid4()}", headers=org.headers
            )
            assert third.headers["withheld-fields"] == ""
