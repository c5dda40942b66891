"""HTTP for privacy requests, erasure, the blocklist and restriction: /v1/privacy/requests,
/v1/privacy/erasures, /v1/privacy/blocklist, /v1/privacy/restrictions.

`POST /v1/privacy/erasures` is the administration path of erasure without a request (an
erasure the organization decides itself); completing an erasure request carries it out
through the same service.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Query, Request, Response, status

from crm_service.audit.service import Actor
from crm_service.consent.schemas import Language
from crm_service.db.engine import checkpoint_sqlite
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.privacy import requests, restriction, service
from crm_service.privacy.auth import PrivacyRequestsRead, PrivacyRequestsWrite
from crm_service.privacy.package import package_ttl
from crm_service.privacy.package_router import PACKAGE_RESPONSES, PackageQuery, attachment
from crm_service.privacy.schemas import (
    BlocklistPage,
    BlocklistQuery,
    ErasureCreate,
    ErasureCreated,
    ErasureReceiptRead,
    PrivacyRequestCreate,
    PrivacyRequestExtend,
    PrivacyRequestPage,
    PrivacyRequestQuery,
    PrivacyRequestRead,
    PrivacyRequestReceipt,
    PrivacyRequestReject,
    PrivacyRequestVerify,
    RestrictionLifted,
    RestrictionPage,
    RestrictionQuery,
    RestrictionRead,
)
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal, require_right

router = CRMRouter(prefix="/v1/privacy", tags=["privacy"])
PrivacyAdmin = Annotated[Principal, Depends(require_right(Right.MANAGE_PRIVACY))]


@router.post(
    "/erasures",
    operation_id="eraseDataSubject",
    summary="Erase a data subject now (interim administration path)",
    status_code=status.HTTP_201_CREATED,
    response_model=ErasureCreated,
    responses=problem_responses(401, 403, 404, 422),
)
async def create_erasure(
    payload: ErasureCreate,
    principal: PrivacyAdmin,
    session: DbSession,
    request: Request,
    response: Response,
    background: BackgroundTasks,
) -> ErasureCreated:
    """Erases the data subject of a lead or contact, or every subject with an email: destroys
    their keys, empties or deletes their records, blocklists their emails and phone numbers
    and returns one receipt per subject (`Location`: the first). Needs the right
    `manage_privacy`. Audited.
    """
    receipt_ids = await service.erase(
        session=session, principal=principal, payload=payload, now=request.app.state.clock.now()
    )
    # After the commit: no page image of an erased value stays in SQLite's WAL.
    background.add_task(checkpoint_sqlite, request.app.state.engine)
    response.headers["Location"] = f"/v1/privacy/erasures/{receipt_ids[0]}"
    return ErasureCreated(receipt_ids=receipt_ids)


@router.get(
    "/erasures/{receipt_id}",
    operation_id="getErasureReceipt",
    summary="An erasure receipt: what was erased, when, by whom (no values)",
    response_model=ErasureReceiptRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_erasure(
    receipt_id: uuid.UUID, principal: PrivacyAdmin, session: DbSession
) -> ErasureReceiptRead:
    """The receipt of one erasure. Needs the right `manage_privacy`."""
    return await service.get_receipt(session=session, principal=principal, receipt_id=receipt_id)


@router.get(
    "/blocklist",
    operation_id="listBlocklist",
    summary="Blocklisted identifiers of erased subjects, by id and date (never a value)",
    response_model=BlocklistPage,
    responses=problem_responses(401, 403, 422),
)
async def list_blocklist(
    query: Annotated[BlocklistQuery, Query()], principal: PrivacyAdmin, session: DbSession
) -> BlocklistPage:
    """Newest first. Needs the right `manage_privacy`."""
    return await service.list_blocklist(session=session, principal=principal, query=query)


@router.delete(
    "/blocklist/{entry_id}",
    operation_id="removeBlocklistEntry",
    summary="Allow an erased email or phone number again",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def remove_blocklist_entry(
    entry_id: uuid.UUID, principal: PrivacyAdmin, session: DbSession
) -> Response:
    """For a person who comes back of their own accord. Needs the right `manage_privacy`.
    Audited.
    """
    await service.remove_blocklist_entry(session=session, principal=principal, entry_id=entry_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- privacy requests ----------------------------------------------------------------------


def _now(request: Request):  # noqa: ANN202 - a datetime
    return request.app.state.clock.now()


@router.post(
    "/requests",
    operation_id="createPrivacyRequest",
    summary="File a data-subject request (due one calendar month after receipt)",
    status_code=status.HTTP_201_CREATED,
    response_model=PrivacyRequestRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def create_privacy_request(
    payload: PrivacyRequestCreate,
    principal: PrivacyRequestsWrite,
    session: DbSession,
    request: Request,
    response: Response,
) -> PrivacyRequestRead:
    """A request as it reached the organization: access, portability, rectification (with
    optional structured `corrections`), restriction, erasure or objection, for every lead and
    contact with an email or for one lead or contact. It awaits verification of the
    requester's identity (`POST /{id}/verify`). The email, details and corrections are sealed
    under the data subject's key. Audited."""
    created = await requests.create(
        session=session, principal=principal, payload=payload, now=_now(request)
    )
    response.headers["Location"] = f"/v1/privacy/requests/{created.id}"
    return created


