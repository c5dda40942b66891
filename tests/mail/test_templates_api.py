"""An organization's own mail templates: /v1/settings/mail-templates.

An administrator with `manage_privacy` stores a version of a kind of mail in a language; the
mail the service then queues (a consent request here, through the API) says what it says,
rendered in a sandbox with the values HTML-escaped in the html part, while the recipient and
List-Unsubscribe stay the service's. The reader's language comes first: the organization's
version in it, the bundled one in it, then the same in English. A template that does not
compile, uses what the mail does not have, or tries anything outside the small language is
refused with 422 naming the part and line, and nothing is stored. Every change is audited by
kind, language and parts, never the text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from crm_service.db.session import commit
from crm_service.mail.models import OutboxMessage
from crm_service.mail.outbox import MailContent, enqueue, open_content
from tests.access.conftest import audit_events, create_profile, create_record
from tests.conftest import Org, assert_problem, count_rows, create_user, unique_email
from tests.consent.conftest import create_purpose
from tests.oauth.conftest import register, token

BASE = "/v1/settings/mail-templates"
KINDS = {
    "consent_request",
    "consent_reminder",
    "optin_confirm",
    "portal_code",
    "privacy_request_completed",
    "privacy_request_extended",
    "privacy_request_rejected",
    "restriction_lifted",
    "user_invitation",
}
OWN = {
    "subject": "{{ organization_name }}:\n  your say on our mail",
    "text": (
        "Dear reader,\n"
        "{% for purpose in purposes %}* {{ purpose.name }} ({{ loop.index }})\n{% endfor %}"
        "Answer here by {{ deadline }}: {{ link }}\n"
    ),
    "html": (
        "<p>Dear reader,</p><ul>{% for purpose in purposes %}<li>{{ purpose.name }}</li>"
        '{% endfor %}</ul><p><a href="{{ link }}">Answer by {{ deadline }}</a></p>'
    ),
}
OWN_JA = {
    "subject": "{{ organization_name }}からのお願い",
    "text": "同意のお願いです。{{ link }}\n",
    "html": "<p>同意のお願いです。<a href='{{ link }}'>{{ link }}</a></p>",
}


def path(kind: str = "consent_request", language: str = "en") -> str:
    return f"{BASE}/{kind}/{language}"


async def put(org: Org, body: dict[str, Any], kind: str = "consent_request", language: str = "en"):
    return await org.client.put(path(kind, language), json=body, headers=org.headers)


async def ask_by_email(org: Org, language: str = "en", **contact: Any) -> dict[str, Any]:
    """A contact mailed a consent request for the purpose `newsletter` (made if missing)."""
    listed = await org.client.get("/v1/consent/purposes", headers=org.headers)
    if not any(p["key"] == "newsletter" for p in listed.json()["data"]):
        await create_purpose(org, "newsletter")
    record = await create_record(org, "contacts", **contact)
    response = await org.client.post(
        "/v1/consent/requests",
        json={
            "module": "contacts",
            "record_id": record["id"],
            "purposes": ["newsletter"],
            "channel": "email",
            "deadline": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
            "language": language,
        },
        headers=org.headers,
    )
    assert response.status_code == 201, response.text
    return record


async def queued(org: Org, template: str = "consent_request") -> list[tuple[str, MailContent]]:
    """(language, content) of the organization's queued mail of `template`, oldest first."""
    async with org.app.state.sessionmaker() as session:
        rows = (
            await session.execute(
                select(OutboxMessage)
                .where(
                    OutboxMessage.organization_id == org.id,
                    OutboxMessage.template == template,
                )
                .order_by(OutboxMessage.created_at)
            )
        ).scalars()
        found = []
        for row in rows:
            content = await open_content(session, row)
            assert content is not None
            found.append((row.language, content))
    return found


async def bundled(org: Org, kind: str = "consent_request", language: str = "en") -> dict[str, Any]:
    listed = await org.client.get(BASE, headers=org.headers)
    assert listed.status_code == 200, listed.text
    [entry] = [e for e in listed.json()["data"] if (e["kind"], e["language"]) == (kind, language)]
    return dict(entry["bundled"])


