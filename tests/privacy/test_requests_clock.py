"""The legal clock of privacy requests: extensions of one or two months counted from the
original due date, only before it, the reason mailed to the requester; the overdue and
due-soon lists; verification before completion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crm_service.clock import FixedClock
from crm_service.privacy.requests import add_months
from tests.conftest import Org, assert_problem, unique_email
from tests.consent.conftest import mails
from tests.privacy.conftest import act, completed, filed, make_contact, verified


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def test_extensions_count_from_the_original_due_date_within_the_first_month(
    org: Org, clock: FixedClock
) -> None:
    email = unique_email()
    await make_contact(org, email)
    clock.at = at("2026-02-10T12:00:00")
    request = await filed(
        org, {"type": "access", "email": email, "received_at": "2026-01-31T10:00:00Z"}
    )
    assert request["due_at"].startswith("2026-02-28T10:00:00")

    assert_problem(await act(org, request["id"], "extend", {"months": 3, "reason": "x"}), 422)
    assert_problem(await act(org, request["id"], "extend", {"months": 0, "reason": "x"}), 422)
    assert_problem(await act(org, request["id"], "extend", {"months": 1}), 422)

    reason = "Your request covers eleven years of records held in two archives."
    once = await act(org, request["id"], "extend", {"months": 1, "reason": reason})
    assert once.status_code == 200, once.text
    # From the original due date (28 February), not from receipt: 28 March, not 31 March.
    assert once.json()["due_at"].startswith("2026-03-28T10:00:00")
    assert once.json()["original_due_at"].startswith("2026-02-28T10:00:00")
    assert once.json()["extended_months"] == 1
    assert once.json()["extension_reason"] == reason

    # Two months in all at most.
    too_many = await act(org, request["id"], "extend", {"months": 2, "reason": "more"})
    assert assert_problem(too_many, 409)["type"].endswith("extension-refused")
    twice = await act(org, request["id"], "extend", {"months": 1, "reason": reason})
    assert twice.json()["due_at"].startswith("2026-04-28T10:00:00")

    # The requester is told why, in their mail.
    sent = await mails(org.app, org.id, "privacy_request_extended")
    assert [mail.to for mail in sent] == [email, email]
    assert reason in sent[0].text and "2026-03-28" in sent[0].text
    assert "2026-04-28" in sent[1].text
    assert len(once.json()["notices"]) == 1 and len(twice.json()["notices"]) == 2

    # After the original due date no extension is possible any more.
    late = await filed(
        org, {"type": "erasure", "email": email, "received_at": "2026-01-05T09:00:00Z"}
    )
    clock.at = at("2026-02-05T09:00:00")  # the due date itself
    refused = await act(org, late["id"], "extend", {"months": 1, "reason": reason})
    assert "first month" in assert_problem(refused, 409)["detail"]
    clock.at = at("2026-02-05T08:59:00")
    assert (
        (await act(org, late["id"], "extend", {"months": 2, "reason": reason}))
        .json()["due_at"]
        .startswith("2026-04-05T09:00:00")
    )


def test_extended_due_dates_keep_to_calendar_months() -> None:
    assert add_months(at("2026-02-28T10:00:00"), 2) == at("2026-04-28T10:00:00")
    assert add_months(at("2026-03-31T00:00:00"), 2) == at("2026-05-31T00:00:00")
    assert add_months(at("2026-12-31T00:00:00"), 2) == at("2027-02-28T00:00:00")
    assert add_months(at("2027-12-31T00:00:00"), 2) == at("2028-02-29T00:00:00")
    assert add_months(at("2026-11-30T00:00:00"), 1) == at("2026-12-30T00:00:00")


async def test_overdue_and_due_soon_lists_follow_the_clock(org: Org, clock: FixedClock) -> None:
    email = unique_email()
    await make_contact(org, email)
    now = clock.now()

    async def received(days_ago: int, kind: str = "access") -> str:
        when = (now - timedelta(days=days_ago)).isoformat()
        return (await filed(org, {"type": kind, "email": email, "received_at": when}))["id"]

    overdue = await received(40)
    soon = await received(25, "erasure")
    later = await received(1)

    async def listed(**query: Any) -> list[str]:
        response = await org.client.get("/v1/privacy/requests", params=query, headers=org.headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["data"]]

    assert await listed() == [later, soon, overdue]
    assert await listed(overdue="true") == [overdue]
    assert await listed(overdue="false") == [later, soon]
    due_soon = (now + timedelta(days=10)).isoformat()
    assert await listed(due_before=due_soon) == [soon, overdue]
    assert await listed(type="erasure") == [soon]
    assert await listed(status="awaiting_verification") == [later, soon, overdue]
    one = await org.client.get(f"/v1/privacy/requests/{overdue}", headers=org.headers)
    assert one.json()["overdue"] is True

    # Ten days on, the one due soon is overdue too; a rejected request is on no such list.
    clock.advance(days=10)
    org.headers = await org.login(org.admin_email)  # the old session has expired meanwhile
    assert await listed(overdue="true") == [soon, overdue]
    rejected = await act(org, overdue, "reject", {"reason": "We hold no data about you."})
    assert rejected.status_code == 200, rejected.text
    assert await listed(overdue="true") == [soon]
    assert await listed(status="rejected") == [overdue]

    paged = await org.client.get("/v1/privacy/requests", params={"limit": 2}, headers=org.headers)
    first = paged.json()
    rest = await org.client.get(
        "/v1/privacy/requests",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=org.headers,
    )
    assert [i["id"] for i in first["data"] + rest.json()["data"]] == [later, soon, overdue]
    assert_problem(
        await org.client.get("/v1/privacy/requests", params={"status": "x"}, headers=org.headers),
        422,
    )


async def test_completion_needs_a_verified_identity(org: Org) -> None:
    email = unique_email()
    await make_contact(org, email)
    request = await filed(org, {"type": "access", "email": email})
    refused = assert_problem(await act(org, request["id"], "complete"), 409)
    assert refused["type"].endswith("request-unverified")
    assert "verif" in refused["detail"]
    shown = await org.client.get(f"/v1/privacy/requests/{request['id']}", headers=org.headers)
    assert shown.json()["status"] == "awaiting_verification"

    confirmed = await act(org, request["id"], "verify", {"note": "called back on file number"})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "in_progress"
    assert confirmed.json()["verified_by"] == "staff"
    assert confirmed.json()["verified_by_id"] == str(org.admin_id)
    assert confirmed.json()["verification_note"] == "called back on file number"
    assert_problem(await act(org, request["id"], "verify", {}), 409)

    done = await completed(org, request["id"])
    assert done["status"] == "completed" and done["completed_at"] is not None
    closed = assert_problem(await act(org, request["id"], "complete"), 409)
    assert closed["type"].endswith("request-closed")
    assert_problem(await act(org, request["id"], "reject", {"reason": "late"}), 409)
    assert_problem(await act(org, request["id"], "extend", {"months": 1, "reason": "x"}), 409)


async def test_a_rejection_is_mailed_with_its_reason_in_the_requesters_language(
    org: Org,
) -> None:
    email = unique_email()
    await make_contact(org, email)
    request = await verified(org, {"type": "erasure", "email": email, "language": "ja"})
    reason = "法令により保存義務のある取引記録のため、消去できません。"
    response = await act(org, request["id"], "reject", {"reason": reason})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "rejected" and body["rejected_at"] is not None
    assert body["rejection_reason"] == reason
    assert body["closed_by_id"] == str(org.admin_id)
    (mail,) = await mails(org.app, org.id, "privacy_request_rejected")
    assert mail.to == email and reason in mail.text and "個人データの消去" in mail.text
    assert_problem(await act(org, request["id"], "reject", {"reason": ""}), 422)
    assert_problem(await act(org, request["id"], "reject", {"reason": "again"}), 409)