@router.get(
    "/requests",
    operation_id="listPrivacyRequests",
    summary="Privacy requests, newest received first; overdue and due-soon lists",
    response_model=PrivacyRequestPage,
    responses=problem_responses(401, 403, 422),
)
async def list_privacy_requests(
    query: Annotated[PrivacyRequestQuery, Query()],
    principal: PrivacyRequestsRead,
    session: DbSession,
    request: Request,
) -> PrivacyRequestPage:
    """Filter by `status`, `type`, `overdue=true` (open and past due) or `due_before` (open
    and due before then: the due-soon list)."""
    return await requests.list_requests(
        session=session, principal=principal, query=query, now=_now(request)
    )


@router.get(
    "/requests/{request_id}",
    operation_id="getPrivacyRequest",
    summary="One privacy request: its clock, status, outcome and who was told",
    response_model=PrivacyRequestRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_privacy_request(
    request_id: uuid.UUID, principal: PrivacyRequestsRead, session: DbSession, request: Request
) -> PrivacyRequestRead:
    """The requester's email, details and reasons are opened for the caller; once the data
    subject is erased they cannot be (`personal_data_erased`)."""
    return await requests.get(
        session=session, principal=principal, request_id=request_id, now=_now(request)
    )


@router.post(
    "/requests/{request_id}/verify",
    operation_id="verifyPrivacyRequest",
    summary="Confirm the requester's identity: the request is in progress",
    response_model=PrivacyRequestRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def verify_privacy_request(
    request_id: uuid.UUID,
    payload: PrivacyRequestVerify,
    principal: PrivacyRequestsWrite,
    session: DbSession,
    request: Request,
) -> PrivacyRequestRead:
    """Staff confirmed who asks (requests filed through the portal are verified already: the
    subject proved control of the email). 409 when closed or verified already. Audited."""
    return await requests.verify(
        session=session,
        principal=principal,
        request_id=request_id,
        payload=payload,
        now=_now(request),
    )


@router.post(
    "/requests/{request_id}/extend",
    operation_id="extendPrivacyRequest",
    summary="Extend the due date by one or two months (within the first month only)",
    response_model=PrivacyRequestRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def extend_privacy_request(
    request_id: uuid.UUID,
    payload: PrivacyRequestExtend,
    principal: PrivacyRequestsWrite,
    session: DbSession,
    request: Request,
) -> PrivacyRequestRead:
    """Counted from the original due date, at most two months in all, and only before the
    original due date (409 `extension-refused` otherwise). The reason is mailed to the
    requester. Audited."""
    return await requests.extend(
        session=session,
        principal=principal,
        request_id=request_id,
        payload=payload,
        now=_now(request),
    )


@router.post(
    "/requests/{request_id}/complete",
    operation_id="completePrivacyRequest",
    summary="Carry the request out (rectify, restrict, withdraw marketing consent, erase) "
    "and close it",
    response_model=PrivacyRequestRead,
    responses=problem_responses(401, 403, 404, 409, 410, 422, 423),
)
async def complete_privacy_request(
    request_id: uuid.UUID,
    principal: PrivacyRequestsWrite,
    session: DbSession,
    request: Request,
    background: BackgroundTasks,
) -> PrivacyRequestRead:
    """Rectification applies the request's `corrections` through the ordinary update (as
    the caller; 422/423 refuse all of them); restriction restricts the subject's processing;
    objection withdraws consent to every marketing purpose; erasure erases every subject (one
    receipt each, `GET /{id}/receipt`); access and portability close the request. A
    rectification, erasure or restriction is told to subscribed webhook endpoints
    (`privacy.*`, ids only) and listed with the partner clients that received the subject's
    data (`recipients`). The requester is mailed what was done (`notices`). 409
    `request-unverified` until the requester's identity is verified. Audited."""
    completed = await requests.complete(
        session=session,
        principal=principal,
        request_id=request_id,
        now=_now(request),
        package_ttl=package_ttl(request.app.state.settings),
        portal_url=f"{request.app.state.settings.public_base_url.rstrip('/')}/portal/"
        f"{principal.organization_id}",
    )
    # After the commit: no page image of an erased value stays in SQLite's WAL.
    background.add_task(checkpoint_sqlite, request.app.state.engine)
    return completed


@router.post(
    "/requests/{request_id}/reject",
    operation_id="rejectPrivacyRequest",
    summary="Close the request without carrying it out; the reason is mailed to the requester",
    response_model=PrivacyRequestRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def reject_privacy_request(
    request_id: uuid.UUID,
    payload: PrivacyRequestReject,
    principal: PrivacyRequestsWrite,
    session: DbSession,
    request: Request,
) -> PrivacyRequestRead:
    """The reason is kept sealed under the data subject's key. Audited."""
    return await requests.reject(
        session=session,
        principal=principal,
        request_id=request_id,
        payload=payload,
        now=_now(request),
    )


@router.get(
    "/requests/{request_id}/receipt",
    operation_id="getPrivacyRequestReceipt",
    summary="The erasure receipts of a completed erasure request (no values)",
    response_model=PrivacyRequestReceipt,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_privacy_request_receipt(
    request_id: uuid.UUID, principal: PrivacyRequestsRead, session: DbSession
) -> PrivacyRequestReceipt:
    """One receipt per data subject erased: what, when, by whom; counts and ids only."""
    return await requests.receipt(session=session, principal=principal, request_id=request_id)


@router.get(
    "/requests/{request_id}/package",
    operation_id="getPrivacyRequestPackage",
    summary="The package of a completed access or portability request (JSON or a CSV zip)",
    description="Everything held on the request's data subjects as it was when the request "
    "was completed, until the package expires (`package_expires_at`). Values are shown as "
    "your channel allows (sensitive fields masked without `view_sensitive`, classifications "
    "the compliance settings withhold left out); revealing sensitive values and the download "
    "itself are audited. `format=csv` answers a zip of one CSV file per kind.",
    response_class=Response,
    responses=PACKAGE_RESPONSES,
)
async def get_privacy_request_package(
    request_id: uuid.UUID,
    query: Annotated[PackageQuery, Query()],
    principal: PrivacyRequestsRead,
    session: DbSession,
    request: Request,
) -> Response:
    rendered = await requests.package(
        session=session,
        principal=principal,
        request_id=request_id,
        fmt=query.format,
        now=_now(request),
    )
    return attachment(rendered)


# --- restriction of processing (GDPR Art. 18) -----------------------------------------------


@router.get(
    "/restrictions",
    operation_id="listRestrictions",
    summary="Restricted data subjects (GDPR Art. 18): subject id, since, reason code, request",
    response_model=RestrictionPage,
    responses=problem_responses(401, 403, 422),
)
async def list_restrictions(
    query: Annotated[RestrictionQuery, Query()], principal: PrivacyRequestsRead, session: DbSession
) -> RestrictionPage:
    """Most recently restricted first, paged like lists; never a value. Needs
    `crm.privacy.read` and, for a user, the right `manage_privacy`."""
    rows, next_cursor = await restriction.list_restrictions(
        session, principal.organization_id, query
    )
    return RestrictionPage(
        data=[
            RestrictionRead(
                subject_id=row.subject_id,
                since=row.since,
                reason=row.reason,
                request_id=row.request_id,
            )
            for row in rows
        ],
        next_cursor=next_cursor,
    )


@router.post(
    "/restrictions/{subject_id}/lift",
    operation_id="liftRestriction",
    summary="Lift a data subject's restriction of processing, telling them first",
    response_model=RestrictionLifted,
    responses=problem_responses(401, 403, 404, 422),
)
async def lift_restriction(
    subject_id: uuid.UUID,
    principal: PrivacyRequestsWrite,
    session: DbSession,
    request: Request,
    language: Annotated[
        Language, Query(description="The language of the mail that tells the subject.")
    ] = Language.EN,
) -> RestrictionLifted:
    """Queues a mail to the subject's email saying the restriction ends (GDPR Art. 18(3)),
    then lifts it, in one transaction: their records are listed, exported, changed and sent to
    webhooks again. `subject_told` is false when none of their records has an email (audited
    so). 404 for a subject who is not restricted or not of your organization. Needs
    `crm.privacy.write` and, for a user, the right `manage_privacy`. Audited."""
    lifted = await restriction.lift_restriction(
        session,
        principal.organization_id,
        subject_id,
        actor=Actor.of(principal),
        now=request.app.state.clock.now(),
        language=language.value,
    )
    return RestrictionLifted(
        subject_id=lifted.subject_id,
        lifted_at=lifted.lifted_at,
        subject_told=lifted.subject_told,
    )
