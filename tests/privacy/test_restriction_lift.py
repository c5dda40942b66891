"""Ending a restriction, and who may see and end one.

`POST /v1/privacy/restrictions/{subject_id}/lift` tells the subject first (a mail in the
outbox, written before the lock is deleted, in the same transaction), then their records are
listed, read, changed and exported again. `GET /v1/privacy/restrictions` lists restricted
subjects by id, never a value. Another organization's subject, an unknown one or one not
restricted is 404; a Standard user is refused; a partner token reads a restricted record as
423 (partners never hold `view_restricted`); like privacy requests, a partner with the
privacy scopes may list and lift restrictions, one without them may not.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import event

from crm_service.audit.service import Actor
from crm_service.errors import NotFound
from crm_service.privacy.restriction import restrict_subject
from tests.access.conftest import (
    PERSON_MODULES,
    add_member,
    audit_events,
    builtin_profiles,
    create_record,
    listed_ids,
    set_sharing,
)
from tests.conftest import Org, assert_problem
from tests.consent.conftest import mails
from tests.oauth.conftest import EVERY_RECORD_SCOPE, register, token
from tests.privacy.restricting import RESTRICTED_TYPE, restrict, subject_of


def lift_path(subject_id: uuid.UUID | str) -> str:
    return f"/v1/privacy/restrictions/{subject_id}/lift"


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_lifting_tells_the_subject_first_then_everything_is_visible_again(
    org: Org, module: str
) -> None:
    await set_sharing(org, "read_write")
    record = await create_record(org, module)
    subject_id = await restrict(org, module, record["id"])
    standard = await add_member(org, profile_id=(await builtin_profiles(org))["standard"])
    path = f"/v1/{module}/{record['id']}"
    assert (await org.client.get(path, headers=standard.headers)).status_code == 423
    assert record["id"] not in await listed_ids(org, module, org.headers)

    sent: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    engine = org.app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        lifted = await org.client.post(lift_path(subject_id), headers=org.headers)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert lifted.status_code == 200, lifted.text
    assert lifted.json()["subject_id"] == str(subject_id) and lifted.json()["subject_told"]

    told = [i for i, s in enumerate(sent) if s.lstrip().startswith("INSERT INTO mail_outbox")]
    gone = [i for i, s in enumerate(sent) if s.lstrip().startswith("DELETE FROM subject_proc")]
    assert len(told) == 1 and len(gone) == 1 and told[0] < gone[0], "told before it is lifted"
    (mail,) = await mails(org.app, org.id, "restriction_lifted")
    assert mail.to == record["email"]
    assert "restriction" in mail.subject.lower() and "Article 18" in mail.text

    # Everything again: read by anyone, listed, changed, exported.
    assert (await org.client.get(path, headers=standard.headers)).status_code == 200
    assert record["id"] in await listed_ids(org, module, org.headers)
    changed = await org.client.patch(path, json={"title": "Engineer"}, headers=org.headers)
    assert changed.status_code == 200, changed.text
    exported = await org.client.get(f"/v1/{module}/export", headers=org.headers)
    assert record["id"] in exported.text

    (lift_event,) = await audit_events(org, action="privacy.restriction_lifted")
    assert lift_event["target_type"] == "data_subject"
    assert lift_event["target_id"] == str(subject_id) and lift_event["reason"] == "subject_told"
    assert lift_event["actor_id"] == str(org.admin_id)
    (restricted_event,) = await audit_events(org, action="privacy.processing_restricted")
    assert restricted_event["reason"] == "privacy_request"

    # Lifted once: not restricted any more.
    assert_problem(await org.client.post(lift_path(subject_id), headers=org.headers), 404)


async def test_the_mail_is_in_the_language_asked_for(org: Org) -> None:
    record = await create_record(org, "contacts")
    subject_id = await restrict(org, "contacts", record["id"])
    lifted = await org.client.post(
        lift_path(subject_id), params={"language": "ja"}, headers=org.headers
    )
    assert lifted.status_code == 200, lifted.text
    (mail,) = await mails(org.app, org.id, "restriction_lifted")
    assert "処理制限" in mail.subject and "第18条" in mail.text


async def test_a_subject_without_email_is_recorded_as_not_told(org: Org) -> None:
    created = await org.client.post(
        "/v1/contacts", json={"last_name": "Byron"}, headers=org.headers
    )
    assert created.status_code == 201, created.text
    subject_id = await restrict(org, "contacts", created.json()["id"])

    lifted = await org.client.post(lift_path(subject_id), headers=org.headers)

    assert lifted.status_code == 200, lifted.text
    assert lifted.json()["subject_told"] is False
    assert await mails(org.app, org.id, "restriction_lifted") == []
    (lift_event,) = await audit_events(org, action="privacy.restriction_lifted")
    assert lift_event["reason"] == "subject_unreachable"
    got = await org.client.get(f"/v1/contacts/{created.json()['id']}", headers=org.headers)
    assert got.status_code == 200


async def test_another_organizations_an_unknown_or_an_unrestricted_subject_is_404(
    org: Org, other_org: Org
) -> None:
    theirs = await create_record(other_org, "contacts")
    their_subject = await restrict(other_org, "contacts", theirs["id"])
    ours = await create_record(org, "contacts")

    for subject_id in (their_subject, uuid.uuid4(), await subject_of(org, "contacts", ours["id"])):
        assert_problem(await org.client.post(lift_path(subject_id), headers=org.headers), 404)
    # Their restriction stands, and is not in our list.
    got = await other_org.client.get(f"/v1/contacts/{theirs['id']}", headers=other_org.headers)
    assert got.status_code == 200
    assert theirs["id"] not in await listed_ids(other_org, "contacts", other_org.headers)
    listed = await org.client.get("/v1/privacy/restrictions", headers=org.headers)
    assert listed.json()["data"] == []
    assert await mails(other_org.app, other_org.id, "restriction_lifted") == []

    # Restricting names a subject of the organization too.
    async with org.app.state.sessionmaker() as session:
        with pytest.raises(NotFound):
            await restrict_subject(
                session,
                org.id,
                their_subject,
                reason="privacy_request",
                request_id=None,
                actor=Actor.system(org.id),
                now=datetime.now(UTC),
            )


async def test_a_standard_user_neither_lists_nor_lifts(org: Org) -> None:
    record = await create_record(org, "contacts")
    subject_id = await restrict(org, "contacts", record["id"])
    standard = await add_member(org, profile_id=(await builtin_profiles(org))["standard"])

    assert_problem(await org.client.post(lift_path(subject_id), headers=standard.headers), 403)
    assert_problem(await org.client.get("/v1/privacy/restrictions", headers=standard.headers), 403)
    assert await mails(org.app, org.id, "restriction_lifted") == []
    assert record["id"] not in await listed_ids(org, "contacts", org.headers), "still restricted"


async def test_a_partner_token_reads_a_restricted_record_as_423_and_lifts_only_with_the_scope(
    org: Org,
) -> None:
    restricted = await create_record(org, "contacts")
    other = await create_record(org, "contacts")
    subject_id = await restrict(org, "contacts", restricted["id"])
    partner = await register(
        org, scopes=[*EVERY_RECORD_SCOPE, "crm.privacy.read", "crm.privacy.write", "crm.export"]
    )
    headers = await token(org.client, partner)

    refused = await org.client.get(f"/v1/contacts/{restricted['id']}", headers=headers)
    problem = assert_problem(refused, 423)
    assert problem["type"] == RESTRICTED_TYPE and restricted["email"] not in refused.text
    assert (await org.client.get(f"/v1/contacts/{other['id']}", headers=headers)).status_code == 200
    listed = await listed_ids(org, "contacts", headers)
    assert other["id"] in listed and restricted["id"] not in listed

    outsider = await register(org, scopes=[*EVERY_RECORD_SCOPE, "crm.export"])
    outsider_headers = await token(org.client, outsider)
    assert_problem(await org.client.post(lift_path(subject_id), headers=outsider_headers), 403)
    assert_problem(await org.client.get("/v1/privacy/restrictions", headers=outsider_headers), 403)
    # A privacy tool with the privacy scopes handles restrictions as it handles requests.
    listed_restrictions = await org.client.get("/v1/privacy/restrictions", headers=headers)
    assert listed_restrictions.status_code == 200, listed_restrictions.text
    assert str(subject_id) in [item["subject_id"] for item in listed_restrictions.json()["data"]]
    lifted = await org.client.post(lift_path(subject_id), headers=headers)
    assert lifted.status_code == 200, lifted.text
    assert (
        await org.client.get(f"/v1/contacts/{restricted['id']}", headers=headers)
    ).status_code == 200


async def test_restricted_subjects_are_listed_by_id_paged_and_without_values(org: Org) -> None:
    records = [await create_record(org, "contacts") for _ in range(3)]
    subjects = [await restrict(org, "contacts", record["id"]) for record in records]

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = await org.client.get("/v1/privacy/restrictions", params=params, headers=org.headers)
        assert page.status_code == 200, page.text
        for record in records:
            assert record["email"] not in page.text and record["last_name"] not in page.text
        body = page.json()
        for item in body["data"]:
            assert set(item) == {"subject_id", "since", "reason", "request_id"}
            assert item["reason"] == "privacy_request" and item["request_id"] is not None
        seen += [item["subject_id"] for item in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(s) for s in reversed(subjects)], "most recently restricted first"
    assert_problem(
        await org.client.get(
            "/v1/privacy/restrictions", params={"cursor": "garbage"}, headers=org.headers
        ),
        422,
    )
