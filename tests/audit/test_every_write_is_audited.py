"""Every state-changing endpoint writes exactly the audit events it should (rule 6).

The test walks the mounted routes: a state-changing route (anything but GET) must have a case
here, or be listed as covered elsewhere with the reason. Each case makes one successful call
and compares the events written by that request (found by its x-request-id) with the
expected actions, so a missing event and an unexpected one both fail.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from crm_service.audit.models import AuditEvent
from crm_service.clock import FixedClock
from crm_service.main import ROUTERS
from tests.auth.test_totp import STEP, code_at, step_start_near_now
from tests.conftest import PASSWORD, Org, create_user, mailed_invitation_token, unique_email
from tests.privacy.restricting import restrict

# Covered by the single sign-on tests, which need the real OpenID provider.
ELSEWHERE = {
    ("POST", "/v1/auth/sso/token"): "tests/sso (needs the OpenID provider)",
    ("PUT", "/v1/settings/sso"): "tests/sso (discovery needs the OpenID provider)",
    ("DELETE", "/v1/settings/sso"): "tests/sso (needs a configured provider)",
    ("POST", "/v1/settings/sso/identities"): "tests/sso (needs a configured provider)",
    ("POST", "/oauth/token"): "tests/oauth (form-encoded and client-authenticated)",
    ("POST", "/oauth/revoke"): "tests/oauth (form-encoded and client-authenticated)",
    ("POST", "/oauth/introspect"): "tests/oauth (reads only; form-encoded)",
    # Public: the system acts for a visitor (no user), asserted in the consent tests.
    ("POST", "/forms/{form_id}"): "tests/consent/test_webforms.py",
    ("POST", "/forms/confirm/{token}"): "tests/consent/test_webforms.py",
    ("POST", "/consent/{token}"): "tests/consent/test_requests.py",
    # The privacy portal: the data subject acts (actor `subject`), asserted in its tests.
    ("POST", "/portal/{organization_id}/code"): "tests/portal (no event: nobody signed in)",
    ("POST", "/portal/{organization_id}/sign-in"): "tests/portal/test_sign_in.py",
    ("POST", "/portal/{organization_id}/sign-out"): "tests/portal/test_sign_in.py",
    ("POST", "/portal/{organization_id}/consent"): "tests/portal/test_your_data.py",
    ("POST", "/portal/{organization_id}/consent-requests/{request_id}"): (
        "tests/portal/test_your_data.py"
    ),
    ("POST", "/portal/{organization_id}/requests"): "tests/portal/test_download_and_requests.py",
}


@dataclass
class World:
    """What the cases act on: one organization, a colleague, and records of each module."""

    org: Org
    colleague_id: str
    colleague_email: str
    ids: dict[str, str]


Call = tuple[str, str, dict[str, Any] | None, dict[str, str]]  # method, path, body, headers
Case = Callable[[World], Awaitable[tuple[Call, list[str]]]]


async def _post(
    org: Org, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await org.client.post(path, json=body, headers=headers or org.headers)
    assert response.status_code in (200, 201), (path, response.text)
    return response.json()


async def _etag(org: Org, path: str) -> str:
    return (await org.client.get(path, headers=org.headers)).headers["ETag"]


def _record_cases(module: str, noun: str, body: dict[str, Any]) -> dict[tuple[str, str], Case]:
    base = f"/v1/{module}"

    async def create(w: World) -> tuple[Call, list[str]]:
        return ("POST", base, body, w.org.headers), ["record.created"]

    async def search(w: World) -> tuple[Call, list[str]]:
        return ("POST", f"{base}/search", {}, w.org.headers), []

    async def update(w: World) -> tuple[Call, list[str]]:
        record = await _post(w.org, base, body)
        return ("PATCH", f"{base}/{record['id']}", {"description": "changed"}, w.org.headers), [
            "record.updated"
        ]

    async def delete(w: World) -> tuple[Call, list[str]]:
        record = await _post(w.org, base, body)
        return ("DELETE", f"{base}/{record['id']}", None, w.org.headers), ["record.deleted"]

    async def share(w: World) -> tuple[Call, list[str]]:
        record = await _post(w.org, base, body)
        path = f"{base}/{record['id']}/shares/{w.ids['group']}"
        return ("PUT", path, {"access": "read_only"}, w.org.headers), ["record.shared"]

    async def unshare(w: World) -> tuple[Call, list[str]]:
        record = await _post(w.org, base, body)
        path = f"{base}/{record['id']}/shares/{w.ids['group']}"
        shared = await w.org.client.put(path, json={"access": "read_only"}, headers=w.org.headers)
        assert shared.status_code == 200, shared.text
        return ("DELETE", path, None, w.org.headers), ["record.unshared"]

    cases: dict[tuple[str, str], Case] = {
        ("POST", base): create,
        ("POST", f"{base}/search"): search,
        ("PATCH", f"{base}/{{record_id}}"): update,
        ("DELETE", f"{base}/{{record_id}}"): delete,
        ("PUT", f"{base}/{{record_id}}/shares/{{group_id}}"): share,
        ("DELETE", f"{base}/{{record_id}}/shares/{{group_id}}"): unshare,
    }
    if module != "accounts":

        async def legal_basis(w: World) -> tuple[Call, list[str]]:
            record = await _post(w.org, base, body)
            path = f"{base}/{record['id']}/legal-basis"
            return ("PUT", path, {"basis": "contract"}, w.org.headers), ["record.updated"]

        cases[("PUT", f"{base}/{{record_id}}/legal-basis")] = legal_basis
    return cases


async def _convert(w: World) -> tuple[Call, list[str]]:
    lead = await _post(w.org, "/v1/leads", {"last_name": "Byron", "company": "Analytical Engines"})
    path = f"/v1/leads/{lead['id']}/convert"
    return ("POST", path, {"create_account": True}, w.org.headers), [
        "record.converted",
        "record.created",
        "record.created",
    ]


async def _restore(w: World) -> tuple[Call, list[str]]:
    contact = await _post(w.org, "/v1/contacts", {"last_name": "Binned"})
    await w.org.client.delete(f"/v1/contacts/{contact['id']}", headers=w.org.headers)
    return ("POST", f"/v1/recycle-bin/contacts/{contact['id']}/restore", None, w.org.headers), [
        "record.restored"
    ]


async def _purge(w: World) -> tuple[Call, list[str]]:
    contact = await _post(w.org, "/v1/contacts", {"last_name": "Binned"})
    await w.org.client.delete(f"/v1/contacts/{contact['id']}", headers=w.org.headers)
    return ("DELETE", f"/v1/recycle-bin/contacts/{contact['id']}", None, w.org.headers), [
        "record.purged"
    ]


async def _login(w: World) -> tuple[Call, list[str]]:
    body = {"email": w.colleague_email, "password": PASSWORD}
    return ("POST", "/v1/auth/login", body, {}), ["auth.login_succeeded"]


async def _logout(w: World) -> tuple[Call, list[str]]:
    headers = await w.org.login(w.colleague_email)
    return ("POST", "/v1/auth/logout", None, headers), ["auth.logged_out"]


async def _new_user(w: World) -> tuple[str, dict[str, str]]:
    email = unique_email("walker")
    accepted = await create_user(w.org, {"email": email, "password": PASSWORD})
    assert accepted.status_code == 201, accepted.text
    return email, await w.org.login(email)


async def _enrolled(w: World) -> tuple[str, str, dict[str, str]]:
    """A user with confirmed TOTP; the app's clock is fixed and moved past the used step."""
    email, headers = await _new_user(w)
    clock: FixedClock = w.org.app.state.clock
    secret = (await _post(w.org, "/v1/me/mfa/totp", {}, headers))["secret"]
    await _post(w.org, "/v1/me/mfa/totp/confirm", {"code": code_at(secret, clock.now())}, headers)
    clock.advance(seconds=STEP)
    return email, secret, headers


