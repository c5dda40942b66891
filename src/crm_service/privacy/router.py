"""HTTP for erasure and the blocklist: /v1/privacy/erasures, /v1/privacy/blocklist.

`POST /v1/privacy/erasures` is the interim administration path of erasure; once privacy
requests exist, completing an erasure request carries it out through the same service.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Query, Request, Response, status

from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.privacy import service
from crm_service.privacy.erasure import checkpoint_sqlite
from crm_service.privacy.schemas import (
    BlocklistPage,
    BlocklistQuery,
    ErasureCreate,
    ErasureCreated,
    ErasureReceiptRead,
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
