"""Inputs and outputs of erasure, the blocklist and restriction. No output carries a value."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from crm_service.kit.schemas import Email, InputModel, text
from crm_service.records.paging import MAX_LIMIT
from crm_service.records.schemas import CursorText, QueryPaging


class PersonModule(StrEnum):
    LEADS = "leads"
    CONTACTS = "contacts"


class ErasureCreate(InputModel):
    """Whom to erase: the data subject of one lead or contact, or every subject with an email."""

    module: PersonModule | None = Field(default=None, description="With `record_id`.")
    record_id: uuid.UUID | None = Field(default=None, description="A lead's or contact's id.")
    email: Email | None = Field(
        default=None, description="Erase every data subject with a lead or contact of this email."
    )

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        by_record = self.module is not None and self.record_id is not None
        if by_record == (self.email is not None) or (
            (self.module is None) != (self.record_id is None)
        ):
            raise ValueError("send either `module` and `record_id`, or `email`")
        return self


class ErasureCreated(BaseModel):
    receipt_ids: list[uuid.UUID] = Field(description="One receipt per data subject erased.")


class ErasureReceiptRead(BaseModel):
    id: uuid.UUID
    subject_id: uuid.UUID
    erased_at: datetime
    actor_type: str
    actor_id: uuid.UUID | None
    records: dict[str, list[uuid.UUID]] = Field(
        description="The ids of the leads and contacts erased (emptied, or deleted from the "
        "recycle bin)."
    )
    counts: dict[str, int] = Field(
        description="What was erased, by kind: data keys destroyed, records emptied, recycle-bin "
        "records deleted, blocklist entries added, and each feature's own count."
    )
    reapplied_at: datetime | None = Field(
        description="When a restore of an older backup applied this erasure again."
    )


class BlocklistEntryRead(BaseModel):
    id: uuid.UUID
    kind: str = Field(description="`email` or `phone`; never the value.")
    created_at: datetime
    receipt_id: uuid.UUID | None


class BlocklistPage(BaseModel):
    data: list[BlocklistEntryRead]
    next_cursor: str | None


class BlocklistQuery(QueryPaging):
    cursor: CursorText | None = None


# --- restriction of processing (GDPR Art. 18) --------------------------------------------------


class RestrictionRead(BaseModel):
    """A restricted data subject: since when, why (a code), by which request. No values."""

    subject_id: uuid.UUID
    since: datetime
    reason: text(64) = Field(description="A value-free code, e.g. `privacy_request`.")
    request_id: uuid.UUID | None = Field(description="The privacy request that restricted it.")


class RestrictionPage(BaseModel):
    data: Annotated[list[RestrictionRead], Field(max_length=MAX_LIMIT)]
    next_cursor: text(512) | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class RestrictionQuery(QueryPaging):
    cursor: CursorText | None = None


class RestrictionLifted(BaseModel):
    subject_id: uuid.UUID
    lifted_at: datetime
    subject_told: bool = Field(
        description="Whether a mail telling the subject was queued before the restriction "
        "ended; false when none of their records has an email address (audited so)."
    )