async def _second_factor(w: World) -> tuple[Call, list[str]]:
    email, secret, _ = await _enrolled(w)
    challenge = await _post(w.org, "/v1/auth/login", {"email": email, "password": PASSWORD}, {})
    code = code_at(secret, w.org.app.state.clock.now())
    body = {"mfa_token": challenge["mfa_token"], "code": code}
    return ("POST", "/v1/auth/mfa", body, {}), ["auth.login_succeeded"]


async def _required_enrolment(w: World) -> tuple[Call, list[str]]:
    email, _ = await _new_user(w)
    updated = await w.org.client.put(
        "/v1/settings/security", json={"mfa_required": True}, headers=w.org.headers
    )
    assert updated.status_code == 200, updated.text
    challenge = await _post(w.org, "/v1/auth/login", {"email": email, "password": PASSWORD}, {})
    # Starting an enrolment changes nothing yet that is audited; confirming it is.
    return ("POST", "/v1/auth/mfa/enrolment", {"mfa_token": challenge["mfa_token"]}, {}), []


async def _start_totp(w: World) -> tuple[Call, list[str]]:
    _, headers = await _new_user(w)
    return ("POST", "/v1/me/mfa/totp", None, headers), []


async def _confirm_totp(w: World) -> tuple[Call, list[str]]:
    _, headers = await _new_user(w)
    secret = (await _post(w.org, "/v1/me/mfa/totp", {}, headers))["secret"]
    code = code_at(secret, w.org.app.state.clock.now())
    return ("POST", "/v1/me/mfa/totp/confirm", {"code": code}, headers), ["user.mfa_enrolled"]


