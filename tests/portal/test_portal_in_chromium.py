"""The privacy portal in a real browser: headless Chromium (Debian's, driven by Playwright)
with JavaScript switched off, against the app served over HTTP. A person signs in with the
code from their mail, sees their data, gives and withdraws consent, downloads their data,
asks for a correction, asks to be erased, follows their requests and signs out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page

from tests.conftest import Org
from tests.consent.conftest import create_purpose
from tests.consent.test_pages_in_chromium import browser, served  # noqa: F401 - fixtures
from tests.portal.conftest import mailed_codes, person


async def _walk(page: Page, org: Org, base_url: str, contact: dict[str, Any]) -> None:
    portal = f"{base_url}/portal/{org.id}"
    await page.goto(portal)
    assert await page.get_attribute("html", "lang") == "en"
    await page.get_by_label("Email address").fill(contact["email"])
    await page.get_by_role("button", name="Send me a code").click()
    assert await page.locator("h1").inner_text() == "Enter your code"
    [code] = await mailed_codes(org, contact["email"])
    await page.get_by_label("Code").fill(code)
    await page.get_by_role("button", name="Sign in").click()
    assert await page.locator("h1").inner_text() == "Your data"
    assert "Babbage" in await page.locator("main").inner_text()

    newsletter = page.get_by_role("group", name="Monthly newsletter")
    await newsletter.get_by_role("button", name="Give consent").click()
    assert "You have given consent" in await newsletter.inner_text()
    await newsletter.get_by_role("button", name="Withdraw consent").click()
    assert "You have withdrawn consent" in await newsletter.inner_text()

    async with page.expect_download() as downloading:
        await page.get_by_role("link", name="Download my data (JSON)").click()
    saved = await (await downloading.value).path()
    assert "Babbage" in json.dumps(json.loads(Path(saved).read_text()))

    await page.get_by_role("link", name="Ask for a correction, make a request").click()
    assert await page.locator("h1").inner_text() == "Your requests"
    correction = page.get_by_role("group", name="Contact")
    await correction.get_by_label("Last name").fill("Lovelace")
    await page.get_by_role("button", name="Ask for these corrections").click()
    assert "Your request has been received." in await page.locator("main").inner_text()

    await page.get_by_label("Erasure").check()
    await page.get_by_role("button", name="Send the request").click()
    table = await page.locator("table").inner_text()
    assert "Correction" in table and "Erasure" in table and "In progress" in table

    await page.get_by_role("button", name="Sign out").click()
    assert "You have signed out." in await page.locator("main").inner_text()
    await page.goto(f"{portal}/data")
    assert await page.locator("h1").inner_text() == "Your privacy"


async def test_a_person_uses_the_portal_without_javascript(
    org: Org,
    served: str,  # noqa: F811 - the fixture
    browser: Browser,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    await create_purpose(org, "newsletter", name="Monthly newsletter")
    contact = await person(org, first_name="Charles", last_name="Babbage")
    context = await browser.new_context(java_script_enabled=False, accept_downloads=True)
    page = await context.new_page()
    try:
        await _walk(page, org, served, contact)
    except BaseException:
        shot = tmp_path / "portal-failure.png"
        await page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failing page: {shot}")  # noqa: T201 - shown on failure
        raise
    finally:
        await context.close()
    ledger = await org.client.get(f"/v1/contacts/{contact['id']}/consents", headers=org.headers)
    assert [(e["status"], e["channel"]) for e in ledger.json()["events"]] == [
        ("granted", "portal"),
        ("withdrawn", "portal"),
    ]
    requests = await org.client.get("/v1/privacy/requests", headers=org.headers)
    assert sorted(r["type"] for r in requests.json()["data"]) == ["erasure", "rectification"]


async def test_the_portal_speaks_japanese(
    org: Org,
    served: str,  # noqa: F811 - the fixture
    browser: Browser,  # noqa: F811 - the fixture
) -> None:
    context = await browser.new_context(java_script_enabled=False, locale="ja-JP")
    page = await context.new_page()
    await page.goto(f"{served}/portal/{org.id}")
    assert await page.get_attribute("html", "lang") == "ja"
    assert await page.get_by_role("button", name="コードを送信").is_visible()
    await page.get_by_role("link", name="English").click()
    assert await page.get_attribute("html", "lang") == "en"
    await context.close()
