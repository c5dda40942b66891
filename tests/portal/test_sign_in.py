"""Signing in to the privacy portal: the one-time code (single use, ten minutes on the app's
clock, five attempts), one answer for known and unknown addresses, the throttles, the
session cookie, sign-out and expiry, and the organization boundary."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_service.audit.models import AuditEvent
from crm_service.clock import FixedClock
from tests.conftest import Org, database_bytes, unique_email
from tests.consent.conftest import mails
from tests.portal.conftest import (
    ask_code,
    enter_code,
    hidden,
    mailed_codes,
    person,
    sign_in,
    visitor_client,
)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_a_known_address_gets_a_code_and_signs_in(
    org: Org, browser: httpx.AsyncClient
) -> None:
    contact = await person(org, first_name="Ada", last_name="Lovelace")
    page = await ask_code(browser, org.id, contact["email"])
    assert page.status_code == 200
    assert "Enter your code" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    [code] = await mailed_codes(org, contact["email"])

    signed = await enter_code(browser, org.id, page, contact["email"], code)
    assert signed.status_code == 303
    assert signed.headers["location"] == f"/portal/{org.id}/data"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("crm_portal=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", f"path=/portal/{org.id}"} <= flags
    # Served over plain http (the embedded default): a Secure cookie would never come back.
    assert "secure" not in flags
    assert "max-age=7200" in flags

    data = await browser.get(f"/portal/{org.id}/data")
    assert data.status_code == 200
    assert "Lovelace" in data.text and contact["email"] in data.text
    async with org.app.state.sessionmaker() as session:
        actions = (
            await session.execute(
                select(AuditEvent.action, AuditEvent.actor_type).where(
                    AuditEvent.organization_id == org.id, AuditEvent.action.like("portal.%")
                )
            )
        ).all()
    assert [tuple(row) for row in actions] == [("portal.signed_in", "subject")]


def _normalized(page: httpx.Response, email: str) -> str:
    text = page.text.replace(email, "EMAIL")
    return re.sub(r'name="sign_in" value="[^"]*"', 'name="sign_in" value="TOKEN"', text)


async def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    org: Org, browser: httpx.AsyncClient
) -> None:
    known = await person(org)
    unknown = unique_email("stranger")
    known_page = await ask_code(browser, org.id, known["email"])
    unknown_page = await ask_code(browser, org.id, unknown)
    assert (known_page.status_code, unknown_page.status_code) == (200, 200)
    assert _normalized(known_page, known["email"]) == _normalized(unknown_page, unknown)
    assert known_page.headers.keys() == unknown_page.headers.keys()
    assert await mailed_codes(org, unknown) == []
    assert len(await mailed_codes(org, known["email"])) == 1
    # And the code page answers an unknown address's attempts exactly like a wrong code.
    tried = await enter_code(browser, org.id, unknown_page, unknown, "123456")
    wrong = await enter_code(browser, org.id, known_page, known["email"], "000000")
    assert (tried.status_code, wrong.status_code) == (200, 200)
    assert _normalized(tried, unknown) == _normalized(wrong, known["email"])
    assert "crm_portal=" not in tried.headers.get("set-cookie", "")


async def test_a_code_opens_one_session_only(org: Org, browser: httpx.AsyncClient) -> None:
    contact = await person(org)
    page = await ask_code(browser, org.id, contact["email"])
    [code] = await mailed_codes(org, contact["email"])
    assert (await enter_code(browser, org.id, page, contact["email"], code)).status_code == 303
    async with visitor_client(org.app) as replayer:
        again = await enter_code(replayer, org.id, page, contact["email"], code)
        assert again.status_code == 200
        assert "That code is not right" in again.text
        assert "set-cookie" not in again.headers
        assert (await replayer.get(f"/portal/{org.id}/data")).status_code == 303


async def test_a_code_works_for_ten_minutes_on_the_apps_clock(
    org: Org, browser: httpx.AsyncClient, clock: FixedClock
) -> None:
    contact = await person(org)
    early = await ask_code(browser, org.id, contact["email"])
    clock.advance(minutes=9, seconds=59)
    [code] = await mailed_codes(org, contact["email"])
    assert (await enter_code(browser, org.id, early, contact["email"], code)).status_code == 303

    async with visitor_client(org.app) as late_browser:
        late = await ask_code(late_browser, org.id, contact["email"])
        late_code = (await mailed_codes(org, contact["email"]))[-1]
        clock.advance(minutes=10)
        expired = await enter_code(late_browser, org.id, late, contact["email"], late_code)
        assert expired.status_code == 200 and "That code is not right" in expired.text


async def test_five_wrong_attempts_kill_the_code(org: Org, browser: httpx.AsyncClient) -> None:
    contact = await person(org)
    page = await ask_code(browser, org.id, contact["email"])
    [code] = await mailed_codes(org, contact["email"])
    for _ in range(4):
        wrong = await enter_code(browser, org.id, page, contact["email"], _wrong(code))
        assert wrong.status_code == 200 and "That code is not right" in wrong.text
    # The fifth attempt is still one: the right code works.
    assert (await enter_code(browser, org.id, page, contact["email"], code)).status_code == 303

    async with visitor_client(org.app) as guesser:
        page = await ask_code(guesser, org.id, contact["email"])
        code = (await mailed_codes(org, contact["email"]))[-1]
        for _ in range(5):
            await enter_code(guesser, org.id, page, contact["email"], _wrong(code))
        dead = await enter_code(guesser, org.id, page, contact["email"], code)
        assert dead.status_code == 200 and "That code is not right" in dead.text


async def test_the_code_belongs_to_the_address_it_was_mailed_to(
    org: Org, browser: httpx.AsyncClient
) -> None:
    victim, attacker = await person(org), await person(org)
    page = await ask_code(browser, org.id, attacker["email"])
    [code] = await mailed_codes(org, attacker["email"])
    # The hidden email swapped for another person's: refused, whatever the code.
    swapped = await enter_code(browser, org.id, page, victim["email"], code)
    assert swapped.status_code == 200 and "That code is not right" in swapped.text


async def test_codes_mailed_per_address_are_limited_without_telling(
    org: Org, browser: httpx.AsyncClient
) -> None:
    contact = await person(org)
    pages = [await ask_code(browser, org.id, contact["email"]) for _ in range(4)]
    assert {page.status_code for page in pages} == {200}
    assert _normalized(pages[0], contact["email"]) == _normalized(pages[3], contact["email"])
    assert len(await mailed_codes(org, contact["email"])) == 3  # CRM_PORTAL_EMAIL_HOURLY_LIMIT


@pytest.fixture
def few_attempts(app: Any) -> Iterator[None]:
    """Four sign-in steps per source address an hour, for this test only."""
    original = app.state.settings
    app.state.settings = original.model_copy(update={"portal_address_hourly_limit": 4})
    try:
        yield
    finally:
        app.state.settings = original


async def test_one_source_address_is_throttled(org: Org, app: Any, few_attempts: None) -> None:
    contact = await person(org)
    async with visitor_client(app) as flooder, visitor_client(app) as neighbour:
        page = await ask_code(flooder, org.id, contact["email"])
        for _ in range(3):
            await enter_code(flooder, org.id, page, contact["email"], "000000")
        refused = await ask_code(flooder, org.id, unique_email())
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert int(refused.headers["retry-after"]) > 0
        assert (await enter_code(flooder, org.id, page, contact["email"], "1")).status_code == 429
        # Another address is not held up.
        assert (await ask_code(neighbour, org.id, contact["email"])).status_code == 200


async def test_sign_out_ends_the_session_for_good(org: Org, browser: httpx.AsyncClient) -> None:
    contact = await person(org)
    data = await sign_in(browser, org, contact["email"])
    token = browser.cookies["crm_portal"]
    csrf = hidden(data.text, "csrf")
    out = await browser.post(f"/portal/{org.id}/sign-out", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"] == f"/portal/{org.id}?signed=out"
    assert 'crm_portal=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    async with visitor_client(org.app) as thief:
        thief.cookies.set("crm_portal", token, path=f"/portal/{org.id}")
        again = await thief.get(f"/portal/{org.id}/data")
        assert again.status_code == 303
        assert again.headers["location"] == f"/portal/{org.id}?signed=ended"
        posted = await thief.post(f"/portal/{org.id}/sign-out", data={"csrf": csrf})
        assert posted.status_code == 403 and "This form has expired" in posted.text
    signed_out = await browser.get(f"/portal/{org.id}?signed=out")
    assert "You have signed out." in signed_out.text


async def test_a_session_ends_after_thirty_idle_minutes_and_two_hours_in_all(
    org: Org, browser: httpx.AsyncClient, clock: FixedClock
) -> None:
    contact = await person(org)
    await sign_in(browser, org, contact["email"])
    for _ in range(4):  # used every 29 minutes: alive for almost two hours
        clock.advance(minutes=29)
        assert (await browser.get(f"/portal/{org.id}/data")).status_code == 200
    clock.advance(minutes=5)  # 2 h 1 min after sign-in
    assert (await browser.get(f"/portal/{org.id}/data")).status_code == 303

    async with visitor_client(org.app) as idle:
        await sign_in(idle, org, contact["email"])
        clock.advance(minutes=30)
        assert (await idle.get(f"/portal/{org.id}/data")).status_code == 303


async def test_a_session_of_one_organization_opens_nothing_of_another(
    org: Org, other_org: Org, browser: httpx.AsyncClient
) -> None:
    email = unique_email("both")
    await person(org, email=email, last_name="InOrgA")
    await person(other_org, email=email, last_name="InOrgB")
    data = await sign_in(browser, org, email)
    assert "InOrgA" in data.text and "InOrgB" not in data.text
    token = browser.cookies["crm_portal"]
    # The cookie is scoped to the organization's portal; sent anyway, it is unknown there.
    async with visitor_client(org.app) as carrier:
        carrier.cookies.set("crm_portal", token, path=f"/portal/{other_org.id}")
        elsewhere = await carrier.get(f"/portal/{other_org.id}/data")
        assert elsewhere.status_code == 303
        posted = await carrier.post(
            f"/portal/{other_org.id}/consent",
            data={"csrf": hidden(data.text, "csrf"), "purpose": "x", "status": "granted"},
        )
        assert posted.status_code == 403
    # A sign-in started in one organization does not finish in the other.
    page = await ask_code(browser, org.id, email)
    code = (await mailed_codes(org, email))[-1]
    crossed = await enter_code(browser, other_org.id, page, email, code)
    assert crossed.status_code == 200 and "That code is not right" in crossed.text


async def test_a_person_sees_only_the_records_of_their_address(
    org: Org, browser: httpx.AsyncClient
) -> None:
    mine = await person(org, last_name="Mine", national_id="AB 123456")
    lead = await person(org, "leads", email=mine["email"], last_name="MyLead", company="Acme")
    await person(org, last_name="SomeoneElse")
    data = await sign_in(browser, org, mine["email"])
    assert "Mine" in data.text and "MyLead" in data.text and "Acme" in data.text
    # Their own view is complete: the sensitive national id is theirs to see.
    assert "AB 123456" in data.text
    assert "SomeoneElse" not in data.text
    assert lead["id"] in data.text


async def test_the_database_keeps_no_address_in_the_clear(
    org: Org, browser: httpx.AsyncClient, database_url: str
) -> None:
    contact = await person(org)
    await sign_in(browser, org, contact["email"])
    await ask_code(browser, org.id, unique_email("nobody"))
    assert contact["email"].encode() not in await database_bytes(database_url)


async def test_pages_follow_the_browsers_language_and_the_switch(
    org: Org, browser: httpx.AsyncClient
) -> None:
    japanese = await browser.get(f"/portal/{org.id}", headers={"Accept-Language": "ja,en;q=0.5"})
    assert '<html lang="ja">' in japanese.text and "コードを送信" in japanese.text
    english = await browser.get(f"/portal/{org.id}?lang=en", headers={"Accept-Language": "ja"})
    assert '<html lang="en">' in english.text and "Send me a code" in english.text
    # The choice is remembered over the browser's preference.
    again = await browser.get(f"/portal/{org.id}", headers={"Accept-Language": "ja"})
    assert '<html lang="en">' in again.text
    contact = await person(org)
    await browser.get(f"/portal/{org.id}?lang=ja")
    await ask_code(browser, org.id, contact["email"])
    [mail] = await mails_to(org, contact["email"])
    assert "サインイン" in mail.subject


async def mails_to(org: Org, email: str) -> list[Any]:
    return [m for m in await mails(org.app, org.id, "portal_code") if m.to == email.casefold()]


async def test_bad_input_changes_nothing(org: Org, browser: httpx.AsyncClient) -> None:
    not_an_address = await ask_code(browser, org.id, "not an address")
    assert not_an_address.status_code == 422
    assert "Please enter a valid email address." in not_an_address.text
    unknown_portal = await browser.get("/portal/00000000-0000-4000-8000-000000000000")
    assert unknown_portal.status_code == 404
    assert (await browser.get("/portal/not-an-id")).status_code == 422
    wrong_type = await browser.post(
        f"/portal/{org.id}/code", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 400


async def test_an_ipv6_subscriber_is_throttled_as_its_whole_64(
    org: Org, app: Any, few_attempts: None
) -> None:
    contact = await person(org)
    for host in range(4):
        async with visitor_client(app, f"2001:db8:71:1::{host + 1}") as device:
            assert (await ask_code(device, org.id, contact["email"])).status_code == 200
    async with visitor_client(app, "2001:db8:71:1::99") as same_subscriber:
        assert (await ask_code(same_subscriber, org.id, contact["email"])).status_code == 429
    async with visitor_client(app, "2001:db8:71:2::1") as another:
        assert (await ask_code(another, org.id, contact["email"])).status_code == 200


async def test_the_worker_forgets_expired_codes_and_sessions_and_keeps_live_ones(
    org: Org, browser: httpx.AsyncClient, clock: FixedClock
) -> None:
    from crm_service.portal.models import PortalSession, PortalSignIn
    from tests.consent.conftest import run_job

    contact = await person(org)
    await sign_in(browser, org, contact["email"])  # one used code, one live session

    async def rows() -> tuple[int, int]:
        async with org.app.state.sessionmaker() as session:
            codes = (
                await session.execute(
                    select(PortalSignIn.id).where(PortalSignIn.organization_id == org.id)
                )
            ).all()
            sessions = (
                await session.execute(
                    select(PortalSession.id).where(PortalSession.organization_id == org.id)
                )
            ).all()
            return len(codes), len(sessions)

    before = await rows()
    assert before[0] >= 1 and before[1] == 1
    await run_job(org.app, "forget_portal_sign_ins", clock.now())
    assert await rows() == before, "nothing of this organization has expired yet"

    clock.advance(minutes=31)  # the code's 10 minutes and the session's 30 idle ones are over
    assert await run_job(org.app, "forget_portal_sign_ins", clock.now()) >= 2
    assert await rows() == (0, 0)
    assert (await browser.get(f"/portal/{org.id}/data")).status_code == 303
