"""Inputs and outputs of privacy requests, erasure, the blocklist and restriction. Only a privacy
request's own reading carries values (the requester's email, details, corrections and the
reasons given, opened for those allowed to manage privacy requests)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from crm_service.kit.schemas import (
    Email,
    InputModel,
    Timestamp,
    integer,
    multi_line,
    single_line,
    text,
    whole_number,
)
from crm_service.privacy.models import PrivacyRequestStatus, PrivacyRequestType
from crm_service.records.paging import MAX_LIMIT
from crm_service.records.schemas import CursorText, QueryPaging


class PersonModule(StrEnum):
    LEADS = "leads"
    CONTACTS = "contacts"


# The two ways to name a data subject (whom to erase, whom a request is about), as the
# document says them (the validators below check the same): `module` with `record_id`, or
# `email`, never both.
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


# --- privacy requests ------------------------------------------------------------------------

FieldValue = single_line(500, min_length=0) | None


class Correction(InputModel):
    """A rectification asked for: new values of a lead's or contact's fields."""

    module: PersonModule
    record_id: uuid.UUID
    # A key is one line too: `additionalProperties: false` says so beside pydantic's
    # `patternProperties`, which alone would leave other keys unconstrained.
    fields: Annotated[
        dict[single_line(64), FieldValue],
        Field(min_length=1, max_length=50, json_schema_extra={"additionalProperties": False}),
    ] = Field(description="Field name -> new value (null empties it), as `PATCH` takes them.")


# Only a rectification request carries corrections (the service checks the same).
_CORRECTIONS_ONLY_TO_RECTIFY: JsonDict = {
    "anyOf": [
        {"properties": {"type": {"const": "rectification"}}},
        {"properties": {"corrections": {"anyOf": [{"type": "null"}, {"maxItems": 0}]}}},
    ]
}


class PrivacyRequestCreate(InputModel):
    """A data-subject request as it reached the organization, naming the subject by email
    (every lead and contact with it) or by one lead or contact."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"allOf": [_ONE_WAY, _CORRECTIONS_ONLY_TO_RECTIFY]}
    )

    type: PrivacyRequestType
    email: Email | None = Field(default=None, description="The requester's email.")
    module: PersonModule | None = Field(default=None, description="With `record_id`.")
    record_id: uuid.UUID | None = Field(default=None, description="A lead's or contact's id.")
    received_at: Timestamp | None = Field(
        default=None,
        description="When the request reached the organization (the legal clock starts); "
        "now when left out. Never in the future.",
    )
    details: multi_line(5000) | None = Field(
        default=None, description="What the requester asked, in their words. Sealed."
    )
    corrections: Annotated[list[Correction], Field(max_length=20)] | None = Field(
        default=None,
        description="Rectification only: the changes to make when the request is completed.",
    )
    language: Literal["en", "ja"] = Field(
        default="en", description="The language of the mail the requester receives."
    )

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        by_record = self.module is not None and self.record_id is not None
        if by_record == (self.email is not None) or (
            (self.module is None) != (self.record_id is None)
        ):
            raise ValueError("send either `module` and `record_id`, or `email`")
        return self


class PrivacyRequestExtend(InputModel):
    months: integer(ge=1, le=2) = Field(
        description="One or two months, counted from the original due date; at most two in "
        "all, and only before the original due date."
    )
    reason: multi_line(2000, min_length=1) = Field(description="Mailed to the requester.")


class PrivacyRequestReject(InputModel):
    reason: multi_line(2000, min_length=1) = Field(description="Mailed to the requester.")


class PrivacyRequestVerify(InputModel):
    """Staff confirmed who asks (an identity document, a call back)."""

    note: multi_line(1000) | None = Field(
        default=None, description="How the identity was confirmed; sealed with the request."
    )


class PrivacyRequestQuery(QueryPaging):
    status: PrivacyRequestStatus | None = None
    type: PrivacyRequestType | None = None
    overdue: Literal["true", "false"] | None = Field(
        default=None,
        description="`true`: open requests past their due date; `false`: all others.",
    )
    due_before: Timestamp | None = Field(
        default=None, description="Open requests due before this time (the due-soon list)."
    )
    cursor: CursorText | None = None


