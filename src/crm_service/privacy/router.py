"""HTTP for erasure, the blocklist and restriction: /v1/privacy/erasures,
/v1/privacy/blocklist, /v1/privacy/restrictions.

`POST /v1/privacy/erasures` is the interim administration path of erasure; once privacy
requests exist, completing an erasure request carries it out through the same service.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Query, Request, Response, status

from crm_service.audit.service import Actor
from crm_service.consent.schemas import Language
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.privacy import restriction, service
from crm_service.privacy.erasure import checkpoint_sqlite
from crm_service.privacy.schemas import (
    BlocklistPage,
    BlocklistQuery,
    ErasureCreate,
    ErasureCreated,
    ErasureReceiptRead,
    RestrictionLifted,
    RestrictionPage,
    RestrictionQuery,
    RestrictionRead,
)
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal, require, require_right
from crm_service.security.scopes import Scope

router = CRMRouter(prefix="/v1/privacy", tags=["privacy"])
PrivacyAdmin = Annotated[Principal, Depends(require_right(Right.MANAGE_PRIVACY))]


def _privacy_manager(scope: Scope):  # noqa: ANN202 - returns a FastAPI dependency
    """The privacy scope `scope` and the administration right `manage_privacy` (which a
    partner token never holds: it is refused)."""
    scoped, administers = require(scope), require_right(Right.MANAGE_PRIVACY)

    async def dependency(
        principal: Principal = Depends(scoped),  # noqa: B008
        _: Principal = Depends(administers),  # noqa: B008
    ) -> Principal:
        return principal

    return dependency


RestrictionReader = Annotated[Principal, Depends(_privacy_manager(Scope.PRIVACY_READ))]
RestrictionManager = Annotated[Principal, Depends(_privacy_manager(Scope.PRIVACY_WRITE))]


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
    background: BackgroundTasks,
) -> ErasureCreated:
    """Erases the data subject of a lead or contact, or every subject with an email: destroys
    their keys, empties or deletes their records, blocklists their emails and phone numbers
    and returns one receipt per subject. Needs the right `manage_privacy`. Audited.
    """
    receipt_ids = await service.erase(
        session=session, principal=principal, payload=payload, now=request.app.state.clock.now()
    )
    # After the commit: no page image of an erased value stays in SQLite's WAL.
    background.add_task(checkpoint_sqlite, request.app.state.engine)
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


@router.get(
    "/restrictions",
    operation_id="listRestrictions",
    summary="Restricted data subjects (GDPR Art. 18): subject id, since, reason code, request",
    response_model=RestrictionPage,
    responses=problem_responses(401, 403, 422),
)
async def list_restrictions(
    query: Annotated[RestrictionQuery, Query()], principal: RestrictionReader, session: DbSession
) -> RestrictionPage:
    """Most recently restricted first, paged like lists; never a value. Needs
    `crm.privacy.read` and the right `manage_privacy`."""
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
    principal: RestrictionManager,
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
    `crm.privacy.write` and the right `manage_privacy`. Audited."""
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