async def test_a_consent_request_mails_what_the_organizations_template_says(org: Org) -> None:
    stored = await put(org, OWN)
    assert stored.status_code == 200, stored.text
    body = stored.json()
    assert (body["source"], body["kind"], body["language"]) == (
        "organization",
        "consent_request",
        "en",
    )
    assert {part: body[part] for part in OWN} == OWN
    assert body["updated_by_id"] == str(org.admin_id) and body["updated_at"]

    record = await ask_by_email(org)
    [(language, mail)] = await queued(org)
    assert language == "en"
    # The recipient and the unsubscribe link are the service's, not the template's.
    assert mail.to == record["email"].casefold()
    assert mail.list_unsubscribe is not None and "/consent/" in mail.list_unsubscribe
    assert mail.subject.endswith(": your say on our mail") and "\n" not in mail.subject
    assert "* Monthly newsletter (1)" in mail.text
    assert "Answer here by" in mail.text and mail.list_unsubscribe in mail.text
    assert "<li>Monthly newsletter</li>" in mail.html
    assert f'href="{mail.list_unsubscribe}"' in mail.html

    [event] = await audit_events(org, action="settings.mail_template_set")
    assert (event["target_type"], event["target_id"]) == ("mail_template", "consent_request.en")
    assert event["fields"] == ["html", "subject", "text"]
    assert "Dear reader" not in str(event)

    # The same text again changes nothing and audits nothing; one part changed names it alone.
    assert (await put(org, OWN)).status_code == 200
    assert (await put(org, {**OWN, "subject": "Hello"})).status_code == 200
    events = await audit_events(org, action="settings.mail_template_set")
    assert [e["fields"] for e in events] == [["subject"], ["html", "subject", "text"]]


async def test_the_readers_language_comes_before_the_organizations_english(org: Org) -> None:
    assert (await put(org, OWN)).status_code == 200
    await ask_by_email(org, language="ja")
    [(language, mail)] = await queued(org)
    # Japanese reader: the bundled Japanese mail, not the organization's English one.
    assert language == "ja"
    japanese = await bundled(org, language="ja")
    assert "Dear reader" not in mail.text and "同意" in mail.subject + mail.text
    assert japanese["text"].splitlines()[0] in mail.text

    assert (await put(org, OWN_JA, language="ja")).status_code == 200
    await ask_by_email(org, language="ja")
    await ask_by_email(org, language="en")
    [_, (ja_language, ja_mail), (en_language, en_mail)] = await queued(org)
    assert ja_language == "ja" and ja_mail.text.startswith("同意のお願いです。")
    assert ja_mail.subject.endswith("からのお願い")
    assert en_language == "en" and en_mail.text.startswith("Dear reader,")

    # A language nothing is written in: the organization's English version.
    async with org.app.state.sessionmaker() as session:
        await enqueue(
            session,
            organization_id=org.id,
            to=unique_email(),
            template="consent_request",
            context={
                "organization_name": "Org",
                "link": "https://crm.example.com/consent/x",
                "purposes": [],
                "deadline": "2027-01-01 00:00 UTC",
            },
            language="fr",
        )
        await commit(session)
    language, mail = (await queued(org))[-1]
    assert language == "en" and mail.text.startswith("Dear reader,")


async def test_an_own_template_failing_with_a_mails_values_gives_way_to_the_bundled_one(
    org: Org,
) -> None:
    # Fine with the sample values (two purposes), undefined with none.
    first = {
        "subject": "{{ form_name }}",
        "text": "First: {{ purposes|first ~ '' }}\n",
        "html": "<p>{{ link }}</p>",
    }
    assert (await put(org, first, kind="optin_confirm")).status_code == 200
    async with org.app.state.sessionmaker() as session:
        await enqueue(
            session,
            organization_id=org.id,
            to=unique_email(),
            template="optin_confirm",
            context={
                "organization_name": "Org",
                "link": "https://crm.example.com/forms/confirm/x",
                "form_name": "Sign-up",
                "purposes": [],
                "valid_hours": 48,
            },
        )
        await commit(session)
    [(language, mail)] = await queued(org, "optin_confirm")
    assert language == "en" and "First:" not in mail.text
    assert (await bundled(org, "optin_confirm"))["text"].splitlines()[0] in mail.text


async def test_deleting_it_goes_back_to_the_bundled_mail(org: Org) -> None:
    assert (await put(org, OWN)).status_code == 200
    removed = await org.client.delete(path(), headers=org.headers)
    assert removed.status_code == 204, removed.text
    shown = (await org.client.get(path(), headers=org.headers)).json()
    assert shown["source"] == "bundled" and shown["updated_at"] is None
    assert {part: shown[part] for part in OWN} == await bundled(org)

    await ask_by_email(org)
    [(_, mail)] = await queued(org)
    assert "Dear reader" not in mail.text and "would like your consent" in mail.text

    [event] = await audit_events(org, action="settings.mail_template_removed")
    assert (event["target_id"], event["fields"]) == (
        "consent_request.en",
        ["html", "subject", "text"],
    )
    assert_problem(await org.client.delete(path(), headers=org.headers), 404)
    assert await count_rows(org.app, "mail_templates", org.id) == 0


