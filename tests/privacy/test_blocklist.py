"""The blocklist: every path that writes a lead's or contact's email or phone refuses an
erased subject's (409 `blocklisted`, no value in the answer); admins list entries by id and
date and remove one (audited), after which the value may be entered again."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from crm_service.db.session import commit
from tests.conftest import Org, assert_problem, unique_email

BLOCKED_EMAIL_PLACEHOLDER = "{email}"


async def _blocklist(org: Org, email: str, phone: str) -> None:
    """Blocklist `email` and `phone` by erasing a subject that had them."""
    lead = await org.client.post(
        "/v1/leads", json={"last_name": "Erased", "email": email, "phone": phone},
        headers=org.headers,
    )  # fmt: skip
    erased = await org.client.post(
        "/v1/privacy/erasures", json={"module": "leads", "record_id": lead.json()["id"]},
        headers=org.headers,
    )  # fmt: skip
    assert erased.status_code == 201, erased.text


async def _create(org: Org, module: str, body: dict[str, Any]) -> str:
    response = await org.client.post(f"/v1/{module}", json=body, headers=org.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


Route = Callable[[Org, str, str], Awaitable[httpx.Response]]


async def create_lead(org: Org, email: str, phone: str) -> httpx.Response:
    return await org.client.post(
        "/v1/leads", json={"last_name": "X", "email": email}, headers=org.headers
    )


async def create_contact_by_phone(org: Org, email: str, phone: str) -> httpx.Response:
    return await org.client.post(
        "/v1/contacts", json={"last_name": "X", "phone": phone}, headers=org.headers
    )


async def create_contact_mobile(org: Org, email: str, phone: str) -> httpx.Response:
    return await org.client.post(
        "/v1/contacts", json={"last_name": "X", "mobile": phone}, headers=org.headers
    )


async def update_lead_email(org: Org, email: str, phone: str) -> httpx.Response:
    lead_id = await _create(org, "leads", {"last_name": "X"})
    return await org.client.patch(
        f"/v1/leads/{lead_id}", json={"email": email}, headers=org.headers
    )


async def update_contact_phone(org: Org, email: str, phone: str) -> httpx.Response:
    contact_id = await _create(org, "contacts", {"last_name": "X"})
    return await org.client.patch(
        f"/v1/contacts/{contact_id}", json={"phone": phone}, headers=org.headers
    )


# A lead and a binned contact that already held the value when another subject with it was
# erased: converting and restoring them would enter the value again.
async def convert_lead(org: Org, email: str, phone: str) -> httpx.Response:
    lead_id = await _create(org, "leads", {"last_name": "Twin", "email": email})
    await _blocklist(org, email, phone)
    return await org.client.post(f"/v1/leads/{lead_id}/convert", json={}, headers=org.headers)


async def restore_contact(org: Org, email: str, phone: str) -> httpx.Response:
    contact_id = await _create(org, "contacts", {"last_name": "Twin", "phone": phone})
    assert (
        await org.client.delete(f"/v1/contacts/{contact_id}", headers=org.headers)
    ).status_code == 204
    await _blocklist(org, email, phone)
    return await org.client.post(
        f"/v1/recycle-bin/contacts/{contact_id}/restore", headers=org.headers
    )


BLOCKLISTED_FIRST: list[Route] = [
    create_lead, create_contact_by_phone, create_contact_mobile, update_lead_email,
    update_contact_phone,
]  # fmt: skip
BLOCKLISTED_LATER: list[Route] = [convert_lead, restore_contact]


def _identifiers() -> tuple[str, str]:
    return unique_email("erased"), f"+1 415 555 {secrets.randbelow(9000) + 1000}"


@pytest.mark.parametrize(
    "route", [*BLOCKLISTED_FIRST, *BLOCKLISTED_LATER], ids=lambda r: r.__name__
)
async def test_every_route_refuses_a_blocklisted_email_or_phone(org: Org, route: Route) -> None:
    email, phone = _identifiers()
    if route in BLOCKLISTED_FIRST:
        await _blocklist(org, email, phone)
    response = await route(org, email, phone)
    problem = assert_problem(response, 409)
    assert problem["type"].endswith("/blocklisted")
    compact = response.text.replace(" ", "")
    assert email not in response.text and phone.replace(" ", "") not in compact
    # The refusal is audited (and nothing else of the request is kept).
    refusals = await org.client.get(
        "/v1/audit-events", params={"action": "privacy.blocklist_refused"}, headers=org.headers
    )
    [event] = refusals.json()["data"]
    assert event["outcome"] == "denied" and event["reason"] == "blocklisted"


async def test_entries_are_listed_without_values_and_removed_by_admins(org: Org, app: Any) -> None:
    email, phone = _identifiers()
    await _blocklist(org, email, phone)
    listed = await org.client.get("/v1/privacy/blocklist", headers=org.headers)
    assert listed.status_code == 200
    entries = listed.json()["data"]
    assert sorted(entry["kind"] for entry in entries) == ["email", "phone"]
    assert set(entries[0]) == {"id", "kind", "created_at", "receipt_id"}
    assert email not in listed.text

    standard = await org.add_user()
    assert_problem(await org.client.get("/v1/privacy/blocklist", headers=standard), 403)
    email_entry = next(entry for entry in entries if entry["kind"] == "email")
    assert_problem(
        await org.client.delete(f"/v1/privacy/blocklist/{email_entry['id']}", headers=standard), 403
    )

    removed = await org.client.delete(
        f"/v1/privacy/blocklist/{email_entry['id']}", headers=org.headers
    )
    assert removed.status_code == 204
    assert_problem(
        await org.client.delete(f"/v1/privacy/blocklist/{email_entry['id']}", headers=org.headers),
        404,
    )
    again = await org.client.post(
        "/v1/leads", json={"last_name": "Back", "email": email}, headers=org.headers
    )
    assert again.status_code == 201  # came back of their own accord
    by_phone = await org.client.post(
        "/v1/leads", json={"last_name": "Back", "phone": phone}, headers=org.headers
    )
    assert_problem(by_phone, 409)  # the phone is still blocklisted

    audit = await org.client.get(
        "/v1/audit-events",
        params={"action": "privacy.blocklist_entry_removed"},
        headers=org.headers,
    )
    assert [event["target_id"] for event in audit.json()["data"]] == [email_entry["id"]]


async def test_another_organizations_blocklist_does_not_apply(org: Org, other_org: Org) -> None:
    email, phone = _identifiers()
    await _blocklist(org, email, phone)
    entry = (await org.client.get("/v1/privacy/blocklist", headers=org.headers)).json()["data"][0]
    elsewhere = await other_org.client.post(
        "/v1/leads", json={"last_name": "X", "email": email}, headers=other_org.headers
    )
    assert elsewhere.status_code == 201
    assert_problem(
        await other_org.client.delete(
            f"/v1/privacy/blocklist/{entry['id']}", headers=other_org.headers
        ),
        404,
    )


async def test_a_batch_sealed_at_once_is_refused_whole_for_one_blocklisted_email(
    org: Org, app: Any
) -> None:
    """`seal_many` (the storage's batch path: one blocklist query for many new records)
    refuses a batch holding one erased subject's email, and writes none of it."""
    from crm_service.privacy.blocklist import Blocklisted
    from crm_service.records.contacts.models import Contact
    from crm_service.records.contacts.repository import ContactRepository

    email, phone = _identifiers()
    await _blocklist(org, email, phone)

    def batch(*emails: str) -> list[Contact]:
        made = []
        for address in emails:
            contact = Contact(
                id=uuid.uuid4(), organization_id=org.id, owner_id=org.admin_id,
                created_by_id=org.admin_id, subject_id=uuid.uuid4(), source_channel="manual",
                last_name="Batch", email=address,
            )  # fmt: skip
            contact.mark_new_subject()
            made.append(contact)
        return made

    fine = [unique_email("batch") for _ in range(3)]
    async with app.state.sessionmaker() as session:
        with pytest.raises(Blocklisted):
            await ContactRepository(session, org.id).storage.seal_many(
                batch(fine[0], email.upper(), fine[1])
            )
        await session.rollback()
    async with app.state.sessionmaker() as session:
        made = batch(*fine)
        await ContactRepository(session, org.id).storage.seal_many(made)
        session.add_all(made)
        await commit(session)
    for address in [*fine, email]:
        found = await org.client.get("/v1/contacts", params={"email": address}, headers=org.headers)
        assert [item["email"] for item in found.json()["data"]] == (
            [address] if address in fine else []
        )
