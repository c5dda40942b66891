"""Every kind of privacy request carried out end to end through `complete`: access and
portability leave a package to download, rectification applies its corrections through the
ordinary update (all or nothing), restriction locks the subject, objection withdraws
marketing consent only, erasure erases with a receipt and leaves nothing of the request
readable; partner tokens by scope."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest

from crm_service.audit.service import Actor
from crm_service.db.session import commit
from crm_service.privacy.requests import file_request
from tests.conftest import Org, assert_problem, database_bytes, error_fields, unique_email
from tests.consent.conftest import create_purpose
from tests.oauth.conftest import register, token
from tests.privacy.conftest import act, completed, file, make_contact, verified
from tests.privacy.probe import hits


@pytest.mark.parametrize("kind", ["access", "portability"])
async def test_access_and_portability_complete_with_a_downloadable_package(
    org: Org, other_org: Org, kind: str
) -> None:
    contact = await make_contact(org)
    request = await verified(org, {"type": kind, "module": "contacts", "record_id": contact["id"]})
    path = f"/v1/privacy/requests/{request['id']}"
    assert_problem(await org.client.get(f"{path}/package", headers=org.headers), 404)
    done = await completed(org, request["id"])
    assert done["status"] == "completed" and done["completed_at"] is not None
    assert done["recipients"] == [] and done["receipt_ids"] == []
    assert done["outcome"] == {"package_subjects": 1}
    assert done["package_expires_at"] is not None
    assert_problem(await org.client.get(f"{path}/receipt", headers=org.headers), 404)

    document = await org.client.get(f"{path}/package", headers=org.headers)
    assert document.status_code == 200, document.text
    assert document.headers["content-type"].startswith("application/json")
    assert contact["id"] in document.text and contact["email"] in document.text
    archive = await org.client.get(f"{path}/package?format=csv", headers=org.headers)
    assert archive.status_code == 200, archive.text
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert "README.txt" in names and len(names) > 2
    assert_problem(await other_org.client.get(f"{path}/package", headers=other_org.headers), 404)


async def test_rectification_applies_its_corrections_through_the_ordinary_update(
    org: Org,
) -> None:
    contact = await make_contact(org, phone="+44 20 7946 0001")
    correction = {
        "module": "contacts",
        "record_id": contact["id"],
        "fields": {"last_name": "Suzuki", "phone": None},
    }
    request = await verified(
        org,
        {
            "type": "rectification",
            "module": "contacts",
            "record_id": contact["id"],
            "details": "My family name is Suzuki; please remove my old phone number.",
            "corrections": [correction],
        },
    )
    assert request["corrections"] == [correction]
    done = await completed(org, request["id"])
    assert done["outcome"] == {"corrections_applied": 1}
    shown = await org.client.get(f"/v1/contacts/{contact['id']}", headers=org.headers)
    assert shown.json()["last_name"] == "Suzuki" and shown.json()["phone"] is None
    # The ordinary update: a history entry by the completing user.
    history = await org.client.get(f"/v1/contacts/{contact['id']}/history", headers=org.headers)
    newest = history.json()["data"][0]
    assert newest["action"] == "updated" and newest["actor_id"] == str(org.admin_id)
    assert set(newest["changes"]) == {"last_name", "phone"}


async def test_bad_corrections_are_refused_and_change_nothing(org: Org) -> None:
    email = unique_email()
    contact = await make_contact(org, email)
    stranger = await make_contact(org)

    async def refused(corrections: list[dict[str, Any]], kind: str = "rectification") -> set[str]:
        response = await file(org, {"type": kind, "email": email, "corrections": corrections})
        return error_fields(assert_problem(response, 422))

    assert "body.corrections.0.record_id" in await refused(
        [{"module": "contacts", "record_id": stranger["id"], "fields": {"last_name": "X"}}]
    )
    assert "body.corrections.0.fields.colour" in await refused(
        [{"module": "contacts", "record_id": contact["id"], "fields": {"colour": "red"}}]
    )
    assert "body.corrections.0.fields.email" in await refused(
        [{"module": "contacts", "record_id": contact["id"], "fields": {"email": "not-mail"}}]
    )
    assert "body.corrections" in await refused(
        [{"module": "contacts", "record_id": contact["id"], "fields": {"last_name": "X"}}],
        kind="access",
    )
    listed = await org.client.get("/v1/privacy/requests", headers=org.headers)
    assert listed.json()["data"] == []

    # Valid when filed, impossible when completed (a lead of the subject went to the recycle
    # bin meanwhile): 422, and the contact's correction is not applied either.
    lead = await org.client.post(
        "/v1/leads", json={"last_name": "Tanaka", "email": email}, headers=org.headers
    )
    request = await verified(
        org,
        {
            "type": "rectification",
            "email": email,
            "corrections": [
                {"module": "contacts", "record_id": contact["id"], "fields": {"last_name": "A"}},
                {"module": "leads", "record_id": lead.json()["id"], "fields": {"last_name": "B"}},
            ],
        },
    )
    assert len(request["subject_ids"]) == 2
    deleted = await org.client.delete(f"/v1/leads/{lead.json()['id']}", headers=org.headers)
    assert deleted.status_code == 204
    assert "body.corrections.1.record_id" in error_fields(
        assert_problem(await act(org, request["id"], "complete"), 422)
    )
    shown = await org.client.get(f"/v1/contacts/{contact['id']}", headers=org.headers)
    assert shown.json()["last_name"] == "Tanaka"
    again = await org.client.get(f"/v1/privacy/requests/{request['id']}", headers=org.headers)
    assert again.json()["status"] == "in_progress"


async def test_restriction_locks_the_subjects_records(org: Org) -> None:
    contact = await make_contact(org)
    request = await verified(
        org, {"type": "restriction", "module": "contacts", "record_id": contact["id"]}
    )
    done = await completed(org, request["id"])
    assert done["outcome"] == {"subjects_restricted": 1}
    changed = await org.client.patch(
        f"/v1/contacts/{contact['id']}", json={"last_name": "Changed"}, headers=org.headers
    )
    problem = assert_problem(changed, 423)
    assert problem["type"].endswith("processing-restricted")
    assert "privacy_request" in problem["detail"]


async def consent_state(org: Org, contact_id: str) -> dict[str, dict[str, Any]]:
    ledger = await org.client.get(f"/v1/contacts/{contact_id}/consents", headers=org.headers)
    assert ledger.status_code == 200, ledger.text
    events = {event["id"]: event for event in ledger.json()["events"]}
    return {
        state["purpose"]: {**state, "channel": events[state["event_id"]]["channel"]}
        for state in ledger.json()["state"]
    }


@pytest.mark.parametrize("via", ["staff", "portal"])
async def test_an_objection_withdraws_consent_to_marketing_purposes_only(
    org: Org, via: str
) -> None:
    newsletter = await create_purpose(org, marketing=True)
    offers = await create_purpose(org, name="Offers", marketing=True)
    service = await create_purpose(org, name="Service notices")
    assert newsletter["marketing"] is True and service["marketing"] is False
    email = unique_email()
    contact = await make_contact(org, email)
    for purpose in (newsletter, offers, service):
        granted = await org.client.post(
            f"/v1/contacts/{contact['id']}/consents",
            json={"purpose": purpose["key"], "status": "granted"},
            headers=org.headers,
        )
        assert granted.status_code == 201, granted.text

    if via == "staff":
        request = await verified(org, {"type": "objection", "email": email})
    else:
        async with org.app.state.sessionmaker() as session:
            filed_ = await file_request(
                session,
                org.id,
                type="objection",
                email=email,
                received_at=datetime.now(UTC),
                details="Stop sending me offers.",
                actor=Actor.system(org.id),
                verified_by="portal",
            )
            await commit(session)
        request = {"id": str(filed_.id)}
    done = await completed(org, request["id"])
    assert done["outcome"] == {"consents_withdrawn": 2, "marketing_purposes": 2}
    state = await consent_state(org, contact["id"])
    assert state[newsletter["key"]]["status"] == "withdrawn"
    assert state[offers["key"]]["status"] == "withdrawn"
    assert state[newsletter["key"]]["channel"] == via
    assert state[service["key"]]["status"] == "granted"


async def test_an_erasure_request_erases_and_leaves_nothing_of_itself_readable(
    org: Org, database_url: str
) -> None:
    email = unique_email("zephyrine")
    details = "Please erase everything, Quillfeather" + email.split("@")[0]
    reason = "Our archive is offsite, Quillfeather" + email.split("@")[0]
    contact = await make_contact(org, email, first_name="Zephyrine")
    request = await verified(org, {"type": "erasure", "email": email, "details": details})
    extended = await act(org, request["id"], "extend", {"months": 1, "reason": reason})
    assert extended.status_code == 200, extended.text

    done = await completed(org, request["id"])
    assert done["status"] == "completed"
    assert done["outcome"] == {"subjects_erased": 1}
    (receipt_id,) = done["receipt_ids"]
    # What the request said was sealed under the subject's key: gone with it.
    assert done["personal_data_erased"] is True
    assert done["email"] is None and done["details"] is None and done["extension_reason"] is None

    receipt = await org.client.get(
        f"/v1/privacy/requests/{request['id']}/receipt", headers=org.headers
    )
    assert receipt.status_code == 200, receipt.text
    (one,) = receipt.json()["receipts"]
    assert one["id"] == receipt_id and one["subject_id"] == request["subject_ids"][0]
    assert one["records"]["contacts"] == [contact["id"]]
    assert (
        await org.client.get(f"/v1/contacts/{contact['id']}", headers=org.headers)
    ).status_code == 410
    # The interim path and the request share one erasure: the receipt is there too.
    interim = await org.client.get(f"/v1/privacy/erasures/{receipt_id}", headers=org.headers)
    assert interim.status_code == 200

    # No byte of the database holds the email, the details or the reason.
    dumped = await database_bytes(database_url)
    assert hits(dumped, [email, details, reason]) == []


async def test_partner_tokens_need_the_privacy_scopes(org: Org, other_org: Org) -> None:
    email = unique_email()
    await make_contact(org, email)
    reader = await register(org, scopes=["crm.privacy.read"])
    writer = await register(org, scopes=["crm.privacy.read", "crm.privacy.write"])
    reading = await token(org.client, reader)
    writing = await token(org.client, writer)

    assert assert_problem(await file(org, {"type": "access", "email": email}, reading), 403)[
        "type"
    ].endswith("insufficient-scope")
    created = await file(org, {"type": "access", "email": email}, writing)
    assert created.status_code == 201, created.text
    assert created.json()["channel"] == "partner"
    assert created.json()["filed_by_type"] == "client"
    assert created.json()["filed_by_id"] == writer.client_id
    listed = await org.client.get("/v1/privacy/requests", headers=reading)
    assert [item["id"] for item in listed.json()["data"]] == [created.json()["id"]]
    assert_problem(
        await org.client.post(
            f"/v1/privacy/requests/{created.json()['id']}/verify", json={}, headers=reading
        ),
        403,
    )
    # Another organization's partner sees nothing of it.
    outsider = await token(other_org.client, await register(other_org, scopes=["crm.privacy.read"]))
    assert_problem(
        await org.client.get(f"/v1/privacy/requests/{created.json()['id']}", headers=outsider),
        404,
    )
