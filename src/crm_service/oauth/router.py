"""HTTP for partner access: `/v1/oauth-clients` (right manage_integrations) and the public
OAuth endpoints `/oauth/token`, `/oauth/revoke`, `/oauth/introspect` (client-authenticated)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import Depends, Request, Response, status

from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.kit.schemas import SINGLE_LINE_PATTERN
from crm_service.oauth import service
from crm_service.oauth.errors import NO_STORE
from crm_service.oauth.models import OAuthClient
from crm_service.oauth.schemas import (
    ClientCreate,
    ClientCreated,
    ClientList,
    ClientRead,
    ClientUpdate,
    Introspection,
    OAuthErrorBody,
    SecretIssued,
    TokenGranted,
)
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal, require_right

router = CRMRouter(tags=["partner access"])
IntegrationsAdmin = Annotated[Principal, Depends(require_right(Right.MANAGE_INTEGRATIONS))]


def _read(request: Request, client: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": client.id,
        "name": client.name,
        "scopes": client.scopes.split(),
        "ip_allowlist": client.ip_allowlist.split() if client.ip_allowlist is not None else None,
        "rate_limits": service.rate_limits_view(client, request.app.state.settings),
        "jwks": json.loads(client.jwks) if client.jwks else None,
        "is_active": client.is_active,
        "previous_secret_expires_at": client.previous_secret_expires_at,
        "created_at": client.created_at,
        "updated_at": client.updated_at,
    }


@router.post(
    "/v1/oauth-clients",
    operation_id="createOAuthClient",
    summary="Register a partner client; its secret is answered this once",
    description="Needs the right `manage_integrations`. The secret (256 random bits) is shown "
    "only in this answer; only its hash is kept. Audited.",
    status_code=status.HTTP_201_CREATED,
    response_model=ClientCreated,
    responses=problem_responses(401, 403, 413, 422),
)
async def create_client(
    payload: ClientCreate,
    principal: IntegrationsAdmin,
    session: DbSession,
    request: Request,
    response: Response,
) -> Any:
    client, secret = await service.create_client(
        session=session, principal=principal, payload=payload
    )
    response.headers["Location"] = f"/v1/oauth-clients/{client.id}"
    return ClientCreated(**_read(request, client), client_secret=secret)


@router.get(
    "/v1/oauth-clients",
    operation_id="listOAuthClients",
    summary="The organization's partner clients",
    description="Every client with its scopes, address list and rate limits; never a secret.",
    response_model=ClientList,
    responses=problem_responses(401, 403),
)
async def list_clients(principal: IntegrationsAdmin, session: DbSession, request: Request) -> Any:
    clients = await service.list_clients(session=session, principal=principal)
    return ClientList(data=[ClientRead(**_read(request, client)) for client in clients])


@router.get(
    "/v1/oauth-clients/{client_id}",
    operation_id="getOAuthClient",
    summary="One partner client (never its secret)",
    description="404 for a client of another organization.",
    response_model=ClientRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_client(
    client_id: uuid.UUID, principal: IntegrationsAdmin, session: DbSession, request: Request
) -> Any:
    client = await service.get_client(session=session, principal=principal, client_id=client_id)
    return ClientRead(**_read(request, client))


@router.patch(
    "/v1/oauth-clients/{client_id}",
    operation_id="updateOAuthClient",
    summary="Change a partner client; `is_active: false` ends its tokens at once",
    description="Fields left out keep their value; `ip_allowlist`, `rate_limits` and `jwks` "
    "may be set to null (anywhere, the defaults, no keys). Narrowed scopes hold for tokens "
    "already issued. Audited.",
    response_model=ClientRead,
    responses=problem_responses(401, 403, 404, 413, 422),
)
async def update_client(
    client_id: uuid.UUID,
    payload: ClientUpdate,
    principal: IntegrationsAdmin,
    session: DbSession,
    request: Request,
) -> Any:
    client = await service.update_client(
        session=session,
        principal=principal,
        client_id=client_id,
        payload=payload,
        now=request.app.state.clock.now(),
    )
    return ClientRead(**_read(request, client))


@router.delete(
    "/v1/oauth-clients/{client_id}",
    operation_id="deleteOAuthClient",
    summary="Delete a partner client; its tokens stop working at once",
    description="The client, its tokens and its used assertion ids are deleted. Audited.",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_client(
    client_id: uuid.UUID, principal: IntegrationsAdmin, session: DbSession
) -> Response:
    await service.delete_client(session=session, principal=principal, client_id=client_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/oauth-clients/{client_id}/secret",
    operation_id="rotateOAuthClientSecret",
    summary="Issue a new client secret; the old one works for the grace period",
    description="The previous secret keeps working for `CRM_CLIENT_SECRET_GRACE_SECONDS` "
    "(`previous_secret_expires_at`), so the partner can switch without downtime. Audited.",
    response_model=SecretIssued,
    responses=problem_responses(401, 403, 404, 422),
)
async def rotate_secret(
    client_id: uuid.UUID, principal: IntegrationsAdmin, session: DbSession, request: Request
) -> Any:
    client, secret = await service.rotate_secret(
        session=session,
        principal=principal,
        client_id=client_id,
        settings=request.app.state.settings,
        now=request.app.state.clock.now(),
    )
    return SecretIssued(
        client_id=client.id,
        client_secret=secret,
        previous_secret_expires_at=client.previous_secret_expires_at,
    )


# -- the OAuth endpoints ---------------------------------------------------------------------

_ASSERTION_FIELDS = {
    "client_assertion_type": {
        "type": "string",
        "enum": [service.ASSERTION_TYPE],
        "description": "With `client_assertion`: private_key_jwt (RFC 7523).",
    },
    "client_assertion": {
        "type": "string",
        "maxLength": service.MAX_PARAMETER,
        "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
        "description": "A JWT signed with a key of the client's JWKS: iss = sub = client id, "
        "aud = this endpoint or the issuer, exp at most a few minutes ahead, a single-use jti.",
    },
    "client_id": {"type": "string", "maxLength": 64, "pattern": SINGLE_LINE_PATTERN},
}


def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {**properties, **_ASSERTION_FIELDS},
                        "required": required,
                        "additionalProperties": False,
                    }
                }
            },
        }
    }


def _oauth_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "invalid_request, unsupported_grant_type, invalid_scope or unauthorized_client "
        "(RFC 6749 §5.2)",
        401: "invalid_client: client authentication failed (with `WWW-Authenticate: Basic`)",
        429: "temporarily_unavailable: too many failed client authentications from this address",
    }
    answers: dict[int | str, dict[str, Any]] = {
        code: {"description": descriptions[code], "model": OAuthErrorBody} for code in statuses
    }
    if 401 in answers:
        answers[401]["headers"] = {
            "WWW-Authenticate": {
                "description": "The Basic challenge for client authentication (RFC 6749 §5.2).",
                "required": True,
                "schema": {"type": "string", "maxLength": 100, "pattern": "^Basic realm="},
            }
        }
    if 429 in answers:
        answers[429]["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return answers


def _oauth_request(request: Request, body: bytes, endpoint: str) -> service.OAuthRequest:
    base = request.app.state.settings.public_base_url.rstrip("/")
    return service.OAuthRequest(
        content_type=request.headers.get("content-type"),
        body=body,
        authorization=request.headers.get("authorization"),
        client_ip=request.client.host if request.client else None,
        now=request.app.state.clock.now(),
        endpoint=f"{base}{endpoint}",
    )


@router.post(
    "/oauth/token",
    operation_id="issueAccessToken",
    summary="OAuth 2.0 client credentials grant: an access token for a partner client",
    description="Form-encoded `grant_type=client_credentials` and optional `scope` (a subset of "
    "the client's, space-separated). Authenticate the client with HTTP Basic "
    "(`client_secret_basic`) or a client assertion (`private_key_jwt`). Errors follow RFC 6749 "
    "§5.2. Tokens are opaque and short-lived; there are no refresh tokens.",
    response_model=TokenGranted,
    responses={200: {"headers": {}}, **_oauth_errors(400, 401, 429)},
    openapi_extra={
        **_form(
            {
                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                "scope": {"type": "string", "maxLength": 1000, "pattern": SINGLE_LINE_PATTERN},
            },
            ["grant_type"],
        ),
    },
)
async def issue_token(request: Request, session: DbSession, response: Response) -> Any:
    granted = await service.issue_token(
        session=session,
        request=_oauth_request(request, await request.body(), "/oauth/token"),
        settings=request.app.state.settings,
        throttle=request.app.state.sign_in_throttle,
    )
    response.headers.update(NO_STORE)
    return granted


@router.post(
    "/oauth/revoke",
    operation_id="revokeAccessToken",
    summary="Revoke an access token (RFC 7009); it stops working everywhere at once",
    description="Client-authenticated like `/oauth/token`. Answers 200 for any token, also an "
    "unknown one or another client's (which is left alone).",
    status_code=status.HTTP_200_OK,
    responses={
        200: {"description": "Revoked, or nothing to revoke"},
        **_oauth_errors(400, 401, 429),
    },
    openapi_extra={
        **_form(
            {
                "token": {"type": "string", "maxLength": 128, "pattern": SINGLE_LINE_PATTERN},
                "token_type_hint": {"type": "string", "enum": ["access_token"]},
            },
            ["token"],
        ),
    },
)
async def revoke_token(request: Request, session: DbSession) -> Response:
    await service.revoke(
        session=session,
        request=_oauth_request(request, await request.body(), "/oauth/revoke"),
        settings=request.app.state.settings,
        throttle=request.app.state.sign_in_throttle,
    )
    return Response(status_code=status.HTTP_200_OK, headers=NO_STORE)


@router.post(
    "/oauth/introspect",
    operation_id="introspectAccessToken",
    summary="Is this access token active? (RFC 7662)",
    description="Client-authenticated like `/oauth/token`. A client learns only about its own "
    "tokens: another client's, an expired, revoked or unknown token answers "
    '`{"active": false}` and nothing more.',
    response_model=Introspection,
    response_model_exclude_none=True,
    responses=_oauth_errors(400, 401, 429),
    openapi_extra={
        **_form(
            {
                "token": {"type": "string", "maxLength": 128, "pattern": SINGLE_LINE_PATTERN},
                "token_type_hint": {"type": "string", "enum": ["access_token"]},
            },
            ["token"],
        ),
    },
)
async def introspect_token(request: Request, session: DbSession, response: Response) -> Any:
    answer = await service.introspect(
        session=session,
        request=_oauth_request(request, await request.body(), "/oauth/introspect"),
        settings=request.app.state.settings,
        throttle=request.app.state.sign_in_throttle,
    )
    response.headers.update(NO_STORE)
    return answer
