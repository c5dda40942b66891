"""Attacks on organizations' own mail templates, beyond test_templates_api.py: more ways out
of the sandbox (each refused with 422 and nothing stored), `join` reading past the attribute
checks, output that only grows too large with a mail's real values (the mail is queued all
the same, from the bundled template), line breaks of every kind carried into the Subject
header by a value, odd kinds and languages in the path, and the audit log never holding a
template's text."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from tests.access.conftest import audit_events, create_record
from tests.conftest import Org, assert_problem, count_rows
from tests.consent.conftest import create_purpose
from tests.mail.conftest import SmtpServer, send_all_due_mail
from tests.mail.test_templates_api import OWN, path, put, queued

REFUSED = [
    # join's attribute reads a dotted path, an index or a method of each item unchecked.
    "{{ purposes|join(attribute='items') }}",
    "{{ purposes|join(', ', 'get') }}",
    "{{ purposes|join(attribute='name.upper') }}",
    "{{ purposes|join(attribute='name.0') }}",
    "{{ organization_name|join(attribute='upper') }}",
    "{% for p in purposes %}{{ p|join(attribute='keys') }}{% endfor %}",
    "{{ purposes|join(attribute=organization_name) }}",
    # Filters, tests and globals that reach attributes, call methods or grow output.
    "{{ link|attr('upper') }}",
    "{{ purposes|map(attribute='name')|join }}",
    "{{ purposes|selectattr('name')|list }}",
    "{{ purposes|sort(attribute='name')|first }}",
    "{{ '%s'|format(link) }}",
    "{{ '%s' % link }}",
    "{{ link|center(1000000000) }}",
    "{{ link|indent(1000000000) }}",
    "{{ link|wordwrap(1) }}",
    "{{ link|replace('h', link) }}",
    "{{ link is sameas link }}",
    "{{ lipsum(1000) }}",
    "{{ joiner() }}",
    "{{ namespace(x=1) }}",
    "{{ dict(a=1) }}",
    # Loops: their helpers, recursion, depth, a target that is not one name.
    "{% for p in purposes %}{{ loop.cycle('a', 'b') }}{% endfor %}",
    "{% for p in purposes %}{{ loop.changed(p) }}{% endfor %}",
    "{% for p in purposes recursive %}{{ loop(purposes) }}{% endfor %}",
    "{% for a in purposes %}{% for b in purposes %}{% for c in purposes %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{% for k, v in purposes %}{% endfor %}",
    "{% for c in link %}{{ c }}{% endfor %}",
    # Statements and expressions outside the language.
    "{% filter upper %}{{ link }}{% endfilter %}",
    "{% with x = link %}{{ x }}{% endwith %}",
    "{% call link %}{% endcall %}",
    "{{ {'a': link} }}",
    "{{ link[0:5] }}",
    "{{ 1.5 }}",
    "{{ -1 }}",
    "{{ 1" + "0" * 5000 + " }}",
    # A string's escapes make what a part may not hold: a lone surrogate (no mail could be
    # encoded: the request queuing it failed with a 500), control characters, C1 controls.
    '{{ "\\ud800" }}',
    "{{ link ~ '\\udfff' }}",
    '{{ "\\x00" }}',
    '{{ "\\x1b[2J" }}',
    '{{ "\\N{BEL}" }}',
    '{{ "\\u0085" }}',
    "{{ link|default('\\x7f') }}",
    "{{ organization_name|truncate(5, true, '\\x0c') }}",
    "{{ " + "(" * 3000 + "link" + ")" * 3000 + " }}",
]


async def test_more_escapes_from_the_sandbox_are_refused_and_nothing_is_stored(
    org: Org, subtests: pytest.Subtests
) -> None:
    for html in REFUSED:
        with subtests.test(html=html):
            response = await put(org, {**OWN, "html": html})
            [problem] = assert_problem(response, 422)["errors"]
            assert problem["field"] == "body.html"
            assert "0x" not in problem["message"]
    assert await count_rows(org.app, "mail_templates", org.id) == 0


async def test_a_strings_escapes_that_make_printable_text_are_kept(org: Org) -> None:
    draft = {**OWN, "subject": '{{ "Caf\\u00e9 \\U0001F600\\tok" }}', "text": '{{ "a\\nb" }}'}
    shown = await org.client.post(f"{path()}/preview", json=draft, headers=org.headers)
    assert shown.status_code == 200, shown.text
    assert (shown.json()["subject"], shown.json()["text"]) == ("Caf\u00e9 \U0001f600 ok", "a\nb")


async def test_join_reads_an_items_field(org: Org) -> None:
    draft = {**OWN, "subject": "{{ purposes|join(' & ', attribute='name') }}"}
    shown = await org.client.post(f"{path()}/preview", json=draft, headers=org.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["subject"] == "Monthly newsletter & Event invitations"


async def _consent_request(org: Org, purposes: list[str]) -> None:
    contact = await create_record(org, "contacts", email=f"{secrets.token_hex(4)}@example.com")
    response = await org.client.post(
        "/v1/consent/requests",
        json={
            "module": "contacts",
            "record_id": contact["id"],
            "purposes": purposes,
            "channel": "email",
            "deadline": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
        },
        headers=org.headers,
    )
    assert response.status_code == 201, response.text


async def test_a_template_too_large_only_with_the_real_values_gives_way_to_the_bundled_one(
    org: Org,
) -> None:
    # Two sample purposes: 4 x 60,000 characters, under the cap; three real ones: 9 x.
    grows = (
        "{% for p in purposes %}{% for q in purposes %}" + "x" * 60_000 + "{% endfor %}{% endfor %}"
    )
    assert (await put(org, {**OWN, "text": grows})).status_code == 200
    keys = [(await create_purpose(org))["key"] for _ in range(3)]
    await _consent_request(org, keys)
    [(_, mail)] = await queued(org)
    assert "x" * 100 not in mail.text
    assert "Dear reader" not in mail.text  # the bundled mail, whole


async def test_a_subject_line_of_more_than_500_characters_is_refused(org: Org) -> None:
    long = (
        "{% for p in purposes %}{% for q in purposes %}"
        + "{{ link }} " * 3
        + "{% endfor %}{% endfor %}"
    )
    [problem] = assert_problem(await put(org, {**OWN, "subject": long}), 422)["errors"]
    assert (problem["field"], problem["rule"]) == ("body.subject", "too_large")
    assert (await put(org, {**OWN, "subject": "{{ link }} " * 11})).status_code == 200


async def test_a_subject_too_long_only_with_the_real_values_gives_way_to_the_bundled_one(
    org: Org,
) -> None:
    # 2 x 2 x 100 characters with the sample purposes; 4 x 4 x 100 with four real ones.
    grows = (
        "{% for p in purposes %}{% for q in purposes %}" + "y" * 100 + "{% endfor %}{% endfor %}"
    )
    assert (await put(org, {**OWN, "subject": grows})).status_code == 200
    keys = [(await create_purpose(org))["key"] for _ in range(4)]
    await _consent_request(org, keys)
    [(_, mail)] = await queued(org)
    assert "yyy" not in mail.subject and len(mail.subject) < 100


@pytest.mark.parametrize("breaks", ["\r\n", "\n", "\r", "\u2028", "\u2029", "\t", "\n\t", "\r\n "])
async def test_no_value_carries_a_header_into_the_subject(
    org: Org, app: object, breaks: str
) -> None:
    injected = f"Our news{breaks}Bcc: victim@example.net{breaks}X-Injected: yes"
    key = (await create_purpose(org, description=injected))["key"]
    subject = "{% for p in purposes %}{{ p.description }}{% endfor %}\u2028Reply-To: a@b.c"
    assert (await put(org, {**OWN, "subject": subject})).status_code == 200
    await _consent_request(org, [key])
    [(_, mail)] = await queued(org)
    assert mail.subject == "Our news Bcc: victim@example.net X-Injected: yes Reply-To: a@b.c"

    server = SmtpServer().start()
    try:
        settings = app.state.settings.model_copy(update={"smtp_url": server.url})  # type: ignore[attr-defined]
        await send_all_due_mail(
            app.state.sessionmaker,  # type: ignore[attr-defined]
            settings,
            app.state.clock.now(),  # type: ignore[attr-defined]
        )
        [received] = server.inbox.to(mail.to)
        [envelope] = [e for e in server.inbox.envelopes if mail.to in e.rcpt_tos]
    finally:
        server.stop()
    assert envelope.rcpt_tos == [mail.to]
    assert received["Bcc"] is None and received["X-Injected"] is None
    assert received["Reply-To"] is None


@pytest.mark.parametrize(
    ("kind", "language", "status"),
    [
        ("..", "en", 404),
        ("%2e%2e", "en", 404),
        ("..%2f..%2fconsent_request", "en", 404),
        ("consent_request", "%2e%2e", 404),
        ("consent_request", "EN", 404),
        ("CONSENT_REQUEST", "en", 404),
        ("consent_request.txt", "en", 404),
        ("consent_request", "en%00", 422),
        ("consent_request%0a", "en", 422),
        ("x" * 65, "en", 422),
        ("consent_request", "en-GB-oxendict", 422),
    ],
)
async def test_odd_kinds_and_languages_are_refused_cleanly(
    org: Org, kind: str, language: str, status: int
) -> None:
    url = f"/v1/settings/mail-templates/{kind}/{language}"
    for response in (
        await org.client.get(url, headers=org.headers),
        await org.client.put(url, json=OWN, headers=org.headers),
        await org.client.delete(url, headers=org.headers),
        await org.client.post(f"{url}/preview", headers=org.headers),
    ):
        assert response.status_code in (status, 404), (kind, language, response.status_code)
        assert_problem(response, response.status_code)
    assert await count_rows(org.app, "mail_templates", org.id) == 0


async def test_the_audit_log_never_holds_a_templates_text(org: Org) -> None:
    marker = secrets.token_hex(8)
    assert (await put(org, {**OWN, "text": f"{marker}\n{{{{ link }}}}"})).status_code == 200
    assert (await org.client.delete(path(), headers=org.headers)).status_code == 204
    events = [
        *await audit_events(org, action="settings.mail_template_set"),
        *await audit_events(org, action="settings.mail_template_removed"),
    ]
    assert len(events) == 2
    assert marker not in repr(events)
    listed = await org.client.get("/v1/audit-events?limit=200", headers=org.headers)
    assert listed.status_code == 200 and marker not in listed.text