async def _disable_totp(w: World) -> tuple[Call, list[str]]:
    _, _, headers = await _enrolled(w)
    return ("POST", "/v1/me/mfa/totp/disable", {"password": PASSWORD}, headers), [
        "user.mfa_disabled"
    ]


async def _recovery_codes(w: World) -> tuple[Call, list[str]]:
    _, _, headers = await _enrolled(w)
    return ("POST", "/v1/me/mfa/recovery-codes", {"password": PASSWORD}, headers), [
        "user.recovery_codes_replaced"
    ]


async def _end_my_session(w: World) -> tuple[Call, list[str]]:
    email, headers = await _new_user(w)
    other = await w.org.login(email)
    sessions = (await w.org.client.get("/v1/me/sessions", headers=headers)).json()["data"]
    target = next(s for s in sessions if not s["current"])
    assert other
    return ("DELETE", f"/v1/me/sessions/{target['id']}", None, headers), ["auth.session_ended"]


async def _password(w: World) -> tuple[Call, list[str]]:
    _, headers = await _new_user(w)
    body = {"current_password": PASSWORD, "new_password": PASSWORD + "-new"}
    return ("POST", "/v1/me/password", body, headers), ["user.password_changed"]


async def _create_user(w: World) -> tuple[Call, list[str]]:
    body = {"email": unique_email("created")}
    return ("POST", "/v1/users", body, w.org.headers), ["user.invited"]


async def _accept_invitation(w: World) -> tuple[Call, list[str]]:
    email = unique_email("accepted")
    invited = await w.org.client.post("/v1/users", json={"email": email}, headers=w.org.headers)
    assert invited.status_code == 202, invited.text
    token = await mailed_invitation_token(w.org.app, w.org.id, email)
    body = {"token": token, "password": PASSWORD}
    return ("POST", "/v1/auth/invitations/accept", body, {}), [
        "user.created",
        "user.invitation_accepted",
    ]


async def _update_user(w: World) -> tuple[Call, list[str]]:
    path = f"/v1/users/{w.colleague_id}"
    return ("PATCH", path, {"full_name": f"Renamed {uuid.uuid4().hex[:6]}"}, w.org.headers), [
        "user.updated"
    ]


async def _end_user_sessions(w: World) -> tuple[Call, list[str]]:
    return ("DELETE", f"/v1/users/{w.colleague_id}/sessions", None, w.org.headers), [
        "user.sessions_ended"
    ]


async def _unlock_user(w: World) -> tuple[Call, list[str]]:
    return ("POST", f"/v1/users/{w.colleague_id}/unlock", None, w.org.headers), [
        "user.sign_in_unlocked"
    ]


async def _classify(w: World) -> tuple[Call, list[str]]:
    body = {"fields": {"title": "personal"}}
    return ("PUT", "/v1/settings/fields/leads", body, w.org.headers), ["settings.fields_classified"]


async def _ip_allowlist(w: World) -> tuple[Call, list[str]]:
    body = {"enabled": False, "cidrs": ["198.51.100.0/24"]}
    return ("PUT", "/v1/settings/ip-allowlist", body, w.org.headers), [
        "settings.ip_allowlist_changed"
    ]


