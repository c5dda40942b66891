"""Request and response models of the consent feature."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from crm_service.consent.models import (
    ConsentChannel,
    ConsentStatus,
    RequestChannel,
    RequestStatus,
)
from crm_service.kit.schemas import (
    Flag,
    HttpUrl,
    InputModel,
    LongName,
    Name,
    Timestamp,
    multi_line,
    query_integer,
    single_line,
    text,
    whole_number,
)

PurposeKey = single_line(64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
NoticeVersion = single_line(64)
PersonModule = Literal["leads", "contacts"]


def person_module(stored: str) -> PersonModule:
    """A stored module name as the schemas name it: only leads and contacts hold people."""
    if stored not in ("leads", "contacts"):
        raise ValueError(f"{stored!r} is not a module of people")
    return cast(PersonModule, stored)


class Language(StrEnum):
    """Languages the bundled mail templates and pages are written in."""

    EN = "en"
    JA = "ja"


# A purpose's or a form's version: 1, 2, ... as its `Integer` column counts them.
Version = whole_number(ge=1)
# A compact JWS of a receipt: the receipt's JSON holds at most about 40,000 characters (a
# 2,000-character description and the other texts, each character escaped as up to 12), its
# base64url encoding four thirds of that, plus the header and the signature.
COMPACT_JWS_MAX = 65_536


# --- purposes ------------------------------------------------------------------------------


class PurposeCreate(InputModel):
    """A purpose, or a new version of one: sending an existing `key` with a new
    `notice_version` makes version n+1; events given under older versions keep theirs."""

    key: PurposeKey
    name: LongName
    description: multi_line(2000, min_length=1)
    notice_version: NoticeVersion
    notice_url: HttpUrl
    marketing: Flag = Field(
        default=False,
        description="Direct marketing: an objection (a privacy request of type `objection`) "
        "withdraws consent to every such purpose.",
    )


class PurposeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    key: text(64)
    version: Version
    name: text(200)
    description: text(2000)
    notice_version: text(64)
    notice_url: text(500)
    marketing: bool
    created_at: datetime
    superseded_at: datetime | None


class PurposeList(BaseModel):
    data: list[PurposeRead] = Field(max_length=10_000)


# --- the ledger ------------------------------------------------------------------------------


class ConsentRecord(InputModel):
    """A consent taken by staff (by phone, on paper, at a desk)."""

    purpose: PurposeKey
    status: ConsentStatus
    channel: ConsentChannel = ConsentChannel.STAFF
    notice_version: NoticeVersion | None = Field(
        default=None,
        description="The notice the person was shown; the purpose's current one when left out.",
    )
    note: multi_line(1000) | None = Field(
        default=None, description="How the consent was taken; sealed with the evidence."
    )


class ConsentEventRead(BaseModel):
    id: uuid.UUID
    purpose: text(64)
    purpose_version: Version
    status: ConsentStatus
    channel: ConsentChannel
    notice_version: text(64)
    recorded_at: datetime
    recorded_by_id: uuid.UUID | None
    recorded_by_client_id: text(64) | None
    module: PersonModule
    record_id: uuid.UUID
    request_id: uuid.UUID | None
    form_id: uuid.UUID | None
    evidence: dict[str, Any] | None = Field(
        description="IP addresses, user agent, form version and times, as recorded; null "
        "when there is none or the data subject was erased (`evidence_erased`)."
    )
    evidence_erased: bool


class PurposeState(BaseModel):
    purpose: text(64)
    status: ConsentStatus
    purpose_version: Version
    notice_version: text(64)
    recorded_at: datetime
    event_id: uuid.UUID


class ConsentLedger(BaseModel):
    subject_id: uuid.UUID
    state: list[PurposeState] = Field(
        max_length=10_000, description="The current state per purpose: its latest event."
    )
    events: list[ConsentEventRead] = Field(max_length=100_000, description="Oldest first.")


class ConsentReceipt(BaseModel):
    receipt: dict[str, Any] = Field(description="The receipt (the JWS payload), for reading.")
    jws: text(COMPACT_JWS_MAX) = Field(
        description="The signed receipt: a compact JWS (`alg` Ed25519, RFC 9864). Verify it "
        "with the key `kid` from `/consent/receipt-keys/{organization_id}`."
    )
    kid: uuid.UUID
    keys_url: text(600)


class ReceiptKey(BaseModel):
    """An Ed25519 public key as a JWK (RFC 8037)."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: text(43) = Field(description="The 32-byte public key, base64url without padding.")
    kid: text(36) = Field(description="The key's id, as receipts' `kid` names it.")
    use: Literal["sig"]
    alg: Literal["Ed25519"]


class JwkSet(BaseModel):
    keys: list[ReceiptKey] = Field(max_length=10)


# --- consent requests ----------------------------------------------------------------------


class ConsentRequestCreate(InputModel):
    module: PersonModule
    record_id: uuid.UUID
    purposes: list[PurposeKey] = Field(min_length=1, max_length=20)
    channel: RequestChannel
    deadline: Timestamp
    language: Language = Language.EN


class ConsentRequestRead(BaseModel):
    id: uuid.UUID
    module: PersonModule
    record_id: uuid.UUID
    subject_id: uuid.UUID
    purposes: list[PurposeRead] = Field(max_length=20)
    channel: RequestChannel
    language: Language
    status: RequestStatus
    deadline: datetime
    created_at: datetime
    created_by_id: uuid.UUID | None
    answered_at: datetime | None
    no_response_at: datetime | None
    reminders_sent: whole_number()


class ConsentRequestList(BaseModel):
    data: list[ConsentRequestRead] = Field(max_length=200)
    next_cursor: text(200) | None


class ConsentRequestQuery(InputModel):
    status: RequestStatus | None = None
    record_id: uuid.UUID | None = None
    limit: query_integer(ge=1, le=200) = 50
    cursor: single_line(200) | None = None


# --- web forms --------------------------------------------------------------------------------


class WebformField(InputModel):
    name: single_line(64)
    required: Flag = False


class WebformCreate(InputModel):
    name: Name
    module: PersonModule
    fields: list[WebformField] = Field(min_length=1, max_length=30)
    purposes: list[PurposeKey] = Field(default_factory=list, max_length=20)
    double_opt_in: Flag = True
    redirect_url: HttpUrl | None = None
    language: Language = Language.EN


class WebformUpdate(InputModel):
    name: Name | None = None
    fields: list[WebformField] | None = Field(default=None, min_length=1, max_length=30)
    purposes: list[PurposeKey] | None = Field(default=None, max_length=20)
    double_opt_in: Flag | None = None
    redirect_url: HttpUrl | None = None
    language: Language | None = None
    active: Flag | None = None


class WebformFieldRead(BaseModel):
    name: text(64)
    required: bool


class WebformRead(BaseModel):
    id: uuid.UUID
    version: Version
    name: text(100)
    module: PersonModule
    fields: list[WebformFieldRead] = Field(max_length=30)
    purposes: list[text(64)] = Field(max_length=20)
    double_opt_in: bool
    redirect_url: text(500) | None
    language: Language
    active: bool
    created_at: datetime
    updated_at: datetime
    submit_url: text(600) = Field(description="Where the form posts (public).")


class WebformList(BaseModel):
    data: list[WebformRead] = Field(max_length=10_000)


class SubmissionAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: text(200)
