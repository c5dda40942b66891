"""Attacks on GDPR Art. 19 for partner clients that only read: every part of a privacy request
that is the data subject's (sealed under their key: the email, the details, the corrections,
the staff's verification note, the extension and rejection reasons) makes the partner shown it
a recipient, whichever of them the request holds. A request on a contact without an email
shows no email, yet its corrections or notes are the contact's data all the same."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import Org, count_rows, unique_email
from tests.oauth.conftest import register, token
from tests.privacy.conftest import act, completed, filed, make_contact, verified

READER_SCOPES = ["crm.contacts.read", "crm.privacy.read"]


async def contact_without_email(org: Org) -> dict[str, Any]:
    response = await org.client.post(
        "/v1/contacts", json={"last_name": "Okonkwo", "phone": "+442079460321"}, headers=org.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["email"] is None
    return dict(response.json())


async def partners_told_of_erasure(org: Org, contact: dict[str, Any]) -> set[str]:
    """Erase the contact through a request; the partner clients it lists as recipients."""
    erasure = await filed(
        org, {"type": "erasure", "module": "contacts", "record_id": contact["id"]}
    )
    await _ok(await act(org, erasure["id"], "verify", {}))
    done = await completed(org, erasure["id"])
    return {item["id"] for item in done["recipients"] if item["kind"] == "oauth_client"}


async def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


async def corrections(org: Org, contact: dict[str, Any]) -> tuple[str, str]:
    request = await filed(
        org,
        {
            "type": "rectification",
            "module": "contacts",
            "record_id": contact["id"],
            "corrections": [
                {
                    "module": "contacts",
                    "record_id": contact["id"],
                    "fields": {"first_name": "Hortensia"},
                }
            ],
        },
    )
    return request["id"], "Hortensia"


async def verification_note(org: Org, contact: dict[str, Any]) -> tuple[str, str]:
    request = await filed(org, {"type": "access", "module": "contacts", "record_id": contact["id"]})
    note = "Passport 5500912 seen at the desk"
    await _ok(await act(org, request["id"], "verify", {"note": note}))
    return request["id"], note


async def extension_reason(org: Org, contact: dict[str, Any]) -> tuple[str, str]:
    request = await filed(org, {"type": "access", "module": "contacts", "record_id": contact["id"]})
    await _ok(await act(org, request["id"], "verify", {}))
    reason = "Her files from the Leeds branch are still on paper"
    await _ok(await act(org, request["id"], "extend", {"months": 1, "reason": reason}))
    return request["id"], reason


async def rejection_reason(org: Org, contact: dict[str, Any]) -> tuple[str, str]:
    request = await filed(org, {"type": "access", "module": "contacts", "record_id": contact["id"]})
    reason = "She asked three times this week about her divorce file"
    await _ok(await act(org, request["id"], "reject", {"reason": reason}))
    return request["id"], reason


Said = Callable[[Org, dict[str, Any]], Awaitable[tuple[str, str]]]


@pytest.mark.parametrize(
    "said",
    [corrections, verification_note, extension_reason, rejection_reason],
    ids=lambda said: said.__name__,
)
@pytest.mark.parametrize("how", ["get", "list"])
async def test_a_partner_shown_what_a_request_says_is_a_recipient_without_an_email(
    org: Org, said: Said, how: str
) -> None:
    reader = await register(org, name="Help desk", scopes=READER_SCOPES)
    contact = await contact_without_email(org)
    request_id, secret = await said(org, contact)
    headers = await token(org.client, reader)
    if how == "get":
        shown = await _ok(
            await org.client.get(f"/v1/privacy/requests/{request_id}", headers=headers)
        )
        assert secret in str(shown)
    else:
        page = await _ok(await org.client.get("/v1/privacy/requests?limit=200", headers=headers))
        [shown] = [item for item in page["data"] if item["id"] == request_id]
        assert secret in str(shown)
    assert shown["email"] is None and shown["details"] is None

    assert await partners_told_of_erasure(org, contact) == {reader.client_id}


async def test_a_partner_shown_a_contacts_legal_basis_is_a_recipient(org: Org) -> None:
    """The legal-basis history (basis, the legitimate-interests assessment, who set it) is
    the contact's data, like the record that carries it: reading it makes a recipient."""
    reader = await register(org, name="Compliance tool", scopes=READER_SCOPES)
    contact = await contact_without_email(org)
    assessment = "She attends our Leeds seminars every spring; a reminder is expected."
    response = await org.client.put(
        f"/v1/contacts/{contact['id']}/legal-basis",
        json={"basis": "legitimate_interests", "assessment": assessment},
        headers=org.headers,
    )
    assert response.status_code == 200, response.text
    headers = await token(org.client, reader)
    shown = await _ok(
        await org.client.get(f"/v1/contacts/{contact['id']}/legal-basis", headers=headers)
    )
    assert shown["current"]["assessment"] == assessment

    assert await partners_told_of_erasure(org, contact) == {reader.client_id}


async def test_a_refused_read_records_no_disclosure_and_a_later_read_still_does(
    org: Org,
) -> None:
    """A response that fails after the policy noted the subject (a receipt of an event that
    is not theirs: 404) rolls the note back, and is not remembered as written: the partner's
    next, successful read is recorded."""
    reader = await register(org, scopes=[*READER_SCOPES, "crm.consent.read"])
    headers = await token(org.client, reader)
    contact = await contact_without_email(org)
    missing = f"/v1/contacts/{contact['id']}/consents/{uuid.uuid4()}/receipt"
    assert (await org.client.get(missing, headers=headers)).status_code == 404
    assert await count_rows(org.app, "partner_disclosures", org.id) == 0
    await _ok(await org.client.get(f"/v1/contacts/{contact['id']}", headers=headers))
    assert await count_rows(org.app, "partner_disclosures", org.id) == 1


