"""Users join by invitation, and inviting reveals nothing about other organizations: an
administrator gets the same answer, the same mail goes out and the same pending invitation
stays, whether or not the address has an account elsewhere. Only the address's owner, with
the mailed token, learns that."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update

from crm_service.auth.models import UserInvitation
from crm_service.mail.models import OutboxMessage
from tests.conftest import (
    PASSWORD,
    Org,
    accept_invitation,
    assert_problem,
    count_rows,
    mailed_invitation_token,
    unique_email,
)
from tests.mail.conftest import SmtpServer, send_all_due_mail

# What differs between any two invitations, known address or not.
PER_INVITATION = {"id", "email", "created_at", "expires_at"}
# `ratelimit` is the caller's own remaining quota: one less for every request it makes,
# whatever the address (checked on its own below).
PER_RESPONSE_HEADERS = {"location", "x-request-id", "content-length", "date", "ratelimit"}


def _shape(response: httpx.Response) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {k: v for k, v in response.headers.items() if k not in PER_RESPONSE_HEADERS}
    body = {k: v for k, v in response.json().items() if k not in PER_INVITATION}
    return response.status_code, headers, body


async def _invite(org: Org, email: str, **fields: Any) -> httpx.Response:
    return await org.client.post("/v1/users", json={"email": email, **fields}, headers=org.headers)


async def test_inviting_an_address_of_another_organization_answers_as_for_an_unknown_one(
    org: Org, other_org: Org
) -> None:
    known = other_org.admin_email  # has an account, in the other organization
    unknown = unique_email("nobody")
    # Alternate, and compare whole answers: status, headers, body.
    answers = [await _invite(org, email) for email in (known, unknown, known.upper(), unknown)]
    shapes = [_shape(answer) for answer in answers]
    assert shapes[0] == shapes[1] == shapes[2] == shapes[3], shapes
    remaining = [int(a.headers["ratelimit"].split(";r=")[1].split(";")[0]) for a in answers]
    assert remaining == [remaining[0] - n for n in range(4)]
    status, headers, body = shapes[0]
    assert status == 202
    assert body["status"] == "pending" and body["organization_id"] == str(org.id)
    assert set(answers[0].json()) == set(answers[1].json())
    assert len(answers[0].content) - len(known) == len(answers[1].content) - len(unknown)
    assert answers[0].headers["location"].startswith("/v1/users/invitations/")
    # Inviting again replaced the earlier invitation (one per address).
    assert answers[0].json()["id"] == answers[2].json()["id"]

    # What the administrator sees afterwards is alike too: two pending invitations, no users.
    listed = await org.client.get("/v1/users/invitations", headers=org.headers)
    assert listed.status_code == 200
    rows = {row["email"]: row for row in listed.json()["data"]}
    assert {rows[known.casefold()]["status"], rows[unknown.casefold()]["status"]} == {"pending"}
    users = await org.client.get("/v1/users", headers=org.headers)
    assert {user["email"] for user in users.json()["data"]} == {org.admin_email.casefold()}
    # Each address got its invitation mail.
    for email in (known, unknown):
        assert await mailed_invitation_token(org.app, org.id, email)

    # The other organization's invitations and users are untouched and unseen.
    theirs = await other_org.client.get("/v1/users/invitations", headers=other_org.headers)
    assert theirs.json()["data"] == []


async def test_an_address_already_in_ones_own_organization_is_a_conflict(org: Org) -> None:
    colleague = unique_email("colleague")
    assert (await _invite(org, colleague)).status_code == 202
    assert (await accept_invitation(org, colleague)).status_code == 201
    before = await count_rows(org.app, "mail_outbox", org.id)
    assert_problem(await _invite(org, colleague.upper()), 409)
    assert_problem(await _invite(org, org.admin_email), 409)
    # A refused invitation mails nothing.
    assert await count_rows(org.app, "mail_outbox", org.id) == before


async def test_the_invited_person_chooses_a_password_and_signs_in(org: Org) -> None:
    email = unique_email("newcomer")
    invited = await _invite(org, email, full_name="New Comer")
    assert invited.status_code == 202, invited.text
    # Nobody can sign in as the invited address before it is accepted.
    login = await org.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(login, 401)

    token = await mailed_invitation_token(org.app, org.id, email)
    accepted = await org.client.post(
        "/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert accepted.status_code == 201, accepted.text
    user = accepted.json()
    assert (user["email"], user["full_name"], user["organization_id"]) == (
        email,
        "New Comer",
        str(org.id),
    )
    assert user["is_admin"] is False
    assert accepted.headers["location"] == f"/v1/users/{user['id']}"
    assert "password" not in accepted.text
    headers = await org.login(email)
    me = await org.client.get("/v1/me", headers=headers)
    assert me.status_code == 200 and me.json()["id"] == user["id"]
    listed = await org.client.get("/v1/users/invitations", headers=org.headers)
    [row] = [row for row in listed.json()["data"] if row["email"] == email]
    assert row["status"] == "accepted"

    # The link works once.
    again = await org.client.post(
        "/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert assert_problem(again, 404)["type"].endswith("invitation-invalid")


async def test_the_owner_of_a_registered_address_is_told_and_nothing_changes(
    org: Org, other_org: Org
) -> None:
    known = other_org.admin_email
    assert (await _invite(org, known)).status_code == 202
    token = await mailed_invitation_token(org.app, org.id, known)
    refused = await org.client.post(
        "/v1/auth/invitations/accept", json={"token": token, "password": "a new password here"}
    )
    body = assert_problem(refused, 409)
    assert body["type"].endswith("address-registered")
    assert known not in refused.text
    # Their account is as it was: same organization, same password.
    headers = await other_org.login(known)
    me = await other_org.client.get("/v1/me", headers=headers)
    assert me.json()["organization_id"] == str(other_org.id)
    # The inviting organization still sees a pending invitation, nothing more.
    listed = await org.client.get("/v1/users/invitations", headers=org.headers)
    [row] = [row for row in listed.json()["data"] if row["email"] == known.casefold()]
    assert row["status"] == "pending"


async def test_a_replaced_or_expired_link_does_not_work(org: Org, app: Any) -> None:
    email = unique_email("late")
    assert (await _invite(org, email)).status_code == 202
    first = await mailed_invitation_token(org.app, org.id, email)
    assert (await _invite(org, email, language="ja")).status_code == 202
    second = await mailed_invitation_token(org.app, org.id, email)
    assert first != second
    stale = await org.client.post(
        "/v1/auth/invitations/accept", json={"token": first, "password": PASSWORD}
    )
    assert_problem(stale, 404)

    # The link's time runs out (as if 72 hours had passed).
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(UserInvitation)
            .where(UserInvitation.organization_id == org.id, UserInvitation.email == email)
            .values(expires_at=app.state.clock.now() - timedelta(seconds=1))
        )
        await session.commit()
    expired = await org.client.post(
        "/v1/auth/invitations/accept", json={"token": second, "password": PASSWORD}
    )
    assert_problem(expired, 404)
    listed = await org.client.get("/v1/users/invitations", headers=org.headers)
    [row] = [row for row in listed.json()["data"] if row["email"] == email]
    assert row["status"] == "expired"
    unknown = await org.client.post(
        "/v1/auth/invitations/accept", json={"token": "x" * 43, "password": PASSWORD}
    )
    assert_problem(unknown, 404)


async def test_the_invitation_arrives_by_mail_and_its_link_signs_the_person_up(
    org: Org, app: Any
) -> None:
    server = SmtpServer().start()
    try:
        email = unique_email("mailed")
        assert (await _invite(org, email, language="ja")).status_code == 202
        settings = app.state.settings.model_copy(update={"smtp_url": server.url})
        # The outbox is shared with the other tests' organizations: send until it is empty.
        await send_all_due_mail(app.state.sessionmaker, settings, app.state.clock.now())
        [received] = server.inbox.to(email)
    finally:
        server.stop()
    assert "招待" in received["Subject"]
    text = received.get_body(("plain",)).get_content()
    link = re.search(r"(\S+/invitations/accept#token=([A-Za-z0-9_-]+))", text)
    assert link and link.group(1).startswith(app.state.settings.public_base_url)
    accepted = await org.client.post(
        "/v1/auth/invitations/accept", json={"token": link.group(2), "password": PASSWORD}
    )
    assert accepted.status_code == 201, accepted.text


async def test_a_refused_invitation_queues_no_mail(org: Org, app: Any) -> None:
    standard = await org.add_user()
    before = await count_rows(app, OutboxMessage.__tablename__, org.id)
    refused = await org.client.post(
        "/v1/users", json={"email": unique_email(), "is_admin": True}, headers=standard
    )
    assert_problem(refused, 403)
    assert await count_rows(app, OutboxMessage.__tablename__, org.id) == before