MAIL_TEMPLATE = "/v1/settings/mail-templates/portal_code/en"
MAIL_TEMPLATE_BODY = {"subject": "Your code", "text": "{{ code }}", "html": "<p>{{ code }}</p>"}


async def _mail_template_set(w: World) -> tuple[Call, list[str]]:
    return ("PUT", MAIL_TEMPLATE, MAIL_TEMPLATE_BODY, w.org.headers), ["settings.mail_template_set"]


async def _mail_template_removed(w: World) -> tuple[Call, list[str]]:
    stored = await w.org.client.put(MAIL_TEMPLATE, json=MAIL_TEMPLATE_BODY, headers=w.org.headers)
    assert stored.status_code == 200, stored.text
    return ("DELETE", MAIL_TEMPLATE, None, w.org.headers), ["settings.mail_template_removed"]


async def _mail_template_preview(w: World) -> tuple[Call, list[str]]:
    return ("POST", f"{MAIL_TEMPLATE}/preview", MAIL_TEMPLATE_BODY, w.org.headers), []


async def _security(w: World) -> tuple[Call, list[str]]:
    return ("PUT", "/v1/settings/security", {"mfa_required": False}, w.org.headers), [
        "settings.security_changed"
    ]


async def _sharing(w: World) -> tuple[Call, list[str]]:
    body = {"leads": "read_only", "contacts": "private", "accounts": "private"}
    return ("PUT", "/v1/settings/sharing", body, w.org.headers), ["settings.sharing_changed"]


async def _erase(w: World) -> tuple[Call, list[str]]:
    lead = await _post(w.org, "/v1/leads", {"last_name": "Erased", "email": unique_email()})
    body = {"module": "leads", "record_id": lead["id"]}
    return ("POST", "/v1/privacy/erasures", body, w.org.headers), ["privacy.subject_erased"]


async def _unblock(w: World) -> tuple[Call, list[str]]:
    lead = await _post(w.org, "/v1/leads", {"last_name": "Erased", "email": unique_email()})
    await _post(w.org, "/v1/privacy/erasures", {"module": "leads", "record_id": lead["id"]})
    listed = await w.org.client.get("/v1/privacy/blocklist", headers=w.org.headers)
    entry = listed.json()["data"][0]["id"]
    return ("DELETE", f"/v1/privacy/blocklist/{entry}", None, w.org.headers), [
        "privacy.blocklist_entry_removed"
    ]


async def _lift_restriction(w: World) -> tuple[Call, list[str]]:
    lead = await _post(w.org, "/v1/leads", {"last_name": "Restricted", "email": unique_email()})
    subject_id = await restrict(w.org, "leads", lead["id"])
    path = f"/v1/privacy/restrictions/{subject_id}/lift"
    return ("POST", path, None, w.org.headers), ["privacy.restriction_lifted"]


def _privacy_request_cases() -> dict[tuple[str, str], Case]:
    async def filed(w: World, kind: str = "access") -> str:
        lead = await _post(w.org, "/v1/leads", {"last_name": "Asker", "email": unique_email()})
        body = {"type": kind, "module": "leads", "record_id": lead["id"]}
        return str((await _post(w.org, "/v1/privacy/requests", body))["id"])

    async def file(w: World) -> tuple[Call, list[str]]:
        lead = await _post(w.org, "/v1/leads", {"last_name": "Asker", "email": unique_email()})
        body = {"type": "access", "module": "leads", "record_id": lead["id"]}
        return ("POST", "/v1/privacy/requests", body, w.org.headers), ["privacy.request_filed"]

    def step(action: str, body: dict[str, Any], expected: list[str]) -> Case:
        async def case(w: World) -> tuple[Call, list[str]]:
            path = f"/v1/privacy/requests/{await filed(w)}/{action}"
            return ("POST", path, body, w.org.headers), expected

        return case

    async def complete(w: World) -> tuple[Call, list[str]]:
        request_id = await filed(w, "restriction")
        await _post(w.org, f"/v1/privacy/requests/{request_id}/verify", {})
        path = f"/v1/privacy/requests/{request_id}/complete"
        return ("POST", path, None, w.org.headers), [
            "privacy.processing_restricted",
            "privacy.request_completed",
        ]

    base = "/v1/privacy/requests/{request_id}"
    return {
        ("POST", "/v1/privacy/requests"): file,
        ("POST", f"{base}/verify"): step("verify", {}, ["privacy.request_verified"]),
        ("POST", f"{base}/extend"): step(
            "extend", {"months": 1, "reason": "Archives"}, ["privacy.request_extended"]
        ),
        ("POST", f"{base}/reject"): step(
            "reject", {"reason": "Unfounded"}, ["privacy.request_rejected"]
        ),
        ("POST", f"{base}/complete"): complete,
    }


