"""Account bodies: AccountCreate / AccountUpdate / AccountRead, list and query."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from crm_service.records.schemas import (
    InputModel,
    LongName,
    Phone,
    RecordQuery,
    RecordRead,
    ShortText,
    Website,
)


class AccountInput(InputModel):
    website: Website | None = None
    industry: ShortText | None = None
    phone: Phone | None = None
    owner_id: uuid.UUID | None = Field(default=None, description="Owning user; defaults to the creator.")


class AccountCreate(AccountInput):
    name: LongName


class AccountUpdate(AccountInput):
    name: LongName = None  # type: ignore[assignment]  # omit to keep; null refused


class AccountRead(RecordRead):
    name: str
    website: str | None
    industry: str | None
    phone: str | None


class AccountList(BaseModel):
    data: list[AccountRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class AccountQuery(RecordQuery):
    name: str | None = Field(default=None, max_length=200, description="Exact match.")
    phone: str | None = Field(default=None, max_length=32)
