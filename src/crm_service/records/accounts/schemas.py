"""Account bodies: AccountCreate / AccountUpdate / AccountRead, list, search and query."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from crm_service.kit.schemas import InputModel, LongName, single_line
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
    tax_id: Identifier | None = Field(default=None, description="Tax identification number (sensitive).")
    owner_id: uuid.UUID | None = Field(default=None, description="Owning user; defaults to the creator.")


class AccountCreate(AccountInput):
    name: LongName


class AccountUpdate(AccountInput):
    name: LongName = None  # type: ignore[assignment]  # omit to keep; null refused


class AccountRead(RecordRead):
    name: str | None
    website: str | None
    industry: str | None
    phone: str | None
    billing_street: str | None
    billing_city: str | None
    billing_state: str | None
    billing_postal_code: str | None
    billing_country: str | None
    description: str | None
    tax_id: str | None


class AccountList(BaseModel):
    data: list[AccountRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class AccountSearch(RecordSearch):
    name: single_line(200) | None = Field(
        default=None, description="Exact match, ignoring case and spaces."
    )
    phone: single_line(32) | None = None


class AccountQuery(QueryPaging, AccountSearch):
    """The same filters in the query string."""
