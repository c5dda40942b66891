"""GDPR Art. 19: a rectification, erasure or restriction carried out by a privacy request is
told to those who received the subject's data: webhook endpoints subscribed to the
`privacy.*` event get it (ids only, no value of the subject), and the partner clients the
audit log shows acting on the subject's records are listed; the request records who was
told and when."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Org, unique_email
from tests.integrations.conftest import Receiver, create_webhook, deliver
from tests.integrations.test_webhooks import verify
from tests.oauth.conftest import register, token
from tests.privacy.conftest import completed, verified


async def partner_contact(org: Org, email: str) -> tuple[dict[str, Any], str]:
    """A contact a partner system entered (the audit log names the client)."""
    partner = await register(org, scopes=["crm.contacts.read", "crm.contacts.write"])
    headers = await token(org.client, partner)
    created = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Quillfeather", "first_name": "Zephyrine", "email": email},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    return created.json(), partner.client_id


async def test_an_erasure_is_told_to_subscribed_endpoints_and_listed_partners(
    org: Org, receiver: Receiver
) -> None:
    told = await create_webhook(org, receiver.url, ["privacy.erased"])
    untold = await create_webhook(org, receiver.url, ["contact.deleted", "privacy.restricted"])
    email = unique_email("zephyrine")
    contact, client_id = await partner_contact(org, email)
    bystander, other_client = await partner_contact(org, unique_email())

    request = await verified(org, {"type": "erasure", "email": email, "details": "erase me"})
    done = await completed(org, request["id"])
    recipients = {(item["kind"], item["id"]): item for item in done["recipients"]}
    assert set(recipients) == {("webhook_endpoint", told["id"]), ("oauth_client", client_id)}
    assert recipients[("webhook_endpoint", told["id"])]["how"] == "webhook_queued"
    # Its POST was answered with the record: it received the data.
    assert recipients[("oauth_client", client_id)]["how"] == "received_data"
    assert all(item["at"] == done["completed_at"] for item in done["recipients"])
    assert ("oauth_client", other_client) not in recipients

    assert await deliver(org) == 1
    (got,) = receiver.received
    payload = verify(told["secret"], got)
    assert payload["type"] == "privacy.erased"
    assert payload["data"] == {
        "request_id": request["id"],
        "organization_id": str(org.id),
        "subject_id": request["subject_ids"][0],
        "records": [{"module": "contacts", "id": contact["id"]}],
    }
    for value in (email, "Quillfeather", "Zephyrine", "erase me"):
        assert value.encode() not in got.body
    assert untold["id"] not in json.dumps(done)
    assert bystander["id"] not in got.body.decode()


@pytest.mark.parametrize(
    ("kind", "event", "extra"),
    [
        ("restriction", "privacy.restricted", {}),
        (
            "rectification",
            "privacy.rectified",
            {"corrections": [{"module": "contacts", "fields": {"last_name": "Suzuki"}}]},
        ),
    ],
)
async def test_restrictions_and_rectifications_are_told_too(
    org: Org, receiver: Receiver, kind: str, event: str, extra: dict[str, Any]
) -> None:
    hook = await create_webhook(org, receiver.url, [event])
    email = unique_email()
    contact, client_id = await partner_contact(org, email)
    for correction in extra.get("corrections", []):
        correction["record_id"] = contact["id"]
    request = await verified(org, {"type": kind, "email": email, **extra})
    done = await completed(org, request["id"])
    assert {(item["kind"], item["id"]) for item in done["recipients"]} == {
        ("webhook_endpoint", hook["id"]),
        ("oauth_client", client_id),
    }
    # Held for no restriction: the event is how recipients learn of it.
    assert await deliver(org) == 1
    payload = verify(hook["secret"], receiver.received[0])
    assert payload["type"] == event
    assert payload["data"]["records"] == [{"module": "contacts", "id": contact["id"]}]
    assert email.encode() not in receiver.received[0].body


async def test_an_endpoint_that_received_the_subjects_data_but_takes_no_privacy_event_is_listed(
    org: Org, receiver: Receiver
) -> None:
    """Art. 19 asks that every recipient be told: an endpoint that was delivered the contact's
    data (`contact.created`) but subscribes to no `privacy.*` event cannot be told by a
    webhook, so the request lists it for staff to tell."""
    feed = await create_webhook(org, receiver.url, ["contact.created"])
    told = await create_webhook(org, receiver.url, ["privacy.erased"])
    never = await create_webhook(org, receiver.url, ["lead.created"])
    email = unique_email("fed")
    created = await org.client.post(
        "/v1/contacts", json={"last_name": "Featherstone", "email": email}, headers=org.headers
    )
    assert created.status_code == 201, created.text
    assert await deliver(org) == 1  # the contact.created event, to the feed
    request = await verified(org, {"type": "erasure", "email": email})
    done = await completed(org, request["id"])
    hows = {item["id"]: item["how"] for item in done["recipients"]}
    assert hows == {feed["id"]: "received_data", told["id"]: "webhook_queued"}
    assert never["id"] not in hows
