"""GDPR Art. 19 for partner clients that only read: every path by which a partner client
receives a lead's or contact's data (a record, a list, a search, a history page, an export in
either format, an access package, the consent ledger, a privacy request, a lead before its
conversion) makes that client a recipient
of the subject, listed when a rectification, erasure or restriction is carried out. Staff
reads and other subjects' data make no one a recipient; erasure deletes the rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import Org, count_rows, unique_email
from tests.oauth.conftest import EVERY_RECORD_SCOPE, register, token
from tests.privacy.conftest import completed, make_contact, verified

READER_SCOPES = [*EVERY_RECORD_SCOPE, "crm.export", "crm.privacy.read", "crm.consent.read"]

Read = Callable[[Org, dict[str, str], dict[str, Any]], Awaitable[None]]


async def _ok(response: Any) -> str:
    assert response.status_code == 200, response.text
    return str(response.text)


async def by_get(org: Org, headers: dict[str, str], contact: dict[str, Any]) -> None:
    text = await _ok(await org.client.get(f"/v1/contacts/{contact['id']}", headers=headers))
    assert contact["email"] in text


async def by_list(org: Org, headers: dict[str, str], contact: dict[str, Any]) -> None:
    text = await _ok(await org.client.get("/v1/contacts?limit=100", headers=headers))
    assert contact["id"] in text


async def by_search(org: Org, headers: dict[str, str], contact: dict[str, Any]) -> None:
    response = await org.client.get(
        "/v1/contacts", params={"email": contact["email"]}, headers=headers
    )
    assert contact["id"] in await _ok(response)


async def by_history(org: Org, headers: dict[str, str], contact: dict[str, Any]) -> None:
    changed = await org.client.patch(
        f"/v1/contacts/{contact['id']}",
        json={"first_name": "Wilhelmina"},
        headers={**org.headers, "If-Match": contact["etag"]},
    )
    assert changed.status_code == 200, changed.text
    response = await org.client.get(f"/v1/contacts/{contact['id']}/history", headers=headers)
    assert "Wilhelmina" in await _ok(response)


async def by_csv_export(org: Org, headers: dict[str, str], contact: dict[str, Any]) -> None:
    response = await org.client.get("/v1/contacts/export?format=csv", headers=headers)
    assert contact["email"] in await _ok(response)


async def by_ndjson_export(org: Org, headers: dict[str, str], contact: dict[str, Any]) -> None:
    response = await org.client.get("/v1/contacts/export?format=ndjson", headers=headers)
    assert contact["email"] in await _ok(response)


async def by_package(org: Org, headers: dict[str, str], contact: dict[str, Any]) -> None:
    access = await verified(
        org, {"type": "access", "module": "contacts", "record_id": contact["id"]}
    )
    await completed(org, access["id"])
    response = await org.client.get(f"/v1/privacy/requests/{access['id']}/package", headers=headers)
    assert contact["email"] in await _ok(response)


async def by_consent_ledger(org: Org, headers: dict[str, str], contact: dict[str, Any]) -> None:
    response = await org.client.get(f"/v1/contacts/{contact['id']}/consents", headers=headers)
    await _ok(response)


async def by_privacy_request(org: Org, headers: dict[str, str], contact: dict[str, Any]) -> None:
    access = await verified(org, {"type": "access", "email": contact["email"]})
    response = await org.client.get(f"/v1/privacy/requests/{access['id']}", headers=headers)
    assert contact["email"] in await _ok(response)


@pytest.mark.parametrize(
    "read",
    [
        by_get,
        by_list,
        by_search,
        by_history,
        by_csv_export,
        by_ndjson_export,
        by_package,
        by_consent_ledger,
        by_privacy_request,
    ],
    ids=lambda read: read.__name__,
)
async def test_a_partner_that_received_a_subjects_data_is_told_of_their_erasure(
    org: Org, read: Read
) -> None:
    reader = await register(org, name="Help desk", scopes=READER_SCOPES)
    bystander = await register(org, name="ERP", scopes=READER_SCOPES)
    email = unique_email("recipient")
    contact = await make_contact(org, email, first_name="Ottoline")
    other = await make_contact(org)
    await read(org, await token(org.client, reader), contact)
    # The other partner only ever saw another subject's record.
    await by_get(org, await token(org.client, bystander), other)
    # Staff reads make no one a recipient.
    assert (await org.client.get(f"/v1/contacts/{contact['id']}", headers=org.headers)).is_success

    rows = await count_rows(org.app, "partner_disclosures", org.id)
    request = await verified(org, {"type": "erasure", "email": email})
    done = await completed(org, request["id"])
    clients = {
        item["id"]: item["how"] for item in done["recipients"] if item["kind"] == "oauth_client"
    }
    assert clients == {reader.client_id: "received_data"}
    # Listed, then forgotten with the subject (rows for other subjects stay).
    assert await count_rows(org.app, "partner_disclosures", org.id) == rows - 1


async def test_a_lead_read_by_a_partner_makes_it_a_recipient_of_the_contact_it_became(
    org: Org,
) -> None:
    reader = await register(org, name="Lead scorer", scopes=READER_SCOPES)
    email = unique_email("converted")
    lead = await org.client.post(
        "/v1/leads",
        json={"last_name": "Pemberton", "company": "Pemberton Ltd", "email": email},
        headers=org.headers,
    )
    assert lead.status_code == 201, lead.text
    seen = await org.client.get(
        f"/v1/leads/{lead.json()['id']}", headers=await token(org.client, reader)
    )
    assert seen.status_code == 200, seen.text
    converted = await org.client.post(
        f"/v1/leads/{lead.json()['id']}/convert", json={}, headers=org.headers
    )
    assert converted.status_code == 201, converted.text

    request = await verified(org, {"type": "restriction", "email": email})
    done = await completed(org, request["id"])
    assert {(item["kind"], item["id"], item["how"]) for item in done["recipients"]} == {
        ("oauth_client", reader.client_id, "received_data")
    }
    # A restriction keeps the record of who received the data.
    assert await count_rows(org.app, "partner_disclosures", org.id) == 1


async def test_reading_again_records_the_first_disclosure_once(org: Org) -> None:
    reader = await register(org, name="Newsletter", scopes=READER_SCOPES)
    headers = await token(org.client, reader)
    contacts = [await make_contact(org) for _ in range(3)]
    for _ in range(2):
        await by_list(org, headers, contacts[0])
        for contact in contacts:
            await by_get(org, headers, contact)
    assert await count_rows(org.app, "partner_disclosures", org.id) == 3