async def test_the_list_has_every_kind_in_every_language_with_its_bundled_source(org: Org) -> None:
    assert (await put(org, OWN_JA, language="ja")).status_code == 200
    listed = await org.client.get(BASE, headers=org.headers)
    assert listed.status_code == 200, listed.text
    data = listed.json()["data"]
    assert {(e["kind"], e["language"]) for e in data} == {
        (kind, language) for kind in KINDS for language in ("en", "ja")
    }
    assert [(e["kind"], e["language"]) for e in data if e["overridden"]] == [
        ("consent_request", "ja")
    ]
    portal = next(e for e in data if (e["kind"], e["language"]) == ("portal_code", "en"))
    assert set(portal["variables"]) == {"organization_name", "code", "valid_minutes", "link"}
    assert "{{ code }}" in portal["bundled"]["text"]
    # The bundled sources are a valid start: each can be stored back as it is.
    for entry in data:
        stored = await put(org, entry["bundled"], entry["kind"], entry["language"])
        assert stored.status_code == 200, (entry["kind"], entry["language"], stored.text)


@pytest.mark.parametrize(
    "html",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ link.__class__.__base__.__subclasses__() }}",
        "{% for purpose in purposes %}{{ purpose.__class__ }}{% endfor %}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self.__init__ }}",
        "{% include 'x' %}",
        "{% import 'x' as x %}",
        "{% extends 'base.html' %}",
        "{{ link.upper() }}",
        "{{ range(100000) }}",
        "{{ 'x' * 100000000 }}",
        "{% set x = link %}{{ x }}",
        "{{ link|safe }}",
        "{% autoescape false %}{{ link }}{% endautoescape %}",
        "{% macro m() %}{% endmacro %}",
        "{{ purposes[0] }}",
    ],
)
async def test_escapes_from_the_sandbox_are_refused_and_nothing_is_stored(
    org: Org, html: str
) -> None:
    response = await put(org, {**OWN, "html": f"<p>Hello</p>\n{html}"})
    body = assert_problem(response, 422)
    [problem] = body["errors"]
    assert problem["field"] == "body.html"
    assert problem["message"].startswith("line 2: ")
    assert await count_rows(org.app, "mail_templates", org.id) == 0
    assert (await org.client.get(path(), headers=org.headers)).json()["source"] == "bundled"
    assert await audit_events(org, action="settings.mail_template_set") == []


async def test_an_undefined_variable_or_a_template_that_does_not_compile_is_refused(
    org: Org,
) -> None:
    response = await put(org, {**OWN, "text": "Hello {{ first_name }}\n", "subject": "{% if %}"})
    body = assert_problem(response, 422)
    problems = {p["field"]: p for p in body["errors"]}
    assert set(problems) == {"body.text", "body.subject"}
    assert problems["body.text"]["rule"] == "undefined_variable"
    assert "'first_name'" in problems["body.text"]["message"]
    assert problems["body.subject"]["rule"] == "template_syntax"
    assert problems["body.subject"]["message"].startswith("line 1: ")
    # An attribute the mail's items do not have.
    response = await put(org, {**OWN, "html": "{% for p in purposes %}\n{{ p.owner }}{% endfor %}"})
    [problem] = assert_problem(response, 422)["errors"]
    assert (problem["field"], problem["rule"]) == ("body.html", "not_allowed")
    assert problem["message"].startswith("line 2: ")
    assert await count_rows(org.app, "mail_templates", org.id) == 0


async def test_an_oversized_part_is_refused(org: Org) -> None:
    # 22,000 characters of three bytes each: within the character cap, over 64 KiB.
    response = await put(org, {**OWN, "text": "あ" * 22_000})
    [problem] = assert_problem(response, 422)["errors"]
    assert (problem["field"], problem["rule"]) == ("body.text", "too_large")
    response = await put(org, {**OWN, "html": "x" * 70_000})
    [problem] = assert_problem(response, 422)["errors"]
    assert (problem["field"], problem["rule"]) == ("body.html", "string_too_long")
    assert await count_rows(org.app, "mail_templates", org.id) == 0


async def test_unknown_kinds_and_languages_are_not_found(org: Org) -> None:
    for where in (path("newsletter"), path(language="fr"), path("../en", "en")):
        assert_problem(await org.client.get(where, headers=org.headers), 404)
        assert_problem(await org.client.put(where, json=OWN, headers=org.headers), 404)
        assert_problem(await org.client.delete(where, headers=org.headers), 404)
        assert_problem(await org.client.post(f"{where}/preview", headers=org.headers), 404)
    assert await count_rows(org.app, "mail_templates", org.id) == 0


