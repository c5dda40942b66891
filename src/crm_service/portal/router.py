"""The privacy portal's public routes (on the explicit public list): `/portal/{organization_id}`,
the address an organization links to from its privacy notice (the id is the one its SSO
start and receipt keys use).

Plain HTML forms, no JavaScript. Before sign-in the visitor brings an email address, then
the mailed code with the sign-in token of the code form; after it, the session cookie
(`crm_portal`: HttpOnly, SameSite=Strict, Secure when the service is served over https, its
path this organization's portal only) and, with every POST, the session's synchronizer token
(a hidden `csrf` field): a POST without the right one answers a 403 page and changes nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Literal

from fastapi import Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_service.consent.public_router import FORM, HTML_PAGE, form_body
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import FieldProblem, Forbidden, ValidationFailed, problem_responses
from crm_service.kit.schemas import MULTI_LINE_PATTERN, SINGLE_LINE_PATTERN
from crm_service.portal import service, signin
from crm_service.portal.pages import LANGUAGES, negotiate, render
from crm_service.portal.signin import SignedIn
from crm_service.privacy.models import PrivacyRequestType

router = CRMRouter(tags=["privacy portal"])

SESSION_COOKIE = "crm_portal"
LANGUAGE_COOKIE = "crm_portal_lang"
NOTICES = {
    "consent": "consent_saved",
    "answer": "answer_saved",
    "gone": "answer_gone",
}
REQUEST_TYPES = tuple(kind.value for kind in PrivacyRequestType)
REDIRECT = {
    "description": "See Other: the next page (`Location`).",
    "headers": {"Location": {"schema": {"type": "string", "maxLength": 2048}}},
}
_TEXT = {"type": "string", "maxLength": 254, "pattern": SINGLE_LINE_PATTERN}
_CSRF = {"type": "string", "maxLength": 64, "pattern": SINGLE_LINE_PATTERN}
_EMAIL = {"type": "string", "format": "email", "minLength": 3, "maxLength": 254}


class PortalFormRefused(Forbidden):
    slug, title = "form-refused", "Form refused"


def _form(properties: dict[str, Any], *, required: list[str], **extra: Any) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        **extra,
    }
    return {"requestBody": {"required": True, "content": {FORM: {"schema": schema}}}}


def _base(organization_id: uuid.UUID) -> str:
    return f"/portal/{organization_id}"


def _language(request: Request) -> str:
    return negotiate(
        request.query_params.get("lang"),
        request.cookies.get(LANGUAGE_COOKIE),
        request.headers.get("accept-language", ""),
    )


def _cookie(request: Request, organization_id: uuid.UUID) -> dict[str, Any]:
    return {
        "path": _base(organization_id),
        "httponly": True,
        "samesite": "strict",
        "secure": request.app.state.settings.serves_https,
    }


def _client(request: Request) -> dict[str, Any]:
    return {
        "client_ip": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
        "now": request.app.state.clock.now(),
    }


def _text(data: dict[str, Any], name: str, max_length: int = 254) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and len(value) <= max_length else None


async def _page(
    request: Request,
    session: DbSession,
    organization_id: uuid.UUID,
    template: str,
    *,
    visit: SignedIn | None = None,
    status_code: int = 200,
    here: str | None = None,
    **context: Any,
) -> HTMLResponse:
    organization = await signin.organization(session, organization_id)
    language = _language(request)
    context = {"error": None, "notice": None, "email": None, **context}
    response = render(
        template,
        language=language,
        organization_name=organization.name,
        status_code=status_code,
        base=_base(organization_id),
        here=here or _base(organization_id),
        visit=visit,
        **context,
    )
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, language, **_cookie(request, organization_id))
    return response


async def _visit(
    request: Request, session: DbSession, organization_id: uuid.UUID
) -> SignedIn | None:
    return await signin.signed_in(
        session,
        organization_id=organization_id,
        session_token=request.cookies.get(SESSION_COOKIE),
        now=request.app.state.clock.now(),
        settings=request.app.state.settings,
    )


async def _signed_in_post(
    request: Request, session: DbSession, organization_id: uuid.UUID
) -> tuple[SignedIn | None, dict[str, Any], HTMLResponse | None]:
    """The session of a POST whose synchronizer token matches it, and the form; otherwise
    the 403 page to answer (no session, or a token missing or wrong)."""
    data = await form_body(request)
    visit = await _visit(request, session, organization_id)
    token = request.cookies.get(SESSION_COOKIE) or ""
    if visit is None or not signin.csrf_matches(token, _text(data, "csrf", 64)):
        if not _wants_page(request):
            raise PortalFormRefused(
                "No portal session, or the form's `csrf` token is not the session's."
            )
        refused = await _page(request, session, organization_id, "refused.html", status_code=403)
        return None, data, refused
    return visit, data, None


def _wants_page(request: Request) -> bool:
    """A browser gets a refusal as a page; any other client as problem+json."""
    return "text/html" in request.headers.get("accept", "")


async def _bad_email(
    request: Request, session: DbSession, organization_id: uuid.UUID
) -> HTMLResponse:
    if not _wants_page(request):
        raise ValidationFailed(
            "`email` must be one email address.",
            errors=[FieldProblem(field="body.email", rule="email", message="an email address")],
        )
    return await _page(
        request, session, organization_id, "sign_in.html", status_code=422, error="email_invalid"
    )


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


@router.get(
    "/portal/{organization_id}",
    operation_id="showPortalSignIn",
    summary="The privacy portal's sign-in page (public)",
    response_class=HTMLResponse,
    responses={200: HTML_PAGE, 303: REDIRECT, **problem_responses(404, 422)},
)
async def show_sign_in(
    organization_id: uuid.UUID, request: Request, session: DbSession
) -> Response:
    """Asks for an email address; a signed-in visitor is sent on to their data."""
    if await _visit(request, session, organization_id) is not None:
        return _see_other(f"{_base(organization_id)}/data")
    notice = {"out": "signed_out", "ended": "session_ended"}.get(
        request.query_params.get("signed", "")
    )
    return await _page(request, session, organization_id, "sign_in.html", notice=notice)


@router.post(
    "/portal/{organization_id}/code",
    operation_id="requestPortalCode",
    summary="Ask for a one-time sign-in code (public; form-encoded `email`)",
    response_class=HTMLResponse,
    responses={200: HTML_PAGE, **problem_responses(400, 404, 422, 429)},
    openapi_extra=_form({"email": _EMAIL}, required=["email"]),
)
async def request_code(
    organization_id: uuid.UUID, request: Request, session: DbSession
) -> Response:
    """The same page, after the same time, whether or not the address is known: a code is
    mailed only to an address the organization holds data for."""
    started = time.monotonic()
    data = await form_body(request)
    email = signin.valid_email(_text(data, "email"))
    if email is None:
        return await _bad_email(request, session, organization_id)
    client = _client(request)
    token = await signin.request_code(
        session,
        organization_id=organization_id,
        email=email,
        language=_language(request),
        client_ip=client["client_ip"],
        now=client["now"],
        settings=request.app.state.settings,
    )
    floor = request.app.state.settings.portal_answer_seconds
    await asyncio.sleep(max(0.0, started + floor - time.monotonic()))
    return await _page(
        request, session, organization_id, "code.html", sign_in_token=token, email=email
    )


@router.post(
    "/portal/{organization_id}/sign-in",
    operation_id="signInToPortal",
    summary="Sign in to the privacy portal with the mailed code (public)",
    response_class=HTMLResponse,
    responses={200: HTML_PAGE, 303: REDIRECT, **problem_responses(400, 404, 422, 429)},
    openapi_extra=_form(
        {
            "sign_in": _CSRF,
            "email": _EMAIL,
            "code": {"type": "string", "maxLength": 12, "pattern": SINGLE_LINE_PATTERN},
        },
        required=["sign_in", "email", "code"],
    ),
)
async def sign_in(organization_id: uuid.UUID, request: Request, session: DbSession) -> Response:
    """A right code opens a session (the cookie) and goes on to the data; a wrong, used,
    expired or exhausted one answers the code page again, saying so."""
    data = await form_body(request)
    token = _text(data, "sign_in", 64)
    email = signin.valid_email(_text(data, "email"))
    code = _text(data, "code", 12) or ""
    if token is None or email is None:
        return await _bad_email(request, session, organization_id)
    client = _client(request)
    session_token = await signin.sign_in(
        session,
        organization_id=organization_id,
        sign_in_token=token,
        email=email,
        code=code,
        language=_language(request),
        client_ip=client["client_ip"],
        now=client["now"],
        settings=request.app.state.settings,
    )
    if session_token is None:
        return await _page(
            request,
            session,
            organization_id,
            "code.html",
            sign_in_token=token,
            email=email,
            error="code_wrong",
        )
    response = _see_other(f"{_base(organization_id)}/data")
    response.set_cookie(
        SESSION_COOKIE,
        session_token,
        max_age=request.app.state.settings.portal_session_absolute_seconds,
        **_cookie(request, organization_id),
    )
    return response


@router.post(
    "/portal/{organization_id}/sign-out",
    operation_id="signOutOfPortal",
    summary="Sign out of the privacy portal (public; the session's `csrf` token)",
    status_code=303,
    response_class=Response,
    responses={303: REDIRECT, **problem_responses(400, 403, 404, 422)},
    openapi_extra=_form({"csrf": _CSRF}, required=["csrf"]),
)
async def sign_out(organization_id: uuid.UUID, request: Request, session: DbSession) -> Response:
    """Ends the session at once, on every instance; the cookie is cleared."""
    visit, _, refused = await _signed_in_post(request, session, organization_id)
    if visit is None:
        assert refused is not None
        return refused
    await signin.sign_out(session, visit=visit, client_ip=_client(request)["client_ip"])
    response = _see_other(f"{_base(organization_id)}?signed=out")
    response.delete_cookie(SESSION_COOKIE, **_cookie(request, organization_id))
    return response


@router.get(
    "/portal/{organization_id}/data",
    operation_id="showPortalData",
    summary="The signed-in person's data, consent and open questions (public; the session)",
    response_class=HTMLResponse,
    responses={200: HTML_PAGE, 303: REDIRECT, **problem_responses(404, 422)},
)
async def show_data(organization_id: uuid.UUID, request: Request, session: DbSession) -> Response:
    """Every lead and contact of the address, complete; consent per purpose with a button to
    give and one to withdraw; the consent requests waiting for an answer. Without a session:
    back to sign-in."""
    visit = await _visit(request, session, organization_id)
    if visit is None:
        ended = "?signed=ended" if SESSION_COOKIE in request.cookies else ""
        return _see_other(f"{_base(organization_id)}{ended}")
    data = await service.your_data(session, visit=visit, language=_language(request))
    return await _page(
        request,
        session,
        organization_id,
        "data.html",
        visit=visit,
        data=data,
        here=f"{_base(organization_id)}/data",
        notice=NOTICES.get(request.query_params.get("saved", "")),
    )


@router.post(
    "/portal/{organization_id}/consent",
    operation_id="changePortalConsent",
    summary="Give or withdraw consent for one purpose (public; the session's `csrf` token)",
    status_code=303,
    response_class=Response,
    responses={303: REDIRECT, **problem_responses(400, 403, 404, 422)},
    openapi_extra=_form(
        {
            "csrf": _CSRF,
            "purpose": {"type": "string", "maxLength": 64, "pattern": SINGLE_LINE_PATTERN},
            "status": {"type": "string", "enum": ["granted", "withdrawn"]},
        },
        required=["csrf", "purpose", "status"],
    ),
)
async def change_consent(
    organization_id: uuid.UUID, request: Request, session: DbSession
) -> Response:
    """One event in the consent ledger (channel `portal`, IP and user agent as evidence) for
    each data subject of the address."""
    visit, data, refused = await _signed_in_post(request, session, organization_id)
    if visit is None:
        assert refused is not None
        return refused
    await service.change_consent(
        session,
        visit=visit,
        purpose_key=_text(data, "purpose", 64) or "",
        status=_text(data, "status", 16) or "",
        **_client(request),
    )
    return _see_other(f"{_base(organization_id)}/data?saved=consent")


@router.post(
    "/portal/{organization_id}/consent-requests/{request_id}",
    operation_id="answerPortalConsentRequest",
    summary="Answer a consent request in the portal (public; form-encoded "
    "`purpose.<key>=granted|refused` and the session's `csrf` token)",
    status_code=303,
    response_class=Response,
    responses={303: REDIRECT, **problem_responses(400, 403, 404, 422)},
    openapi_extra=_form(
        {"csrf": _CSRF},
        required=["csrf"],
        patternProperties={
            r"^purpose\..{1,64}$": {"type": "string", "enum": ["granted", "refused"]}
        },
        maxProperties=51,
    ),
)
async def answer_consent_request(
    organization_id: uuid.UUID, request_id: uuid.UUID, request: Request, session: DbSession
) -> Response:
    """As the consent page answers it: one event per purpose asked, an unanswered purpose
    refused."""
    visit, data, refused = await _signed_in_post(request, session, organization_id)
    if visit is None:
        assert refused is not None
        return refused
    answers = {
        name.removeprefix("purpose."): str(value)
        for name, value in data.items()
        if name.startswith("purpose.")
    }
    answered = await service.answer_request(
        session, visit=visit, request_id=request_id, answers=answers, **_client(request)
    )
    return _see_other(f"{_base(organization_id)}/data?saved={'answer' if answered else 'gone'}")


@router.get(
    "/portal/{organization_id}/download",
    operation_id="downloadPortalData",
    summary="Download my data: JSON, or a zip of one CSV file per kind (public; the session)",
    responses={
        200: {
            "description": "The person's package, as an attachment.",
            "content": {
                "application/json": {"schema": {"type": "object", "maxProperties": 20}},
                "application/zip": {
                    "schema": {"type": "string", "format": "binary", "maxLength": 104857600}
                },
            },
        },
        303: REDIRECT,
        **problem_responses(404, 422),
    },
)
async def download(
    organization_id: uuid.UUID,
    request: Request,
    session: DbSession,
    format: Literal["json", "csv"] = "json",  # noqa: A002 - the query parameter's name
) -> Response:
    """Everything held on the person: records, where they came from, legal bases, history,
    consent events and requests; nothing masked or withheld. Audited."""
    visit = await _visit(request, session, organization_id)
    if visit is None:
        return _see_other(_base(organization_id))
    client = _client(request)
    package = await service.download(
        session, visit=visit, fmt=format, client_ip=client["client_ip"], now=client["now"]
    )
    return Response(
        package.body,
        media_type=package.media_type,
        headers={"Content-Disposition": f'attachment; filename="{package.filename}"'},
    )


@router.get(
    "/portal/{organization_id}/requests",
    operation_id="showPortalRequests",
    summary="The person's privacy requests, and forms to make one or ask for a correction "
    "(public; the session)",
    response_class=HTMLResponse,
    responses={200: HTML_PAGE, 303: REDIRECT, **problem_responses(404, 422)},
)
async def show_requests(
    organization_id: uuid.UUID, request: Request, session: DbSession
) -> Response:
    """Every request filed for the address, with its status and due date."""
    visit = await _visit(request, session, organization_id)
    if visit is None:
        return _see_other(_base(organization_id))
    language = _language(request)
    return await _page(
        request,
        session,
        organization_id,
        "requests.html",
        visit=visit,
        requests=await service.requests_of(session, visit=visit),
        corrections=await service.correction_form(session, visit=visit, language=language),
        types=REQUEST_TYPES,
        here=f"{_base(organization_id)}/requests",
        notice="request_filed" if request.query_params.get("filed") else None,
    )


@router.post(
    "/portal/{organization_id}/requests",
    operation_id="filePortalRequest",
    summary="Make a privacy request of any type, or ask for a correction (public; the "
    "session's `csrf` token)",
    status_code=303,
    response_class=Response,
    responses={303: REDIRECT, **problem_responses(400, 403, 404, 422)},
    openapi_extra=_form(
        {
            "csrf": _CSRF,
            "type": {"type": "string", "enum": list(REQUEST_TYPES)},
            "details": {"type": "string", "maxLength": 5000, "pattern": MULTI_LINE_PATTERN},
        },
        required=["csrf", "type"],
        patternProperties={
            r"^field\..{1,120}$": {
                "type": "string",
                "maxLength": 32000,
                "pattern": MULTI_LINE_PATTERN,
            }
        },
        maxProperties=200,
    ),
)
async def file_request(
    organization_id: uuid.UUID, request: Request, session: DbSession
) -> Response:
    """Filed in the person's name, in progress at once (the code proved the address), due a
    calendar month after today. A rectification carries the fields changed on the form."""
    visit, data, refused = await _signed_in_post(request, session, organization_id)
    if visit is None:
        assert refused is not None
        return refused
    client = _client(request)
    await service.file_request(
        session,
        visit=visit,
        type=_text(data, "type", 16) or "",
        details=(_text(data, "details", 5000) or "").strip() or None,
        corrections={name: str(value) for name, value in data.items() if name.startswith("field.")},
        language=_language(request),
        client_ip=client["client_ip"],
        now=client["now"],
    )
    return _see_other(f"{_base(organization_id)}/requests?filed=1")
