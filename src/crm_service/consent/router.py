"""HTTP of the consent feature for signed-in users and partners: purposes, each lead's and
contact's ledger and receipts, consent requests, web forms."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request, Response, status

from crm_service.consent import ledger, requests, webforms
from crm_service.consent.schemas import (
    ConsentEventRead,
    ConsentLedger,
    ConsentReceipt,
    ConsentRecord,
    ConsentRequestCreate,
    ConsentRequestList,
    ConsentRequestQuery,
    ConsentRequestRead,
    PurposeCreate,
    PurposeKey,
    PurposeList,
    PurposeRead,
    WebformCreate,
    WebformList,
    WebformRead,
    WebformUpdate,
)
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.kit.modules import Module
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal, require, require_right
from crm_service.security.scopes import Scope

router = CRMRouter(tags=["consent"])
PrivacyAdmin = Annotated[Principal, Depends(require_right(Right.MANAGE_PRIVACY))]
ConsentReader = Annotated[Principal, Depends(require(Scope.CONSENT_READ))]
ConsentWriter = Annotated[Principal, Depends(require(Scope.CONSENT_WRITE))]


def _now(request: Request):  # noqa: ANN202 - a datetime
    return request.app.state.clock.now()


def _base_url(request: Request) -> str:
    return request.app.state.settings.public_base_url


# --- purposes -------------------------------------------------------------------------------


@router.post(
    "/v1/consent/purposes",
    operation_id="createConsentPurpose",
    summary="Create a consent purpose, or a new version of one (a new notice version)",
    status_code=status.HTTP_201_CREATED,
    response_model=PurposeRead,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_purpose(
    payload: PurposeCreate,
    principal: PrivacyAdmin,
    session: DbSession,
    request: Request,
    response: Response,
) -> PurposeRead:
    """Needs the right `manage_privacy`. An existing `key` with a new `notice_version` makes
    the next version; consent given earlier keeps pointing at the version it was given under.
    The same notice version again answers 409."""
    purpose = await ledger.create_purpose(
        session=session, principal=principal, payload=payload, now=_now(request)
    )
    response.headers["Location"] = f"/v1/consent/purposes/{purpose.key}"
    return PurposeRead.model_validate(purpose)


@router.get(
    "/v1/consent/purposes",
    operation_id="listConsentPurposes",
    summary="The current version of every consent purpose",
    response_model=PurposeList,
    responses=problem_responses(401, 403),
)
async def list_purposes(principal: ConsentReader, session: DbSession) -> PurposeList:
    """Needs `crm.consent.read`."""
    purposes = await ledger.list_purposes(session=session, principal=principal)
    return PurposeList(data=[PurposeRead.model_validate(p) for p in purposes])


@router.get(
    "/v1/consent/purposes/{key}",
    operation_id="getConsentPurposeVersions",
    summary="Every version of one consent purpose, newest first",
    response_model=PurposeList,
    responses=problem_responses(401, 403, 404, 422),
)
async def purpose_versions(
    key: PurposeKey, principal: ConsentReader, session: DbSession
) -> PurposeList:
    """Needs `crm.consent.read`."""
    versions = await ledger.purpose_versions(session=session, principal=principal, key=key)
    return PurposeList(data=[PurposeRead.model_validate(p) for p in versions])


# --- each lead's and contact's ledger --------------------------------------------------------


def _ledger_routes(module: Module) -> None:
    noun = module.noun
    path = f"/v1/{module.value}/{{record_id}}/consents"
    title = noun.capitalize()

    @router.get(
        path,
        operation_id=f"get{title}Consents",
        summary=f"The {noun}'s consent: the current state per purpose and every event",
        response_model=ConsentLedger,
        responses=problem_responses(401, 403, 404, 410, 422, 423),
        tags=[module.value],
    )
    async def get_ledger(
        record_id: uuid.UUID, principal: ConsentReader, session: DbSession
    ) -> ConsentLedger:
        """Needs `crm.consent.read` and the profile's read operation on the module. The
        ledger is the data subject's: a contact converted from a lead shows the lead's events.
        Evidence (IP addresses, user agents, form versions) is sealed under the subject's key
        and gone after an erasure. A restricted data subject's ledger answers 423 unless you
        have the right `view_restricted` (audited)."""
        return await ledger.ledger(
            session=session, principal=principal, module=module, record_id=record_id
        )

    @router.post(
        path,
        operation_id=f"record{title}Consent",
        summary=f"Record a consent given, withdrawn or refused by the {noun} (taken by staff)",
        status_code=status.HTTP_201_CREATED,
        response_model=ConsentEventRead,
        responses=problem_responses(401, 403, 404, 410, 422, 423),
        tags=[module.value],
    )
    async def record_consent(
        record_id: uuid.UUID,
        payload: ConsentRecord,
        principal: ConsentWriter,
        session: DbSession,
        request: Request,
    ) -> ConsentEventRead:
        """Needs `crm.consent.write` and the profile's update operation. Appends an event
        (events are never changed or deleted). Answers every open consent request for the
        purpose; recording consent also ends a consent lock (423 `processing-locked`). For a
        data subject who restricted processing, a withdrawal or refusal is recorded and a grant
        answers 423 `processing-restricted`."""
        event = await ledger.record_consent(
            session=session,
            principal=principal,
            module=module,
            record_id=record_id,
            payload=payload,
            now=_now(request),
        )
        return (await ledger.read_events(session, principal.organization_id, [event]))[0]

    @router.get(
        f"{path}/{{event_id}}/receipt",
        operation_id=f"get{title}ConsentReceipt",
        summary="A signed consent receipt (ISO/IEC TS 27560-shaped) for one event",
        response_model=ConsentReceipt,
        responses=problem_responses(401, 403, 404, 410, 422, 423),
        tags=[module.value],
    )
    async def get_receipt(
        record_id: uuid.UUID,
        event_id: uuid.UUID,
        principal: ConsentReader,
        session: DbSession,
        request: Request,
    ) -> ConsentReceipt:
        """A compact JWS signed with the organization's Ed25519 key (JWS `alg` Ed25519); its
        public key is at `keys_url`. Issuing one is audited."""
        return await ledger.receipt(
            session=session,
            principal=principal,
            module=module,
            record_id=record_id,
            event_id=event_id,
            now=_now(request),
            base_url=_base_url(request),
        )


for _module in (Module.LEADS, Module.CONTACTS):
    _ledger_routes(_module)


# --- consent requests ------------------------------------------------------------------------


@router.post(
    "/v1/consent/requests",
    operation_id="createConsentRequest",
    summary="Ask a lead or contact for consent by email, portal or phone, by a deadline",
    status_code=status.HTTP_201_CREATED,
    response_model=ConsentRequestRead,
    responses=problem_responses(401, 403, 404, 410, 422, 423),
)
async def create_request(
    payload: ConsentRequestCreate,
    principal: ConsentWriter,
    session: DbSession,
    request: Request,
    response: Response,
) -> ConsentRequestRead:
    """Needs `crm.consent.write` and the profile's update operation on the module. `email`
    mails a link to the public consent page; `portal` waits for the privacy portal; `phone`
    waits for staff to record the answer in the ledger. Unanswered at the deadline, it
    becomes `no_response` and the record is locked (423 `processing-locked`) until consent
    is recorded or an administrator records another legal basis."""
    created = await requests.create_request(
        session=session,
        principal=principal,
        payload=payload,
        now=_now(request),
        base_url=_base_url(request),
    )
    response.headers["Location"] = f"/v1/consent/requests/{created.id}"
    return await requests.present(session, created)


@router.get(
    "/v1/consent/requests",
    operation_id="listConsentRequests",
    summary="Consent requests, newest first",
    response_model=ConsentRequestList,
    responses=problem_responses(401, 403, 422),
)
async def list_requests(
    query: Annotated[ConsentRequestQuery, Query()], principal: ConsentReader, session: DbSession
) -> ConsentRequestList:
    """Needs `crm.consent.read`; only requests about records you may see."""
    rows, next_cursor = await requests.list_requests(
        session=session, principal=principal, query=query
    )
    return ConsentRequestList(
        data=[await requests.present(session, row) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/v1/consent/requests/{request_id}",
    operation_id="getConsentRequest",
    summary="One consent request",
    response_model=ConsentRequestRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_request(
    request_id: uuid.UUID, principal: ConsentReader, session: DbSession
) -> ConsentRequestRead:
    """Needs `crm.consent.read`."""
    found = await requests.get_request(session=session, principal=principal, request_id=request_id)
    return await requests.present(session, found)


# --- web forms -------------------------------------------------------------------------------


@router.post(
    "/v1/webforms",
    operation_id="createWebform",
    summary="Create a web form (public submissions at `submit_url`)",
    status_code=status.HTTP_201_CREATED,
    response_model=WebformRead,
    responses=problem_responses(401, 403, 422),
    tags=["webforms"],
)
async def create_webform(
    payload: WebformCreate,
    principal: PrivacyAdmin,
    session: DbSession,
    request: Request,
    response: Response,
) -> WebformRead:
    """Needs the right `manage_privacy`. `fields` are fields of the module a visitor may
    fill in (`last_name` required; with double opt-in, `email` too); `purposes` are offered
    as separate checkboxes."""
    form = await webforms.create_webform(
        session=session, principal=principal, payload=payload, now=_now(request)
    )
    response.headers["Location"] = f"/v1/webforms/{form.id}"
    return webforms.present(form, _base_url(request))


@router.get(
    "/v1/webforms",
    operation_id="listWebforms",
    summary="Every web form",
    response_model=WebformList,
    responses=problem_responses(401, 403),
    tags=["webforms"],
)
async def list_webforms(
    principal: PrivacyAdmin, session: DbSession, request: Request
) -> WebformList:
    """Needs the right `manage_privacy`."""
    forms = await webforms.list_webforms(session=session, principal=principal)
    return WebformList(data=[webforms.present(f, _base_url(request)) for f in forms])


@router.get(
    "/v1/webforms/{form_id}",
    operation_id="getWebform",
    summary="One web form",
    response_model=WebformRead,
    responses=problem_responses(401, 403, 404, 422),
    tags=["webforms"],
)
async def get_webform(
    form_id: uuid.UUID, principal: PrivacyAdmin, session: DbSession, request: Request
) -> WebformRead:
    """Needs the right `manage_privacy`."""
    form = await webforms.get_webform(session=session, principal=principal, form_id=form_id)
    return webforms.present(form, _base_url(request))


@router.patch(
    "/v1/webforms/{form_id}",
    operation_id="updateWebform",
    summary="Change a web form: a new version (submissions keep theirs)",
    response_model=WebformRead,
    responses=problem_responses(401, 403, 404, 422),
    tags=["webforms"],
)
async def update_webform(
    form_id: uuid.UUID,
    payload: WebformUpdate,
    principal: PrivacyAdmin,
    session: DbSession,
    request: Request,
) -> WebformRead:
    """Needs the right `manage_privacy`. `active: false` switches the form off (its public
    routes answer 404)."""
    form = await webforms.update_webform(
        session=session, principal=principal, form_id=form_id, payload=payload, now=_now(request)
    )
    return webforms.present(form, _base_url(request))
