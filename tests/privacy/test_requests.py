"""Privacy requests: filing by email or by record, the legal clock (one calendar month,
extensions only within it), verification, the overdue and due-soon lists, who may file and
read them, and the service functions the portal calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from crm_service.audit.service import Actor
from crm_service.db.session import commit
from crm_service.privacy.requests import add_months, file_request, list_for_email
from tests.conftest import Org, assert_problem, database_bytes, unique_email
from tests.privacy.conftest import file, make_contact
from tests.privacy.probe import hits


@pytest.mark.parametrize(
    ("received", "due"),
    [
        ("2026-01-31T10:00:00", "2026-02-28T10:00:00"),
        ("2028-01-31T10:00:00", "2028-02-29T10:00:00"),
        ("2026-04-30T09:00:00", "2026-05-30T09:00:00"),
        ("2026-03-31T09:00:00", "2026-04-30T09:00:00"),
        ("2026-12-15T23:59:00", "2027-01-15T23:59:00"),
        ("2026-05-31T00:00:00", "2026-06-30T00:00:00"),
    ],
)
def test_due_one_calendar_month_later(received: str, due: str) -> None:
    start = datetime.fromisoformat(received).replace(tzinfo=UTC)
    assert add_months(start, 1) == datetime.fromisoformat(due).replace(tzinfo=UTC)


async def test_filed_by_email_is_due_a_month_later_and_awaits_verification(org: Org) -> None:
    email = unique_email()
    contact = await make_contact(org, email)
    response = await file(
        org,
        {
            "type": "access",
            "email": email,
            "received_at": "2026-01-31T10:00:00Z",
            "details": "Please send me everything you hold about me.",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/privacy/requests/{body['id']}"
    assert body["type"] == "access"
    assert body["status"] == "awaiting_verification"
    assert body["received_at"].startswith("2026-01-31T10:00:00")
    assert body["due_at"].startswith("2026-02-28T10:00:00")
    assert body["email"] == email
    assert body["details"] == "Please send me everything you hold about me."
    assert len(body["subject_ids"]) == 1

    one = await org.client.get(f"/v1/privacy/requests/{body['id']}", headers=org.headers)
    assert one.status_code == 200
    assert one.json()["subject_ids"] == body["subject_ids"]

    by_record = await file(org, {"type": "restriction", "module": "contacts",
                                 "record_id": contact["id"]})  # fmt: skip
    assert by_record.status_code == 201, by_record.text
    assert by_record.json()["subject_ids"] == body["subject_ids"]
    assert by_record.json()["email"] == email  # answered at the record's address


async def test_unknown_subjects_and_bad_input_are_refused(org: Org) -> None:
    assert_problem(
        await file(org, {"type": "access", "module": "leads",
                         "record_id": "00000000-0000-4000-8000-000000000000"}), 404,
    )  # fmt: skip
    email = unique_email()
    await make_contact(org, email)
    assert_problem(await file(org, {"type": "deletion", "email": email}), 422)
    assert_problem(await file(org, {"type": "access"}), 422)
    assert_problem(
        await file(org, {"type": "access", "email": email, "received_at": "2999-01-01T00:00:00Z"}),
        422,
    )
    listed = await org.client.get("/v1/privacy/requests", headers=org.headers)
    assert listed.json()["data"] == []


async def test_the_portal_files_verified_requests_and_lists_them_by_email(
    org: Org, app: Any
) -> None:
    email = unique_email()
    await make_contact(org, email)
    async with app.state.sessionmaker() as session:
        first = await file_request(
            session,
            org.id,
            type="objection",
            email=email,
            received_at=datetime(2026, 3, 1, tzinfo=UTC),
            details=None,
            actor=Actor.system(org.id),
            verified_by="portal",
        )
        await commit(session)
    async with app.state.sessionmaker() as session:
        second = await file_request(
            session,
            org.id,
            type="access",
            email=email.upper(),
            received_at=datetime(2026, 3, 2, tzinfo=UTC),
            details="portal",
            actor=Actor.system(org.id),
            verified_by=None,
        )
        await commit(session)
    async with app.state.sessionmaker() as session:
        found = await list_for_email(session, org.id, email)
        assert [request.id for request in found] == [second.id, first.id]
        assert await list_for_email(session, org.id, unique_email()) == []
    shown = await org.client.get(f"/v1/privacy/requests/{first.id}", headers=org.headers)
    assert shown.json()["status"] == "in_progress"
    assert shown.json()["verified_by"] == "portal"
    assert shown.json()["channel"] == "portal"


async def test_other_organizations_requests_do_not_exist(org: Org, other_org: Org) -> None:
    email = unique_email()
    await make_contact(org, email)
    created = (await file(org, {"type": "access", "email": email})).json()
    for path in ("", "/receipt"):
        assert_problem(
            await other_org.client.get(
                f"/v1/privacy/requests/{created['id']}{path}", headers=other_org.headers
            ),
            404,
        )
    for action, body in (
        ("verify", {}),
        ("extend", {"months": 1, "reason": "busy"}),
        ("complete", None),
        ("reject", {"reason": "no"}),
    ):
        assert_problem(
            await other_org.client.post(
                f"/v1/privacy/requests/{created['id']}/{action}",
                json=body,
                headers=other_org.headers,
            ),
            404,
        )
    # Another organization filing for this email holds nothing on it: its own request.
    theirs = await file(other_org, {"type": "erasure", "email": email})
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["subject_ids"] != created["subject_ids"]


async def test_a_standard_user_without_manage_privacy_is_refused(org: Org) -> None:
    standard = await org.add_user()
    email = unique_email()
    await make_contact(org, email)
    assert_problem(await file(org, {"type": "access", "email": email}, standard), 403)
    assert_problem(await org.client.get("/v1/privacy/requests", headers=standard), 403)


async def test_a_request_on_an_email_nothing_is_held_on_is_recorded_and_answered(
    org: Org, database_url: str
) -> None:
    email = unique_email("nobodyheld")
    details = "Do you hold anything on me, Brackenridge" + email.split("@")[0]
    ids = []
    for kind in ("access", "erasure"):
        filed = await file(
            org,
            {
                "type": kind,
                "email": email,
                "details": details,
                "received_at": "2026-10-31T09:00:00Z",
            },
        )
        assert filed.status_code == 201, filed.text
        body = filed.json()
        ids.append(body["id"])
        # Recorded like any other request: its clock runs from receipt.
        assert body["email"] == email and body["details"] == details
        assert body["due_at"].startswith("2026-11-30")
        assert body["status"] == "awaiting_verification"
        verified = await org.client.post(
            f"/v1/privacy/requests/{body['id']}/verify", json={}, headers=org.headers
        )
        assert verified.status_code == 200, verified.text
        done = await org.client.post(
            f"/v1/privacy/requests/{body['id']}/complete", headers=org.headers
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "completed"
        # Answered: nothing is held.
        assert done.json()["outcome"]["records_held"] == 0
        # Completed: what the request said is sealed under its own, now destroyed, key.
        again = await org.client.get(f"/v1/privacy/requests/{body['id']}", headers=org.headers)
        assert again.json()["email"] is None and again.json()["details"] is None
    listed = await org.client.get("/v1/privacy/requests", headers=org.headers)
    assert set(ids) <= {item["id"] for item in listed.json()["data"]}
    # The erasure blocklisted the email (its blind index only).
    refused = await org.client.post(
        "/v1/contacts", json={"last_name": "Back", "email": email}, headers=org.headers
    )
    assert_problem(refused, 409)
    # No byte of the database holds the email or what the request said.
    assert hits(await database_bytes(database_url), [email, details]) == []


async def test_a_record_created_after_a_nothing_held_request_is_covered_when_it_is_completed(
    org: Org, database_url: str
) -> None:
    """Filed when nothing was held, completed after a contact with that email was created:
    the request is carried out on that contact, not answered "nothing held"."""
    email = unique_email("heldsince")
    details = "Anything on me now, Oldcastle" + email.split("@")[0]
    filed = {}
    for kind in ("access", "erasure"):
        response = await file(org, {"type": kind, "email": email, "details": details})
        assert response.status_code == 201, response.text
        filed[kind] = response.json()
        verified = await org.client.post(
            f"/v1/privacy/requests/{filed[kind]['id']}/verify", json={}, headers=org.headers
        )
        assert verified.status_code == 200, verified.text
    contact = await make_contact(org, email, first_name="Ferdinand")

    access = await org.client.post(
        f"/v1/privacy/requests/{filed['access']['id']}/complete", headers=org.headers
    )
    assert access.status_code == 200, access.text
    assert access.json()["outcome"] == {"package_subjects": 1}
    # The request's own key and the contact's subject.
    assert len(access.json()["subject_ids"]) == 2
    # What the request said is still readable, now under the contact's key.
    assert access.json()["email"] == email and access.json()["details"] == details
    package = await org.client.get(
        f"/v1/privacy/requests/{filed['access']['id']}/package", headers=org.headers
    )
    assert package.status_code == 200, package.text
    assert contact["id"] in package.text and "Ferdinand" in package.text

    erasure = await org.client.post(
        f"/v1/privacy/requests/{filed['erasure']['id']}/complete", headers=org.headers
    )
    assert erasure.status_code == 200, erasure.text
    assert "records_held" not in erasure.json()["outcome"]
    assert len(erasure.json()["receipt_ids"]) == 1
    gone = await org.client.get(f"/v1/contacts/{contact['id']}", headers=org.headers)
    assert gone.status_code == 410  # erased
    refused = await org.client.post(
        "/v1/contacts", json={"last_name": "Back", "email": email}, headers=org.headers
    )
    assert_problem(refused, 409)
    # The contact, both requests' words and the package are unreadable: no byte holds them.
    assert hits(await database_bytes(database_url), [email, details, "Ferdinand"]) == []
