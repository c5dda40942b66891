"""Inputs and outputs of erasure and the blocklist. No output carries a value."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from crm_service.kit.schemas import Email, InputModel, text, whole_number
from crm_service.records.paging import MAX_LIMIT
from crm_service.records.schemas import CursorText, QueryPaging


class PersonModule(StrEnum):
    LEADS = "leads"
    CONTACTS = "contacts"


# The two ways to name whom to erase, as the document says them (the validator below
# checks the same): `module` with `record_id`, or `email`, never both.
_ONE_WAY: JsonDict = {
    "oneOf": [
        {
            "required": ["module", "record_id"],
            "properties": {
                "module": {"type": "string", "enum": ["leads", "contacts"]},
                "record_id": {"type": "string", "format": "uuid", "maxLength": 36},
                "email": {"type": "null"},
            },
        },
        {
            "required": ["email"],
            "properties": {
                "email": {"type": "string", "format": "email", "maxLength": 254},
                "module": {"type": "null"},
                "record_id": {"type": "null"},
            },
        },
    ]
}


class ErasureCreate(InputModel):
    """Whom to erase: the data subject of one lead or contact, or every subject with an email."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_ONE_WAY)

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
    actor_type: text(16)
    actor_id: uuid.UUID | None
    # A data subject is one lead, one contact, or a lead and the contact converted from it.
    records: Annotated[
        dict[text(16), Annotated[list[uuid.UUID], Field(max_length=1)]], Field(max_length=2)
    ] = Field(
        description="The ids of the leads and contacts erased (emptied, or deleted from the "
        "recycle bin)."
    )
    # A few built-in kinds and one per feature that registered an eraser.
    counts: Annotated[dict[text(64), whole_number()], Field(max_length=50)] = Field(
        description="What was erased, by kind: data keys destroyed, records emptied, recycle-bin "
        "records deleted, blocklist entries added, and each feature's own count."
    )
    reapplied_at: datetime | None = Field(
        description="When a restore of an older backup applied this erasure again."
    )


class BlocklistEntryRead(BaseModel):
    id: uuid.UUID
    kind: text(16) = Field(description="`email` or `phone`; never the value.")
    created_at: datetime
    receipt_id: uuid.UUID | None


class BlocklistPage(BaseModel):
    data: Annotated[list[BlocklistEntryRead], Field(max_length=MAX_LIMIT)]
    next_cursor: text(512) | None


class BlocklistQuery(QueryPaging):
    cursor: CursorText | None = None