async def test_another_organizations_partner_is_never_a_recipient(org: Org, other_org: Org) -> None:
    """The same person in two organizations: a partner of one reading them there is not
    listed when the other organization erases them."""
    email = unique_email("twoorgs")
    theirs = await make_contact(other_org, email)
    outsider = await register(other_org, scopes=READER_SCOPES)
    await _ok(
        await org.client.get(
            f"/v1/contacts/{theirs['id']}", headers=await token(other_org.client, outsider)
        )
    )
    ours = await make_contact(org, email)
    reader = await register(org, scopes=READER_SCOPES)
    await _ok(
        await org.client.get(f"/v1/contacts/{ours['id']}", headers=await token(org.client, reader))
    )
    # The outsider's token reaches nothing of this organization.
    outsider_headers = await token(other_org.client, outsider)
    assert (
        await org.client.get(f"/v1/contacts/{ours['id']}", headers=outsider_headers)
    ).status_code == 404

    erasure = await verified(org, {"type": "erasure", "email": email})
    done = await completed(org, erasure["id"])
    assert {item["id"] for item in done["recipients"]} == {reader.client_id}
    # The other organization's record and its partner's disclosure stay.
    assert await count_rows(other_org.app, "partner_disclosures", other_org.id) == 1


def partner_principal(org: Org, client_id: str) -> Any:
    """The principal a partner's token resolves to (oauth/service.py), for a read held open
    across another request."""
    from crm_service.security.principal import Principal
    from crm_service.security.scopes import Scope

    return Principal(
        organization_id=org.id,
        user_id=None,
        scopes=frozenset({Scope.CONTACTS_READ}),
        client_id=client_id,
        permissions=None,
    )


async def test_a_read_whose_subject_is_erased_before_it_commits_sends_nothing(org: Org) -> None:
    """The race: a partner's read has the contact's values in hand, the subject's erasure
    completes, then the read commits. It is refused (503 `changed-meanwhile`), so the partner
    that the erasure could not list received nothing."""
    from crm_service.db.session import commit, rollback
    from crm_service.records.contacts.service import contacts
    from crm_service.records.disclosure import ChangedMeanwhile

    partner = await register(org, name="Slow reader", scopes=READER_SCOPES)
    email = unique_email("racing")
    contact = await make_contact(org, email, first_name="Euphemia")
    request = await verified(org, {"type": "erasure", "email": email})
    async with org.app.state.sessionmaker() as session:
        read = await contacts.get(
            session=session,
            principal=partner_principal(org, partner.client_id),
            record_id=uuid.UUID(contact["id"]),
        )
        assert read.first_name == "Euphemia"
        done = await completed(org, request["id"])
        assert done["recipients"] == []
        with pytest.raises(ChangedMeanwhile):
            await commit(session)
        await rollback(session)
    assert await count_rows(org.app, "partner_disclosures", org.id) == 0


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_read_while_a_privacy_request_holds_the_subject_is_refused(org: Org) -> None:
    """A privacy request being carried out holds the subject's keys until it commits; a
    partner's read of the subject meanwhile answers 503 `changed-meanwhile` with Retry-After,
    writes nothing, and succeeds once asked again."""
    from sqlalchemy import text

    partner = await register(org, name="Impatient reader", scopes=READER_SCOPES)
    headers = await token(org.client, partner)
    contact = await make_contact(org, unique_email("held"))
    async with org.app.state.engine.connect() as holder:
        await holder.execute(
            text(
                "SELECT id FROM data_keys WHERE organization_id = :org AND subject_id IN "
                "(SELECT subject_id FROM contacts WHERE id = :id) FOR UPDATE"
            ),
            {"org": org.id, "id": uuid.UUID(contact["id"])},
        )
        refused = await org.client.get(f"/v1/contacts/{contact['id']}", headers=headers)
        assert refused.status_code == 503, refused.text
        assert refused.json()["type"].endswith("/changed-meanwhile")
        assert refused.headers["retry-after"] == "1"
        assert await count_rows(org.app, "partner_disclosures", org.id) == 0
        await holder.rollback()
    again = await org.client.get(f"/v1/contacts/{contact['id']}", headers=headers)
    assert again.status_code == 200, again.text
    assert await count_rows(org.app, "partner_disclosures", org.id) == 1


async def test_reads_that_show_nothing_of_an_erased_subject_are_not_refused(org: Org) -> None:
    """The race guard refuses a read whose subject lost its keys after the read; a read that
    shows nothing of an erased subject (their record's history, a request's unreadable copy)
    notes nothing of them and is answered as usual."""
    partner = await register(org, name="Auditor", scopes=READER_SCOPES)
    headers = await token(org.client, partner)
    # A request filed when nothing was held, completed after a contact with the email came:
    # its own key is destroyed, the contact's copy still opens.
    email = unique_email("latecomer")
    request = await verified(org, {"type": "access", "email": email})
    await make_contact(org, email)
    done = await completed(org, request["id"])
    assert len(done["subject_ids"]) == 2
    shown = await _ok(
        await org.client.get(f"/v1/privacy/requests/{request['id']}", headers=headers)
    )
    assert shown["email"] == email
    # An erased contact's history: entries without values.
    erased = await make_contact(org, unique_email("gone"))
    erasure = await verified(
        org, {"type": "erasure", "module": "contacts", "record_id": erased["id"]}
    )
    await completed(org, erasure["id"])
    history = await org.client.get(f"/v1/contacts/{erased['id']}/history", headers=headers)
    assert history.status_code == 200, history.text
    assert await count_rows(org.app, "partner_disclosures", org.id) == 1
