"""HTTP for leads: /v1/leads, and conversion."""

import uuid
from typing import Annotated

from fastapi import Depends, Response, status

from crm_service.db.session import DbSession
from crm_service.errors import problem_responses
from crm_service.records.accounts.schemas import AccountRead
from crm_service.records.contacts.schemas import ContactRead
from crm_service.records.leads.schemas import (
    LeadConversion,
    LeadConvert,
    LeadCreate,
    LeadList,
    LeadQuery,
    LeadRead,
    LeadSearch,
    LeadUpdate,
)
from crm_service.records.leads.service import leads
from crm_service.records.router import IfMatch, RecordModuleSpec, build_record_router
from crm_service.security.principal import Principal, require
from crm_service.security.scopes import Scope

router = build_record_router(
    RecordModuleSpec(
        service=leads,
        singular="Lead",
        plural="Leads",
        create_schema=LeadCreate,
        update_schema=LeadUpdate,
        read_schema=LeadRead,
        list_schema=LeadList,
        query_schema=LeadQuery,
        search_schema=LeadSearch,
        read_scope=Scope.LEADS_READ,
        write_scope=Scope.LEADS_WRITE,
        delete_scope=Scope.LEADS_DELETE,
        has_legal_basis=True,
    )
)

LeadConverter = Annotated[
    Principal,
    Depends(require(Scope.LEADS_WRITE, Scope.CONTACTS_WRITE, Scope.ACCOUNTS_WRITE)),
]


@router.post(
    "/{record_id}/convert",
    operation_id="convertLead",
    summary="Convert a lead into a contact (and account) in one transaction",
    status_code=status.HTTP_201_CREATED,
    response_model=LeadConversion,
    responses=problem_responses(401, 403, 404, 409, 410, 412, 422, 423),
)
async def convert_lead(
    record_id: uuid.UUID,
    payload: LeadConvert,
    principal: LeadConverter,
    session: DbSession,
    response: Response,
    if_match: IfMatch = None,
) -> LeadConversion:
    """In one transaction: a contact from the lead, and an account linked (`account_id`), created
    from the lead's company, or none. The lead is marked converted and its legal basis carried
    over. 409 when already converted.
    """
    conversion = await leads.convert(
        session=session, principal=principal, lead_id=record_id, payload=payload, if_match=if_match
    )
    response.headers["Location"] = f"/v1/contacts/{conversion.contact.id}"
    return LeadConversion(
        lead=LeadRead.model_validate(conversion.lead),
        contact=ContactRead.model_validate(conversion.contact),
        account=AccountRead.model_validate(conversion.account) if conversion.account else None,
    )