class Recipient(BaseModel):
    """Who was told of a rectification, erasure or restriction (GDPR Art. 19)."""

    kind: Annotated[str, Field(max_length=32)] = Field(
        description="`webhook_endpoint` (a `privacy.*` event was queued to it) or "
        "`oauth_client` (a partner client that received the subject's data or wrote their "
        "records; tell it through your agreement with that partner)."
    )
    id: text(64)
    at: datetime
    how: text(32) = Field(
        description="`webhook_queued` (a `privacy.*` event was queued to the endpoint); "
        "`received_data` (a response, export or package to the client, or a delivered event "
        "to an endpoint that takes no `privacy.*` event of this kind, carried the subject's "
        "data: tell it yourself); `found_in_audit_log` (the client wrote the subject's "
        "records and received none of their data)."
    )


class SubjectNotice(BaseModel):
    """A mail to the requester: why the request was extended or rejected (`extended`,
    `rejected`), or what completing it did (`completed`)."""

    kind: text(16)
    at: datetime
    outbox_id: uuid.UUID


class CorrectionRead(BaseModel):
    module: text(16)
    record_id: uuid.UUID
    fields: Annotated[dict[text(64), text(500) | None], Field(max_length=50)]


class PrivacyRequestRead(BaseModel):
    id: uuid.UUID
    type: PrivacyRequestType
    status: PrivacyRequestStatus
    channel: text(16) = Field(description="Who filed it: `staff`, `partner` or `portal`.")
    module: text(16) | None
    record_id: uuid.UUID | None
    subject_ids: Annotated[list[uuid.UUID], Field(max_length=1000)]
    email: text(254) | None
    details: text(5000) | None
    corrections: Annotated[list[CorrectionRead], Field(max_length=20)] | None
    verification_note: text(1000) | None
    extension_reason: text(2000) | None
    rejection_reason: text(2000) | None
    personal_data_erased: bool = Field(
        description="The requester's email, details and reasons can no longer be opened: the "
        "data subject was erased."
    )
    language: text(2)
    received_at: datetime
    original_due_at: datetime = Field(description="One calendar month after receipt.")
    due_at: datetime = Field(description="The original due date, plus any extension.")
    extended_months: whole_number(le=2)
    extended_at: datetime | None
    overdue: bool
    filed_at: datetime
    filed_by_type: text(16)
    filed_by_id: uuid.UUID | None
    verified_at: datetime | None
    verified_by: text(16) | None = Field(description="`portal` or `staff`.")
    verified_by_id: uuid.UUID | None
    completed_at: datetime | None
    rejected_at: datetime | None
    closed_by_type: text(16) | None
    closed_by_id: uuid.UUID | None
    receipt_ids: Annotated[list[uuid.UUID], Field(max_length=1000)] = Field(
        description="Erasure: one receipt per data subject (`GET /{id}/receipt`)."
    )
    package_expires_at: datetime | None = Field(
        default=None,
        description="Access and portability: until then the package can be downloaded "
        "(`GET /{id}/package`).",
    )
    outcome: Annotated[dict[text(64), whole_number()], Field(max_length=20)] = Field(
        description="What completing did, counted: corrections applied, consents withdrawn, "
        "subjects restricted or erased, subjects packaged. `records_held: 0` answers a "
        "request on an email the organization holds nothing on."
    )
    recipients: Annotated[list[Recipient], Field(max_length=1000)]
    notices: Annotated[list[SubjectNotice], Field(max_length=100)]


class PrivacyRequestPage(BaseModel):
    data: Annotated[list[PrivacyRequestRead], Field(max_length=200)]
    next_cursor: text(512) | None


class PrivacyRequestReceipt(BaseModel):
    request_id: uuid.UUID
    receipts: Annotated[list[ErasureReceiptRead], Field(max_length=1000)]
