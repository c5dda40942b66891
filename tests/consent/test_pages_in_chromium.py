"""The public pages in a real browser: headless Chromium (Debian's, driven by Playwright)
with JavaScript switched off, against the app served over HTTP. A visitor fills in a web
form, opens the mailed confirmation link, reads the page and confirms with its button; a
person answers a consent request on the consent page. Everything works without a script."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, async_playwright

from crm_service.clock import FixedClock
from tests.access.conftest import create_record
from tests.conftest import Org, service_missing, unique_email
from tests.consent.conftest import create_purpose, link_in, mails

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def served(app: Any) -> AsyncIterator[str]:
    """The test's app on a loopback port (its lifespan is already running)."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which("chromium") is None:
        service_missing(
            "Chromium", "no chromium command", "install it with apt-get install chromium"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        await launched.close()


async def test_a_visitor_signs_up_and_confirms_without_javascript(
    org: Org, served: str, browser: Browser
) -> None:
    await create_purpose(org, "newsletter", name="Monthly newsletter")
    form = await org.client.post(
        "/v1/webforms",
        json={
            "name": "Newsletter sign-up",
            "module": "leads",
            "fields": [
                {"name": "first_name"},
                {"name": "last_name", "required": True},
                {"name": "email", "required": True},
            ],
            "purposes": ["newsletter"],
            "double_opt_in": True,
        },
        headers=org.headers,
    )
    assert form.status_code == 201, form.text
    email = unique_email("ada")
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text))

    await page.goto(f"{served}/forms/{form.json()['id']}")
    assert await page.get_attribute("html", "lang") == "en"
    assert await page.locator("h1").inner_text() == "Newsletter sign-up"
    await page.get_by_label("First name").fill("Ada")
    await page.get_by_label("Last name").fill("Lovelace")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Monthly newsletter").check()
    # The honeypot is not shown to people.
    assert not await page.locator("#f-crm-hp").is_visible()
    await page.get_by_role("button", name="Send").click()
    assert await page.locator("h1").inner_text() == "Thank you"

    [mail] = [m for m in await mails(org.app, org.id, "optin_confirm") if m.to == email]
    await page.goto(served + link_in(mail.text, "/forms/confirm/"))
    assert await page.locator("h1").inner_text() == "Confirm your email address"
    listed = await org.client.get("/v1/leads", params={"email": email}, headers=org.headers)
    assert listed.json()["data"] == [], "opening the link confirms nothing"

    await page.get_by_role("button", name="Confirm").click()
    assert await page.locator("h1").inner_text() == "Confirmed"
    [lead] = (
        await org.client.get("/v1/leads", params={"email": email}, headers=org.headers)
    ).json()["data"]
    assert (lead["first_name"], lead["source"]["channel"]) == ("Ada", "webform")
    assert lead["source"]["ip"] == "127.0.0.1"
    assert not [text for text in blocked if "Content Security Policy" in text]
    await context.close()


async def test_a_person_answers_a_consent_request_on_its_page(
    org: Org, served: str, browser: Browser, clock: FixedClock
) -> None:
    await create_purpose(org, "newsletter", name="Monthly newsletter")
    await create_purpose(org, "profiling", name="Personalised offers")
    contact = await create_record(org, "contacts")
    asked = await org.client.post(
        "/v1/consent/requests",
        json={
            "module": "contacts",
            "record_id": contact["id"],
            "purposes": ["newsletter", "profiling"],
            "channel": "email",
            "deadline": (clock.now() + timedelta(days=7)).isoformat(),
        },
        headers=org.headers,
    )
    assert asked.status_code == 201, asked.text
    [mail] = await mails(org.app, org.id, "consent_request")

    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(served + link_in(mail.text, "/consent/"))
    assert await page.locator("h1").inner_text() == "Your consent"
    newsletter = page.get_by_role("group", name="Monthly newsletter")
    await newsletter.get_by_label("I agree").check()
    # Refusing is the default and as easy as agreeing.
    assert (
        await page.get_by_role("group", name="Personalised offers")
        .get_by_label("I do not agree")
        .is_checked()
    )
    await page.get_by_role("button", name="Send my answer").click()
    assert "recorded" in await page.locator("main").inner_text()
    await context.close()

    ledger = await org.client.get(f"/v1/contacts/{contact['id']}/consents", headers=org.headers)
    assert {s["purpose"]: s["status"] for s in ledger.json()["state"]} == {
        "newsletter": "granted",
        "profiling": "refused",
    }
    shown = await org.client.get(f"/v1/consent/requests/{asked.json()['id']}", headers=org.headers)
    assert shown.json()["status"] == "answered"