async def test_only_manage_privacy_may_read_or_change_them(org: Org) -> None:
    standard = await create_profile(org, {"contacts": ["create", "read", "update", "delete"]})
    settings_admin = await create_profile(org, {"contacts": ["read"]}, rights=["manage_settings"])
    for profile in (standard, settings_admin):
        email = unique_email("staff")
        created = await create_user(org, {"email": email, "profile_id": profile})
        assert created.status_code == 201, created.text
        headers = await org.login(email)
        assert_problem(await org.client.get(BASE, headers=headers), 403)
        assert_problem(await org.client.get(path(), headers=headers), 403)
        assert_problem(await org.client.put(path(), json=OWN, headers=headers), 403)
        assert_problem(await org.client.delete(path(), headers=headers), 403)
        assert_problem(await org.client.post(f"{path()}/preview", headers=headers), 403)
    privacy = await create_profile(org, {"contacts": ["read"]}, rights=["manage_privacy"])
    email = unique_email("privacy")
    assert (await create_user(org, {"email": email, "profile_id": privacy})).status_code == 201
    allowed = await org.client.put(path(), json=OWN, headers=await org.login(email))
    assert allowed.status_code == 200, allowed.text
    assert await count_rows(org.app, "mail_templates", org.id) == 1


async def test_another_organizations_template_is_never_used(org: Org, other_org: Org) -> None:
    assert (await put(other_org, OWN)).status_code == 200
    assert (await org.client.get(path(), headers=org.headers)).json()["source"] == "bundled"
    assert_problem(await org.client.delete(path(), headers=org.headers), 404)
    listed = (await org.client.get(BASE, headers=org.headers)).json()["data"]
    assert not any(entry["overridden"] for entry in listed)

    await ask_by_email(org)
    [(_, mail)] = await queued(org)
    assert "Dear reader" not in mail.text
    # And the other organization's is still there, and its own.
    assert (await other_org.client.get(path(), headers=other_org.headers)).json()[
        "source"
    ] == "organization"


async def test_values_placed_in_the_html_part_are_escaped(org: Org) -> None:
    await create_purpose(org, "newsletter", name="<script>alert(1)</script>")
    assert (await put(org, OWN)).status_code == 200
    await ask_by_email(org, first_name="<script>alert(2)</script>")
    [(_, mail)] = await queued(org)
    assert "<script>" not in mail.html
    assert "<li>&lt;script&gt;alert(1)&lt;/script&gt;</li>" in mail.html
    # The plain-text body is not HTML: the name is as written.
    assert "* <script>alert(1)</script> (1)" in mail.text


async def test_a_preview_renders_sample_values_and_sends_nothing(org: Org) -> None:
    shown = await org.client.post(f"{path('portal_code', 'ja')}/preview", headers=org.headers)
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert (body["source"], body["language"]) == ("bundled", "ja")
    assert "123456" in body["text"] and "サインイン" in body["subject"]

    draft = {"subject": "Code\n{{ code }}", "text": "{{ code }}", "html": "<b>{{ code }}</b>"}
    previewed = await org.client.post(
        f"{path('portal_code')}/preview", json=draft, headers=org.headers
    )
    assert previewed.status_code == 200, previewed.text
    assert {k: previewed.json()[k] for k in ("source", "subject", "text", "html")} == {
        "source": "draft",
        "subject": "Code 123456",
        "text": "123456",
        "html": "<b>123456</b>",
    }
    assert await count_rows(org.app, "mail_templates", org.id) == 0
    refused = await org.client.post(
        f"{path('portal_code')}/preview",
        json={**draft, "text": "{{ link.__class__ }}"},
        headers=org.headers,
    )
    assert assert_problem(refused, 422)["errors"][0]["field"] == "body.text"

    assert (await put(org, draft, "portal_code")).status_code == 200
    stored = await org.client.post(f"{path('portal_code')}/preview", headers=org.headers)
    assert (stored.json()["source"], stored.json()["text"]) == ("organization", "123456")
    # A part alone is previewed with the stored others.
    one_part = await org.client.post(
        f"{path('portal_code')}/preview", json={"html": "<i>{{ code }}</i>"}, headers=org.headers
    )
    assert one_part.status_code == 200, one_part.text
    assert (one_part.json()["html"], one_part.json()["text"]) == ("<i>123456</i>", "123456")
    assert (await org.client.get(path("portal_code"), headers=org.headers)).json()["html"] == draft[
        "html"
    ]
    assert await count_rows(org.app, "mail_outbox", org.id) == 0


async def test_a_partner_token_cannot_reach_them(org: Org) -> None:
    partner = await register(org, scopes=["crm.privacy.read", "crm.privacy.write"])
    headers = await token(org.client, partner)
    assert_problem(await org.client.get(BASE, headers=headers), 403)
    assert_problem(await org.client.put(path(), json=OWN, headers=headers), 403)
    assert await count_rows(org.app, "mail_templates", org.id) == 0