def _crud(
    kind: str, path: str, create_body: Callable[[], dict[str, Any]], update_body: dict[str, Any]
) -> dict[tuple[str, str], Case]:
    async def create(w: World) -> tuple[Call, list[str]]:
        return ("POST", path, create_body(), w.org.headers), [f"{kind}.created"]

    async def update(w: World) -> tuple[Call, list[str]]:
        made = await _post(w.org, path, create_body())
        return ("PATCH", f"{path}/{made['id']}", update_body, w.org.headers), [f"{kind}.updated"]

    async def delete(w: World) -> tuple[Call, list[str]]:
        made = await _post(w.org, path, create_body())
        return ("DELETE", f"{path}/{made['id']}", None, w.org.headers), [f"{kind}.deleted"]

    item = f"{path}/{{{kind}_id}}"
    return {("POST", path): create, ("PATCH", item): update, ("DELETE", item): delete}


def _partner_clients() -> dict[tuple[str, str], Case]:
    path = "/v1/oauth-clients"

    def body() -> dict[str, Any]:
        return {"name": f"Partner {uuid.uuid4().hex[:8]}", "scopes": ["crm.leads.read"]}

    async def create(w: World) -> tuple[Call, list[str]]:
        return ("POST", path, body(), w.org.headers), ["oauth_client.created"]

    async def update(w: World) -> tuple[Call, list[str]]:
        made = await _post(w.org, path, body())
        item = f"{path}/{made['client_id']}"
        return ("PATCH", item, {"name": "Renamed"}, w.org.headers), ["oauth_client.updated"]

    async def rotate(w: World) -> tuple[Call, list[str]]:
        made = await _post(w.org, path, body())
        item = f"{path}/{made['client_id']}/secret"
        return ("POST", item, None, w.org.headers), ["oauth_client.secret_rotated"]

    async def delete(w: World) -> tuple[Call, list[str]]:
        made = await _post(w.org, path, body())
        item = f"{path}/{made['client_id']}"
        return ("DELETE", item, None, w.org.headers), ["oauth_client.deleted"]

    item = f"{path}/{{client_id}}"
    return {
        ("POST", path): create,
        ("PATCH", item): update,
        ("POST", f"{item}/secret"): rotate,
        ("DELETE", item): delete,
    }


def _data_leaving() -> dict[tuple[str, str], Case]:
    path = "/v1/webhooks"

    def body() -> dict[str, Any]:
        return {
            "url": f"https://receiver-{uuid.uuid4().hex[:8]}.example.com/hook",
            "events": ["contact.created"],
            "description": "audit test",
        }

    async def compliance(w: World) -> tuple[Call, list[str]]:
        settings = {"withhold": {"export": ["sensitive"]}}
        return ("PUT", "/v1/settings/compliance", settings, w.org.headers), [
            "settings.compliance_changed"
        ]

    async def create(w: World) -> tuple[Call, list[str]]:
        return ("POST", path, body(), w.org.headers), ["webhook.created"]

    async def update(w: World) -> tuple[Call, list[str]]:
        made = await _post(w.org, path, body())
        item = f"{path}/{made['id']}"
        return ("PATCH", item, {"description": "renamed"}, w.org.headers), ["webhook.updated"]

    async def rotate(w: World) -> tuple[Call, list[str]]:
        made = await _post(w.org, path, body())
        item = f"{path}/{made['id']}/secret"
        return ("POST", item, None, w.org.headers), ["webhook.secret_rotated"]

    async def delete(w: World) -> tuple[Call, list[str]]:
        made = await _post(w.org, path, body())
        return ("DELETE", f"{path}/{made['id']}", None, w.org.headers), ["webhook.deleted"]

    item = f"{path}/{{webhook_id}}"
    return {
        ("PUT", "/v1/settings/compliance"): compliance,
        ("POST", path): create,
        ("PATCH", item): update,
        ("POST", f"{item}/secret"): rotate,
        ("DELETE", item): delete,
    }


