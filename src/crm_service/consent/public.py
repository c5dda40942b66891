"""What each public page shows: one function per public route, returning the page to render
(the routers render it, see `pages.py`). A link that is unknown, used or expired is a page
saying so (200), like any other state of the link: errors are problem+json, pages are not.
Nothing here needs a principal: a form's id or a link's token is all a visitor brings."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.config import Settings
from crm_service.consent import requests, webforms
from crm_service.consent.models import ConsentStatus
from crm_service.consent.pages import labels
from crm_service.db.tenancy import Organization


@dataclass(frozen=True)
class Page:
    template: str
    language: str
    organization_name: str
    status_code: int = 200
    context: dict[str, Any] = field(default_factory=dict)


async def _organization_name(session: AsyncSession, organization_id: uuid.UUID) -> str:
    organization = await session.get(Organization, organization_id)
    return organization.name if organization is not None else ""


def _form_context(form: webforms.PublicForm | None) -> dict[str, Any]:
    if form is None:
        return {"form": None}
    definition = form.definition
    return {"form": form, "labels": labels(definition.module, definition.language)}


async def form_page(session: AsyncSession, form_id: uuid.UUID) -> Page:
    form = await webforms.public_form(session, form_id)
    return Page(
        "form.html",
        form.definition.language,
        await _organization_name(session, form.definition.organization_id),
        context=_form_context(form),
    )


async def submit_form(
    session: AsyncSession,
    *,
    form_id: uuid.UUID,
    data: dict[str, Any],
    client_ip: str | None,
    user_agent: str | None,
    now: datetime,
    settings: Settings,
) -> Page:
    form = await webforms.submit(
        session,
        form_id=form_id,
        data=data,
        client_ip=client_ip,
        user_agent=user_agent,
        now=now,
        settings=settings,
    )
    return Page(
        "submitted.html",
        form.definition.language,
        await _organization_name(session, form.definition.organization_id),
        status_code=202,
        context={"redirect_url": form.definition.redirect_url},
    )


async def _confirmation(session: AsyncSession, token: str, state: webforms.LinkState) -> Page:
    form = state.form
    context: dict[str, Any] = {"state": state.state, "token": token, **_form_context(form)}
    if form is None:
        return Page("confirm.html", "en", "", context=context)
    context["purposes"] = form.purposes
    return Page(
        "confirm.html",
        form.definition.language,
        await _organization_name(session, form.definition.organization_id),
        context=context,
    )


async def confirmation_page(session: AsyncSession, token: str, now: datetime) -> Page:
    """The page a mailed link opens; it only shows (a GET confirms nothing)."""
    return await _confirmation(session, token, await webforms.link_state(session, token, now))


async def confirm_submission(
    session: AsyncSession,
    *,
    token: str,
    now: datetime,
    client_ip: str | None,
    user_agent: str | None,
) -> Page:
    state = await webforms.confirm(
        session, token=token, now=now, client_ip=client_ip, user_agent=user_agent
    )
    return await _confirmation(session, token, state)


async def consent_page(session: AsyncSession, token: str, now: datetime) -> Page:
    opened = await requests.open_link(session, token, now)
    if opened is None:
        return Page("consent.html", "en", "", context={"state": "unknown"})
    request, purposes = opened
    return Page(
        "consent.html",
        request.language,
        await _organization_name(session, request.organization_id),
        context={
            "state": "pending",
            "token": token,
            "purposes": purposes,
            "deadline": request.deadline.strftime("%Y-%m-%d %H:%M UTC"),
        },
    )


async def answer_consent(
    session: AsyncSession,
    *,
    token: str,
    answers: dict[str, str],
    now: datetime,
    client_ip: str | None,
    user_agent: str | None,
) -> Page:
    opened = await requests.open_link(session, token, now)
    if opened is None:
        return Page("consent.html", "en", "", context={"state": "unknown"})
    request, _ = opened
    statuses = {
        key: ConsentStatus.GRANTED if value == "granted" else ConsentStatus.REFUSED
        for key, value in answers.items()
    }
    recorded = await requests.answer(
        session,
        token=token,
        answers=statuses,
        now=now,
        client_ip=client_ip,
        user_agent=user_agent,
    )
    name = await _organization_name(session, request.organization_id)
    if not recorded:
        return Page("consent.html", request.language, name, context={"state": "unknown"})
    return Page("consent.html", request.language, name, context={"state": "answered"})
