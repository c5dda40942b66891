"""The consent feature's public routes (on the explicit public list): web-form submission,
the double opt-in confirmation, the consent page and the receipt-signing keys. Each is
authenticated by what the visitor brings: a form id, or a 256-bit token in the URL."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response

from crm_service.consent import public, receipts
from crm_service.consent.pages import render
from crm_service.consent.public import Page
from crm_service.consent.schemas import JwkSet, SubmissionAccepted
from crm_service.consent.webforms import ACCEPTED, HONEYPOT, PURPOSES_FIELD, form_fields
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import BadRequest, FieldProblem, ValidationFailed, problem_responses
from crm_service.kit.modules import Module
from crm_service.kit.schemas import MULTI_LINE_PATTERN, single_line

router = CRMRouter(tags=["public pages"])
Token = single_line(64, pattern=r"^[A-Za-z0-9_-]{20,64}$")
FORM = "application/x-www-form-urlencoded"
# A server-rendered page: bounded (the templates are small; 64 KiB is far above any).
HTML_PAGE = {"content": {"text/html": {"schema": {"type": "string", "maxLength": 65536}}}}
_VALUE = {"type": "string", "maxLength": 32_000, "pattern": MULTI_LINE_PATTERN}
# Every field a form of either module can ask for, the purposes ticked and the honeypot.
FORM_SCHEMA = {
    "type": "object",
    "properties": {
        **{
            name: _VALUE
            for module in (Module.LEADS, Module.CONTACTS)
            for name in form_fields(module)
        },
        PURPOSES_FIELD: {"type": "array", "maxItems": 20, "items": _VALUE},
        HONEYPOT: _VALUE,
    },
    "additionalProperties": False,
}
# The consent page's answers: `purpose.<key>` is `granted` or `refused`, for the purposes
# asked (a request asks at most 20); nothing else is part of the form.
ANSWERS = ("granted", "refused")
MAX_ANSWERS = 20
_ANSWER_NAME = re.compile(r"^purpose\.[a-z0-9][a-z0-9_.-]{0,63}$")
ANSWER_SCHEMA = {
    "type": "object",
    "patternProperties": {_ANSWER_NAME.pattern: {"type": "string", "enum": list(ANSWERS)}},
    "additionalProperties": False,
    "maxProperties": MAX_ANSWERS,
}


def _page(page: Page) -> HTMLResponse:
    return render(
        page.template,
        language=page.language,
        organization_name=page.organization_name,
        status_code=page.status_code,
        **page.context,
    )


def _visitor(request: Request) -> dict[str, Any]:
    return {
        "client_ip": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
        "now": request.app.state.clock.now(),
    }


_TEXT = re.compile(MULTI_LINE_PATTERN)
_FIELD_NAME = re.compile(r"^[a-z_]{1,64}$")


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _refuse_control_characters(data: dict[str, Any]) -> dict[str, Any]:
    """422 naming each field whose text holds a control character (as every other input of
    the service refuses them), before anything looks at the values."""
    problems = []
    for name, value in data.items():
        where = f"body.{name}" if _FIELD_NAME.match(name) else "body"
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if not isinstance(item, str):
                continue
            rule = "control_character" if _TEXT.match(item) is None else None
            if rule is None and not _encodable(item):
                rule = "string_unicode"
            if rule is not None:
                problems.append(
                    FieldProblem(
                        field=f"{where}.{index}" if isinstance(value, list) else where,
                        rule=rule,
                        message="must be text without control characters (tab and line "
                        "breaks allowed) or lone surrogates",
                    )
                )
    if problems:
        raise ValidationFailed("Some fields hold control characters.", errors=problems[:50])
    return data


def _consent_answers(data: dict[str, Any]) -> dict[str, str]:
    """The answers by purpose key; 422 naming each field the consent form does not have or
    each answer that is neither `granted` nor `refused` (nothing is recorded then)."""
    problems = []
    for name, value in data.items():
        if _ANSWER_NAME.match(name) is None:
            problems.append(
                FieldProblem(
                    field="body",
                    rule="consent_answer",
                    message="the consent form has only `purpose.<key>` fields",
                )
            )
        elif not isinstance(value, str) or value not in ANSWERS:
            problems.append(
                FieldProblem(
                    field=f"body.{name}",
                    rule="consent_answer",
                    message="must be `granted` or `refused`",
                )
            )
    if len(data) > MAX_ANSWERS:
        problems.append(
            FieldProblem(
                field="body",
                rule="too_long",
                message=f"a consent request asks at most {MAX_ANSWERS} purposes",
            )
        )
    if problems:
        raise ValidationFailed("The consent form's answers are not valid.", errors=problems[:50])
    return {name.removeprefix("purpose."): value for name, value in data.items()}


async def form_body(request: Request) -> dict[str, Any]:
    """A submission's fields from a form-encoded or JSON body (repeated `purposes` kept as
    a list), refusing control characters."""
    return _refuse_control_characters(await _parsed_body(request))


async def _parsed_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type == FORM:
        data: dict[str, Any] = {}
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            if name == PURPOSES_FIELD:
                data.setdefault(name, []).append(value)
            else:
                data[name] = value
        return data
    if content_type == "application/json":
        try:
            parsed = json.loads(body or b"null")
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise BadRequest("Send a JSON object or a form-encoded body.")
        return parsed
    raise BadRequest(f"Send {FORM} or application/json.")


@router.get(
    "/forms/{form_id}",
    operation_id="showWebform",
    summary="A web form's page (public)",
    response_class=HTMLResponse,
    responses={200: HTML_PAGE, **problem_responses(404, 422)},
)
async def show_form(form_id: uuid.UUID, session: DbSession) -> HTMLResponse:
    """The form as this service renders it: plain HTML, no JavaScript."""
    return _page(await public.form_page(session, form_id))


@router.post(
    "/forms/{form_id}",
    operation_id="submitWebform",
    summary="Submit a web form (public; form-encoded or JSON)",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmissionAccepted,
    responses={
        202: HTML_PAGE,
        **problem_responses(400, 404, 422, 429),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FORM: {"schema": FORM_SCHEMA},
                "application/json": {"schema": FORM_SCHEMA},
            },
        }
    },
)
async def submit_form(form_id: uuid.UUID, request: Request, session: DbSession) -> Response:
    """Answers 202 alike whether the address is new, known, throttled or a bot's (the
    honeypot field `crm_hp`); invalid fields answer 422, a flooding source 429. With double
    opt-in a confirmation link is mailed. A browser (`Accept: text/html`) gets a page."""
    page = await public.submit_form(
        session,
        form_id=form_id,
        data=await form_body(request),
        settings=request.app.state.settings,
        **_visitor(request),
    )
    if "text/html" in request.headers.get("accept", ""):
        return _page(page)
    return JSONResponse(
        SubmissionAccepted(detail=ACCEPTED).model_dump(), status_code=status.HTTP_202_ACCEPTED
    )


@router.get(
    "/forms/confirm/{token}",
    operation_id="showWebformConfirmation",
    summary="The double opt-in page a mailed link opens (public; confirms nothing)",
    response_class=HTMLResponse,
    responses={200: HTML_PAGE, **problem_responses(422)},
)
async def show_confirmation(token: Token, request: Request, session: DbSession) -> HTMLResponse:
    """Shows a button that POSTs the confirmation; a mail scanner following the link changes
    nothing. An expired link says so and offers the form again."""
    return _page(await public.confirmation_page(session, token, request.app.state.clock.now()))


@router.post(
    "/forms/confirm/{token}",
    operation_id="confirmWebformSubmission",
    summary="Confirm a web-form submission (public; the token is the proof)",
    response_class=HTMLResponse,
    responses={200: HTML_PAGE, **problem_responses(422)},
)
async def confirm(token: Token, request: Request, session: DbSession) -> HTMLResponse:
    """Creates the lead or contact with the consent given; a second confirmation changes
    nothing."""
    return _page(await public.confirm_submission(session, token=token, **_visitor(request)))


@router.get(
    "/consent/{token}",
    operation_id="showConsentRequest",
    summary="The consent page a consent request's mail links to (public)",
    response_class=HTMLResponse,
    responses={200: HTML_PAGE, **problem_responses(422)},
)
async def show_consent(token: Token, request: Request, session: DbSession) -> HTMLResponse:
    """Grant or refuse each purpose; nothing is recorded until the form is sent."""
    return _page(await public.consent_page(session, token, request.app.state.clock.now()))


@router.post(
    "/consent/{token}",
    operation_id="answerConsentRequest",
    summary="Answer a consent request (public; form-encoded `purpose.<key>=granted|refused`)",
    response_class=HTMLResponse,
    responses={200: HTML_PAGE, **problem_responses(400, 422)},
    openapi_extra={"requestBody": {"required": True, "content": {FORM: {"schema": ANSWER_SCHEMA}}}},
)
async def answer_consent(token: Token, request: Request, session: DbSession) -> HTMLResponse:
    """Records one event per purpose asked (channel `email`, IP and user agent as sealed
    evidence); a purpose left unanswered is refused. The link then stops working. A field
    the form does not have, or an answer other than `granted` or `refused`, answers 422."""
    answers = _consent_answers(await form_body(request))
    return _page(
        await public.answer_consent(session, token=token, answers=answers, **_visitor(request))
    )


@router.get(
    "/consent/receipt-keys/{organization_id}",
    operation_id="getConsentReceiptKeys",
    summary="The public keys that verify an organization's consent receipts (JWK Set)",
    response_model=JwkSet,
    responses=problem_responses(404, 422),
)
async def receipt_keys(organization_id: uuid.UUID, session: DbSession) -> JwkSet:
    """Ed25519 keys (`kty` OKP) for verifying receipts' Ed25519 signatures."""
    return JwkSet(**await receipts.public_keys(session, organization_id))
