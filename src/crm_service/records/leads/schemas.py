"""Lead bodies: LeadCreate / LeadUpdate / LeadRead, list, search and query, conversion."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from crm_service.kit.schemas import Flag, InputModel, LongName, Name, text
from crm_service.records.accounts.schemas import AccountRead
from crm_service.records.contacts.schemas import ContactRead
from crm_service.records.leads.models import LeadStatus
from crm_service.records.paging import MAX_LIMIT
from crm_service.records.schemas import (
    LegalBasisSet,
    PersonInput,
    PersonRead,
    PersonSearch,
    QueryPaging,
    ShortText,
    Website,
)


class OpenLeadStatus(StrEnum):
    """Statuses a client may set; `converted` is reached only by converting."""

    NEW = LeadStatus.NEW.value
    CONTACTED = LeadStatus.CONTACTED.value
    QUALIFIED = LeadStatus.QUALIFIED.value
    UNQUALIFIED = LeadStatus.UNQUALIFIED.value


class LeadCreate(PersonInput):
    last_name: Name
    company: LongName | None = None
    website: Website | None = None
    industry: ShortText | None = None
    status: OpenLeadStatus = OpenLeadStatus.NEW
    legal_basis: LegalBasisSet | None = None


class LeadUpdate(PersonInput):
    last_name: Name = None  # type: ignore[assignment]  # omit to keep; null refused
    company: LongName | None = None
    website: Website | None = None
    industry: ShortText | None = None
    status: OpenLeadStatus = None  # type: ignore[assignment]


class LeadRead(PersonRead):
    company: text(200) | None
    website: text(255) | None
    industry: text(100) | None
    status: LeadStatus
    converted_at: datetime | None
    converted_contact_id: uuid.UUID | None
    converted_account_id: uuid.UUID | None


class LeadList(BaseModel):
    data: Annotated[list[LeadRead], Field(max_length=MAX_LIMIT)]
    next_cursor: text(512) | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class LeadSearch(PersonSearch):
    status: LeadStatus | None = None


class LeadQuery(QueryPaging, LeadSearch):
    """The same filters in the query string."""


class LeadConvert(InputModel):
    """Convert a lead: a contact always; an account linked, created from `company`, or none."""

    account_id: uuid.UUID | None = Field(
        default=None, description="Link the new contact to this existing account."
    )
    create_account: Flag = Field(
        default=True,
        description="Without `account_id`: create an account named after the lead's company.",
    )


class LeadConversion(BaseModel):
    lead: LeadRead
    contact: ContactRead
    account: AccountRead | None
