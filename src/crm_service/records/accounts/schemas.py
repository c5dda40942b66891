"""Account bodies: AccountCreate / AccountUpdate / AccountRead, list, search and query."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, Field

from crm_service.kit.schemas import InputModel, LongName, single_line, text
from crm_service.records.paging import MAX_LIMIT
from crm_service.records.schemas import (
    Description,
    Identifier,
    Phone,
    PostalCode,
    QueryPaging,
    RecordRead,
    RecordSearch,
    ShortText,
    Street,
    Website,
)


class AccountInput(InputModel):
    website: Website | None = None
    industry: ShortText | None = None
    phone: Phone | None = None
    billing_street: Street | None = None
    billing_city: ShortText | None = None
    billing_state: ShortText | None = None
    billing_postal_code: PostalCode | None = None
    billing_country: ShortText | None = None
    description: Description | None = None
    tax_id: Identifier | None = Field(
        default=None, description="Tax identification number (sensitive)."
    )
    owner_id: uuid.UUID | None = Field(
        default=None, description="Owning user; defaults to the creator."
    )


class AccountCreate(AccountInput):
    name: LongName


class AccountUpdate(AccountInput):
    name: LongName = None  # type: ignore[assignment]  # omit to keep; null refused


class AccountRead(RecordRead):
    name: text(200) | None
    website: text(255) | None
    industry: text(100) | None
    phone: text(32) | None
    billing_street: text(250) | None
    billing_city: text(100) | None
    billing_state: text(100) | None
    billing_postal_code: text(20) | None
    billing_country: text(100) | None
    description: text(32_000) | None
    tax_id: text(64) | None


class AccountList(BaseModel):
    data: Annotated[list[AccountRead], Field(max_length=MAX_LIMIT)]
    next_cursor: text(512) | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class AccountSearch(RecordSearch):
    name: single_line(200) | None = Field(
        default=None, description="Exact match, ignoring case and spaces."
    )
    phone: single_line(32) | None = None


class AccountQuery(QueryPaging, AccountSearch):
    """The same filters in the query string."""
