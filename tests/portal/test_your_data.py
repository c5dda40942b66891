"""The signed-in person's page: consent given and withdrawn with one button each (in the
ledger, channel portal, with evidence), consent requests answered, and every POST refused
without the session's synchronizer token."""

from __future__ import annotations

from datetime import timedelta

import httpx

from crm_service.clock import FixedClock
from tests.conftest import Org
from tests.consent.conftest import create_purpose
from tests.portal.conftest import hidden, person, sign_in


async def _ledger(org: Org, contact_id: str) -> dict[str, object]:
    response = await org.client.get(f"/v1/contacts/{contact_id}/consents", headers=org.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_consent_is_given_and_withdrawn_with_one_button_each(
    org: Org, browser: httpx.AsyncClient
) -> None:
    await create_purpose(org, "newsletter", name="Monthly newsletter")
    contact = await person(org)
    data = await sign_in(browser, org, contact["email"])
    assert "You have not been asked" in data.text
    csrf = hidden(data.text, "csrf")

    granted = await browser.post(
        f"/portal/{org.id}/consent",
        data={"csrf": csrf, "purpose": "newsletter", "status": "granted"},
    )
    assert granted.status_code == 303
    shown = await browser.get(granted.headers["location"])
    assert "Your choice has been recorded." in shown.text
    assert "You have given consent" in shown.text

    withdrawn = await browser.post(
        f"/portal/{org.id}/consent",
        data={"csrf": csrf, "purpose": "newsletter", "status": "withdrawn"},
    )
    assert withdrawn.status_code == 303
    assert "You have withdrawn consent" in (await browser.get(f"/portal/{org.id}/data")).text

    ledger = await _ledger(org, contact["id"])
    events = ledger["events"]
    assert [(e["status"], e["channel"]) for e in events] == [  # type: ignore[index]
        ("granted", "portal"),
        ("withdrawn", "portal"),
    ]
    assert events[0]["evidence"]["ip"] == browser._transport.client[0]  # type: ignore[index,attr-defined]
    assert events[0]["recorded_by_id"] is None  # type: ignore[index]
    assert {s["purpose"]: s["status"] for s in ledger["state"]} == {  # type: ignore[attr-defined]
        "newsletter": "withdrawn"
    }


async def test_a_post_without_the_sessions_token_is_refused(
    org: Org, browser: httpx.AsyncClient
) -> None:
    await create_purpose(org, "newsletter")
    contact = await person(org)
    data = await sign_in(browser, org, contact["email"])
    csrf = hidden(data.text, "csrf")
    body = {"purpose": "newsletter", "status": "granted"}
    for sent in ({}, {"csrf": ""}, {"csrf": csrf[:-1] + ("0" if csrf[-1] != "0" else "1")}):
        refused = await browser.post(f"/portal/{org.id}/consent", data={**body, **sent})
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("text/html")
        assert "This form has expired" in refused.text
    out = await browser.post(f"/portal/{org.id}/sign-out", data={"csrf": "forged"})
    assert out.status_code == 403
    assert (await _ledger(org, contact["id"]))["events"] == []
    # Still signed in: a refused POST ends nothing.
    assert (await browser.get(f"/portal/{org.id}/data")).status_code == 200


async def test_bad_consent_input_is_a_clear_422(org: Org, browser: httpx.AsyncClient) -> None:
    await create_purpose(org, "newsletter")
    contact = await person(org)
    csrf = hidden((await sign_in(browser, org, contact["email"])).text, "csrf")
    for body in (
        {"purpose": "newsletter", "status": "refused"},
        {"purpose": "no-such-purpose", "status": "granted"},
    ):
        answered = await browser.post(f"/portal/{org.id}/consent", data={"csrf": csrf, **body})
        assert answered.status_code == 422
        assert answered.headers["content-type"].startswith("application/problem+json")
    assert (await _ledger(org, contact["id"]))["events"] == []


async def test_a_consent_request_is_answered_in_the_portal(
    org: Org, browser: httpx.AsyncClient, clock: FixedClock
) -> None:
    await create_purpose(org, "newsletter", name="Monthly newsletter")
    await create_purpose(org, "profiling", name="Personalised offers")
    contact = await person(org)
    other = await person(org)
    asked = []
    for record in (contact, other):
        response = await org.client.post(
            "/v1/consent/requests",
            json={
                "module": "contacts",
                "record_id": record["id"],
                "purposes": ["newsletter", "profiling"],
                "channel": "portal",
                "deadline": (clock.now() + timedelta(days=7)).isoformat(),
            },
            headers=org.headers,
        )
        assert response.status_code == 201, response.text
        asked.append(response.json()["id"])
    data = await sign_in(browser, org, contact["email"])
    assert "Questions we have asked you" in data.text
    assert asked[0] in data.text and asked[1] not in data.text
    csrf = hidden(data.text, "csrf")

    # Someone else's request cannot be answered from this session.
    foreign = await browser.post(
        f"/portal/{org.id}/consent-requests/{asked[1]}",
        data={"csrf": csrf, "purpose.newsletter": "granted"},
    )
    assert foreign.headers["location"].endswith("saved=gone")
    answered = await browser.post(
        f"/portal/{org.id}/consent-requests/{asked[0]}",
        data={"csrf": csrf, "purpose.newsletter": "granted", "purpose.profiling": "refused"},
    )
    assert answered.status_code == 303 and answered.headers["location"].endswith("saved=answer")
    shown = await org.client.get(f"/v1/consent/requests/{asked[0]}", headers=org.headers)
    assert shown.json()["status"] == "answered"
    other_request = await org.client.get(f"/v1/consent/requests/{asked[1]}", headers=org.headers)
    assert other_request.json()["status"] == "pending"
    ledger = await _ledger(org, contact["id"])
    assert {s["purpose"]: s["status"] for s in ledger["state"]} == {  # type: ignore[attr-defined]
        "newsletter": "granted",
        "profiling": "refused",
    }
    assert {e["channel"] for e in ledger["events"]} == {"portal"}  # type: ignore[attr-defined]
    page = await browser.get(f"/portal/{org.id}/data")
    assert "Questions we have asked you" not in page.text
    again = await browser.post(
        f"/portal/{org.id}/consent-requests/{asked[0]}",
        data={"csrf": csrf, "purpose.newsletter": "refused"},
    )
    assert again.headers["location"].endswith("saved=gone")


async def test_a_client_that_asks_for_no_page_gets_problems(
    org: Org, browser: httpx.AsyncClient
) -> None:
    contact = await person(org)
    await sign_in(browser, org, contact["email"])
    as_api = {"Accept": "application/json"}
    refused = await browser.post(
        f"/portal/{org.id}/sign-out", data={"csrf": "forged"}, headers=as_api
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    bad = await browser.post(f"/portal/{org.id}/code", data={"email": "nope"}, headers=as_api)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.email"


async def test_every_page_is_in_japanese_too(org: Org, browser: httpx.AsyncClient) -> None:
    await create_purpose(org, "newsletter", name="Monthly newsletter")
    contact = await person(org)
    await browser.get(f"/portal/{org.id}?lang=ja")
    code_page = await browser.post(f"/portal/{org.id}/code", data={"email": contact["email"]})
    assert '<html lang="ja">' in code_page.text and "コードの入力" in code_page.text
    data = await sign_in(browser, org, contact["email"])
    assert '<html lang="ja">' in data.text
    assert "あなたのデータ" in data.text and "同意を撤回する" in data.text
    requests = await browser.get(f"/portal/{org.id}/requests")
    assert '<html lang="ja">' in requests.text and "訂正を依頼する" in requests.text
    refused = await browser.post(f"/portal/{org.id}/sign-out", data={"csrf": "forged"})
    assert refused.status_code == 403 and "このフォームは無効になりました" in refused.text
    english = await browser.get(f"/portal/{org.id}/requests?lang=en")
    assert '<html lang="en">' in english.text and "Ask for a correction" in english.text