def _named(prefix: str) -> Callable[[], dict[str, Any]]:
    return lambda: {"name": f"{prefix} {uuid.uuid4().hex[:8]}"}


def _consent_cases() -> dict[tuple[str, str], Case]:
    purpose = {
        "name": "Newsletter",
        "description": "Monthly news.",
        "notice_version": "1",
        "notice_url": "https://example.com/privacy",
    }

    async def create_purpose(w: World) -> tuple[Call, list[str]]:
        body = {"key": f"p-{uuid.uuid4().hex[:8]}", **purpose}
        return ("POST", "/v1/consent/purposes", body, w.org.headers), ["consent.purpose_created"]

    async def _purpose_key(w: World) -> str:
        key = f"p-{uuid.uuid4().hex[:8]}"
        await _post(w.org, "/v1/consent/purposes", {"key": key, **purpose})
        return key

    def record_consent(module: str) -> Case:
        async def case(w: World) -> tuple[Call, list[str]]:
            key = await _purpose_key(w)
            record = await _post(w.org, f"/v1/{module}", {"last_name": "Lovelace"})
            body = {"purpose": key, "status": "granted", "channel": "phone"}
            path = f"/v1/{module}/{record['id']}/consents"
            return ("POST", path, body, w.org.headers), ["consent.recorded"]

        return case

    async def consent_request(w: World) -> tuple[Call, list[str]]:
        key = await _purpose_key(w)
        record = await _post(w.org, "/v1/contacts", {"last_name": "Lovelace"})
        body = {
            "module": "contacts",
            "record_id": record["id"],
            "purposes": [key],
            "channel": "phone",
            "deadline": "2099-01-01T00:00:00Z",
        }
        return ("POST", "/v1/consent/requests", body, w.org.headers), ["consent.request_created"]

    form = {
        "name": "Sign-up",
        "module": "leads",
        "fields": [{"name": "last_name", "required": True}],
        "double_opt_in": False,
    }

    async def create_form(w: World) -> tuple[Call, list[str]]:
        return ("POST", "/v1/webforms", form, w.org.headers), ["webform.created"]

    async def update_form(w: World) -> tuple[Call, list[str]]:
        created = await _post(w.org, "/v1/webforms", form)
        path = f"/v1/webforms/{created['id']}"
        return ("PATCH", path, {"name": "Renamed"}, w.org.headers), ["webform.updated"]

    return {
        ("POST", "/v1/consent/purposes"): create_purpose,
        ("POST", "/v1/leads/{record_id}/consents"): record_consent("leads"),
        ("POST", "/v1/contacts/{record_id}/consents"): record_consent("contacts"),
        ("POST", "/v1/consent/requests"): consent_request,
        ("POST", "/v1/webforms"): create_form,
        ("PATCH", "/v1/webforms/{form_id}"): update_form,
    }


