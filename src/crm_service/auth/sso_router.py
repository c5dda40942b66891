"""HTTP for single sign-on: the browser's entry and callback, and the app's code exchange."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Request, status
from fastapi.responses import RedirectResponse

from crm_service.auth import service, sso
from crm_service.auth.schemas import SsoCodeExchange, TokenResponse
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.kit.schemas import single_line

router = CRMRouter(prefix="/v1/auth/sso", tags=["auth"])


@router.get(
    "/{organization_id}/start",
    operation_id="startSingleSignOn",
    summary="Browser entry: redirects to the organization's identity provider",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses=problem_responses(404, 422),
)
async def start_single_sign_on(
    organization_id: uuid.UUID,
    session: DbSession,
    request: Request,
    login_hint: Annotated[single_line(254) | None, Query()] = None,
) -> RedirectResponse:
    """A browser link: redirects to the organization's OpenID provider with a fresh single-use
    state. 404 when the organization has no single sign-on.
    """
    location = await sso.start(
        session=session,
        organization_id=organization_id,
        login_hint=login_hint,
        public_base_url=request.app.state.settings.public_base_url,
        now=request.app.state.clock.now(),
    )
    return RedirectResponse(location, status_code=status.HTTP_302_FOUND)


@router.get(
    "/callback",
    operation_id="finishSingleSignOn",
    summary="Provider callback: redirects to the app with #sso_code=... or #sso_error=...",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses=problem_responses(400, 422),
)
async def finish_single_sign_on(
    session: DbSession,
    request: Request,
    state: Annotated[single_line(128), Query()],
    code: Annotated[single_line(2048) | None, Query()] = None,
    error: Annotated[single_line(256) | None, Query()] = None,
) -> RedirectResponse:
    """Where the identity provider sends the browser back. Redirects to the app with a one-time
    `#sso_code=` or an `#sso_error=`; an unknown, used or expired state answers 400.
    """
    result = await sso.callback(
        session=session,
        code=code,
        state=state,
        error=error,
        public_base_url=request.app.state.settings.public_base_url,
        now=request.app.state.clock.now(),
        client_ip=request.client.host if request.client else None,
    )
    return RedirectResponse(result.frontend_redirect, status_code=status.HTTP_302_FOUND)


@router.post(
    "/token",
    operation_id="exchangeSingleSignOnCode",
    summary="Exchange the one-time sso_code for a session token",
    response_model=TokenResponse,
    responses=problem_responses(401, 422),
)
async def exchange_single_sign_on_code(
    payload: SsoCodeExchange, session: DbSession, request: Request
) -> TokenResponse:
    """The app exchanges the one-time `sso_code` from the redirect for a bearer token; a used or
    unknown code answers 401.
    """
    now = request.app.state.clock.now()
    user = await sso.redeem_handoff(session=session, code=payload.sso_code, now=now)
    return await service.open_session(
        session=session,
        user=user,
        settings=request.app.state.settings,
        now=now,
        client_ip=request.client.host if request.client else None,
        method="single_sign_on",
    )
