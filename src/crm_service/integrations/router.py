"""HTTP for webhooks: /v1/webhooks (right `manage_integrations`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response, status

from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.integrations import webhooks
from crm_service.integrations.schemas import (
    DeliveryAttemptPage,
    DeliveryAttemptRead,
    DeliveryQuery,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
    WebhookSecret,
    WebhookUpdate,
)
from crm_service.kit.openapi import headers
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal, require_right

router = CRMRouter(prefix="/v1/webhooks", tags=["webhooks"])
IntegrationsAdmin = Annotated[Principal, Depends(require_right(Right.MANAGE_INTEGRATIONS))]


def _read(endpoint: Any) -> dict[str, Any]:
    body = {name: getattr(endpoint, name) for name in WebhookRead.model_fields}
    body["events"] = webhooks.events_of(endpoint)  # stored as JSON
    return body


@router.post(
    "",
    operation_id="createWebhook",
    summary="Register a webhook endpoint; its signing secret is answered only now",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses={201: headers("Location"), **problem_responses(401, 403, 422)},
)
async def create_webhook(
    payload: WebhookCreate,
    principal: IntegrationsAdmin,
    session: DbSession,
    request: Request,
    response: Response,
) -> Any:
    """Events of the types named are POSTed to `url`, signed as Standard Webhooks specifies
    with the `secret` answered here (`whsec_...`; store it, it is not shown again). Payloads
    are shaped by the `integrations` channel of the compliance settings. Audited.
    """
    created = await webhooks.create_endpoint(
        session=session,
        principal=principal,
        payload=payload,
        settings=request.app.state.settings,
    )
    response.headers["Location"] = f"/v1/webhooks/{created.endpoint.id}"
    return {**_read(created.endpoint), "secret": created.secret}


@router.get(
    "",
    operation_id="listWebhooks",
    summary="The organization's webhook endpoints",
    response_model=WebhookList,
    responses=problem_responses(401, 403),
)
async def list_webhooks(principal: IntegrationsAdmin, session: DbSession) -> Any:
    """Every endpoint, oldest first, with why the service disabled it if it did."""
    found = await webhooks.list_endpoints(session=session, principal=principal)
    return {"data": [_read(endpoint) for endpoint in found]}


@router.get(
    "/{webhook_id}",
    operation_id="getWebhook",
    summary="One webhook endpoint (never its secret)",
    response_model=WebhookRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_webhook(
    webhook_id: uuid.UUID, principal: IntegrationsAdmin, session: DbSession
) -> Any:
    """The endpoint's URL, event types, state and the reason it was disabled, if it was."""
    return _read(
        await webhooks.get_endpoint(session=session, principal=principal, endpoint_id=webhook_id)
    )


@router.patch(
    "/{webhook_id}",
    operation_id="updateWebhook",
    summary="Change a webhook endpoint, or switch it on or off",
    response_model=WebhookRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def update_webhook(
    webhook_id: uuid.UUID,
    payload: WebhookUpdate,
    principal: IntegrationsAdmin,
    session: DbSession,
    request: Request,
) -> Any:
    """Fields left out keep their value. Switching an endpoint on again resumes its pending
    deliveries. Audited.
    """
    return _read(
        await webhooks.update_endpoint(
            session=session,
            principal=principal,
            endpoint_id=webhook_id,
            payload=payload,
            settings=request.app.state.settings,
        )
    )


@router.delete(
    "/{webhook_id}",
    operation_id="deleteWebhook",
    summary="Remove a webhook endpoint and its pending deliveries",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_webhook(
    webhook_id: uuid.UUID, principal: IntegrationsAdmin, session: DbSession
) -> Response:
    """Nothing more is sent to it. Audited."""
    await webhooks.delete_endpoint(session=session, principal=principal, endpoint_id=webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{webhook_id}/secret",
    operation_id="rotateWebhookSecret",
    summary="Issue a new signing secret; the old one keeps signing for the overlap",
    response_model=WebhookSecret,
    responses=problem_responses(401, 403, 404, 422),
)
async def rotate_webhook_secret(
    webhook_id: uuid.UUID, principal: IntegrationsAdmin, session: DbSession, request: Request
) -> Any:
    """Until `previous_secret_until` (`CRM_WEBHOOK_SECRET_OVERLAP_SECONDS`, a day by default)
    each delivery carries two signatures, one per secret, so the receiver can switch secrets
    without missing an event. Audited.
    """
    secret, until = await webhooks.rotate_secret(
        session=session,
        principal=principal,
        endpoint_id=webhook_id,
        settings=request.app.state.settings,
        now=request.app.state.clock.now(),
    )
    return WebhookSecret(secret=secret, previous_secret_until=until)


@router.get(
    "/{webhook_id}/deliveries",
    operation_id="listWebhookDeliveries",
    summary="The endpoint's delivery attempts, newest first (never a payload)",
    response_model=DeliveryAttemptPage,
    responses=problem_responses(401, 403, 404, 422),
)
async def list_webhook_deliveries(
    webhook_id: uuid.UUID,
    query: Annotated[DeliveryQuery, Query()],
    principal: IntegrationsAdmin,
    session: DbSession,
) -> Any:
    """Each attempt's event type, time, outcome, response status and error code."""
    rows, next_cursor = await webhooks.delivery_attempts(
        session=session, principal=principal, endpoint_id=webhook_id, query=query
    )
    return DeliveryAttemptPage(
        data=[DeliveryAttemptRead.model_validate(row) for row in rows], next_cursor=next_cursor
    )