CASES: dict[tuple[str, str], Case] = {
    ("POST", "/v1/auth/login"): _login,
    ("POST", "/v1/auth/mfa"): _second_factor,
    ("POST", "/v1/auth/mfa/enrolment"): _required_enrolment,
    ("POST", "/v1/auth/logout"): _logout,
    ("POST", "/v1/me/mfa/totp"): _start_totp,
    ("POST", "/v1/me/mfa/totp/confirm"): _confirm_totp,
    ("POST", "/v1/me/mfa/totp/disable"): _disable_totp,
    ("POST", "/v1/me/mfa/recovery-codes"): _recovery_codes,
    ("DELETE", "/v1/me/sessions/{session_id}"): _end_my_session,
    ("POST", "/v1/me/password"): _password,
    ("POST", "/v1/users"): _create_user,
    ("POST", "/v1/auth/invitations/accept"): _accept_invitation,
    ("PATCH", "/v1/users/{user_id}"): _update_user,
    ("DELETE", "/v1/users/{user_id}/sessions"): _end_user_sessions,
    ("POST", "/v1/users/{user_id}/unlock"): _unlock_user,
    **_record_cases("leads", "lead", {"last_name": "Lovelace", "company": "Engines"}),
    **_record_cases("contacts", "contact", {"last_name": "Lovelace"}),
    **_record_cases("accounts", "account", {"name": "Engines Ltd"}),
    ("POST", "/v1/leads/{record_id}/convert"): _convert,
    **_consent_cases(),
    ("POST", "/v1/recycle-bin/{module}/{record_id}/restore"): _restore,
    ("DELETE", "/v1/recycle-bin/{module}/{record_id}"): _purge,
    ("PUT", "/v1/settings/fields/{module}"): _classify,
    ("PUT", "/v1/settings/ip-allowlist"): _ip_allowlist,
    ("PUT", "/v1/settings/security"): _security,
    ("PUT", "/v1/settings/mail-templates/{kind}/{language}"): _mail_template_set,
    ("DELETE", "/v1/settings/mail-templates/{kind}/{language}"): _mail_template_removed,
    ("POST", "/v1/settings/mail-templates/{kind}/{language}/preview"): _mail_template_preview,
    ("PUT", "/v1/settings/sharing"): _sharing,
    **_crud("profile", "/v1/profiles", _named("Profile"), {"view_sensitive": True}),
    **_crud("role", "/v1/roles", _named("Role"), {"name": "Renamed role"}),
    **_crud("group", "/v1/groups", _named("Group"), {"name": "Renamed group"}),
    ("POST", "/v1/privacy/erasures"): _erase,
    ("DELETE", "/v1/privacy/blocklist/{entry_id}"): _unblock,
    ("POST", "/v1/privacy/restrictions/{subject_id}/lift"): _lift_restriction,
    **_privacy_request_cases(),
    **_partner_clients(),
    **_data_leaving(),
}


def _state_changing_routes() -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods - {"GET", "HEAD"}
    }


def test_every_state_changing_route_has_an_audit_expectation() -> None:
    routes = _state_changing_routes()
    assert routes - set(CASES) - set(ELSEWHERE) == set(), "routes without an audit expectation"
    assert set(CASES) - routes == set(), "cases for routes that do not exist"


async def _events_of(org: Org, request_id: str) -> list[AuditEvent]:
    async with org.app.state.sessionmaker() as session:
        result = await session.execute(
            select(AuditEvent).where(
                AuditEvent.organization_id == org.id, AuditEvent.request_id == request_id
            )
        )
        return list(result.scalars())


@pytest.fixture
async def world(org: Org) -> AsyncIterator[World]:
    # A fixed clock for the TOTP cases; the app outlives the test, so it is put back.
    original = org.app.state.clock
    org.app.state.clock = FixedClock(step_start_near_now())
    try:
        email = unique_email("colleague")
        accepted = await create_user(org, {"email": email, "password": PASSWORD})
        assert accepted.status_code == 201, accepted.text
        colleague = accepted.json()
        group = await _post(org, "/v1/groups", {"name": "Walkers"})
        yield World(
            org=org, colleague_id=colleague["id"], colleague_email=email, ids={"group": group["id"]}
        )
    finally:
        org.app.state.clock = original


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
async def test_each_write_writes_exactly_its_audit_events(
    world: World, route: tuple[str, str]
) -> None:
    (method, path, body, headers), expected = await CASES[route](world)
    request_id = uuid.uuid4().hex
    response = await world.org.client.request(
        method, path, json=body, headers={**headers, "X-Request-ID": request_id}
    )
    assert response.status_code < 300, (route, response.status_code, response.text)

    events = await _events_of(world.org, request_id)
    assert Counter(e.action for e in events) == Counter(expected), route
    for event in events:
        assert event.outcome == "success"
        assert event.occurred_at is not None and event.mac
        assert isinstance(json.loads(event.fields), list)
    # The request's own events name who acted: the signed-in user, or the one signing in.
    assert all(e.actor_type == "user" and e.actor_id is not None for e in events)


async def test_a_refused_write_writes_no_event_and_changes_nothing(world: World) -> None:
    request_id = uuid.uuid4().hex
    response = await world.org.client.post(
        "/v1/contacts",
        json={"last_name": ""},
        headers={**world.org.headers, "X-Request-ID": request_id},
    )
    assert response.status_code == 422
    assert await _events_of(world.org, request_id) == []
