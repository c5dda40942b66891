"""The JSON document of an access and portability package, for the OpenAPI document and for
clients generated from it (`privacy/package.py` builds the document; a test holds it to
these schemas). Every string and list is bounded, as everywhere."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from crm_service.consent.schemas import ConsentEventRead
from crm_service.kit.schemas import FieldNames, text, whole_number
from crm_service.privacy.models import PrivacyRequestStatus, PrivacyRequestType
from crm_service.privacy.schemas import PersonModule
from crm_service.records.models import LegalBasis, SourceChannel
from crm_service.records.schemas import FieldChange

# A person's stored values (the longest field is a description of 32,000 characters).
FieldValues = Annotated[dict[text(64), text(32_000) | None], Field(max_length=100)]  # type: ignore[misc]
MANY = 100_000  # entries of one kind of one subject: more than any CRM holds on a person


class RecordState(StrEnum):
    LIVE = "live"
    RECYCLE_BIN = "recycle_bin"


class PackageRecord(BaseModel):
    """A lead or contact: every field the reader may see (masked ones null, withheld ones
    absent), and the record's own columns."""

    module: PersonModule
    id: uuid.UUID
    subject_id: uuid.UUID
    state: RecordState
    erased: bool = Field(description="The subject was erased: `fields` is empty.")
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = Field(description="Moved to the recycle bin then.")
    owner_id: uuid.UUID | None
    created_by_id: uuid.UUID | None
    legal_basis: LegalBasis | None = Field(description="The current basis.")
    status: text(16) | None = Field(default=None, description="Leads only.")
    converted_at: datetime | None = Field(default=None, description="Leads only.")
    converted_contact_id: uuid.UUID | None = Field(default=None, description="Leads only.")
    converted_account_id: uuid.UUID | None = Field(default=None, description="Leads only.")
    account_id: uuid.UUID | None = Field(default=None, description="Contacts only.")
    fields: FieldValues
    masked_fields: FieldNames
    withheld_fields: FieldNames


class PackageDataSource(BaseModel):
    """Where a lead or contact came from."""

    module: PersonModule
    record_id: uuid.UUID
    channel: SourceChannel
    client_id: text(64) | None = Field(description="The partner client, for `api`.")
    batch_id: uuid.UUID | None = Field(description="The import batch, for `import`.")
    form: text(100) | None = Field(description="The web form's name, for `webform`.")
    ip: text(45) | None = Field(description="The submitter's IP address, for `webform`.")


class PackageLegalBasis(BaseModel):
    """One setting of a record's legal basis."""

    module: PersonModule
    record_id: uuid.UUID
    id: uuid.UUID
    basis: LegalBasis
    assessment: text(10_000) | None
    set_at: datetime
    set_by_id: uuid.UUID | None
    set_by_client_id: text(64) | None
    carried_from_lead_id: uuid.UUID | None


class PackagePurpose(BaseModel):
    purpose: text(64)
    purpose_version: whole_number()


class PackageConsentRequest(BaseModel):
    """A request for the subject's consent."""

    id: uuid.UUID
    module: PersonModule
    record_id: uuid.UUID
    purposes: list[PackagePurpose] = Field(max_length=20)
    channel: text(16)
    language: text(8)
    status: text(16)
    deadline: datetime
    created_at: datetime
    created_by_id: uuid.UUID | None
    created_by_client_id: text(64) | None
    answered_at: datetime | None
    no_response_at: datetime | None
    reminders_sent: whole_number()


class PackagePrivacyRequest(BaseModel):
    """A request about the subject's personal data: its clock and outcome."""

    id: uuid.UUID
    type: PrivacyRequestType
    status: PrivacyRequestStatus
    channel: text(16)
    received_at: datetime
    due_at: datetime
    extended_months: whole_number(le=2)
    verified_at: datetime | None
    completed_at: datetime | None
    rejected_at: datetime | None


class PackageHistoryEntry(BaseModel):
    """One change of a lead or contact."""

    module: PersonModule
    record_id: uuid.UUID
    id: uuid.UUID
    occurred_at: datetime
    actor_type: text(16)
    actor_id: uuid.UUID | None
    action: text(16)
    fields: FieldNames
    changes: Annotated[dict[text(64), FieldChange], Field(max_length=100)] | None = Field(
        description="Old and new value per field; null when the change carries no values or "
        "the subject was erased."
    )
    erased: bool


class PackageSubject(BaseModel):
    """Everything held on one data subject."""

    subject_id: uuid.UUID
    erased: bool = Field(description="The subject was erased: their records hold no values.")
    records: list[PackageRecord] = Field(max_length=MANY)
    data_sources: list[PackageDataSource] = Field(max_length=MANY)
    legal_basis: list[PackageLegalBasis] = Field(max_length=MANY)
    consent_events: list[ConsentEventRead] = Field(max_length=MANY)
    consent_requests: list[PackageConsentRequest] = Field(max_length=MANY)
    privacy_requests: list[PackagePrivacyRequest] = Field(max_length=MANY)
    history: list[PackageHistoryEntry] = Field(max_length=MANY)


class ModuleDisclosure(BaseModel):
    masked: FieldNames = Field(description="Sensitive fields answered as null for the reader.")
    withheld: FieldNames = Field(
        description="Fields left out by the organization's compliance settings on the channel."
    )


class PackageSummary(BaseModel):
    organization_id: uuid.UUID
    subject_ids: list[uuid.UUID] = Field(max_length=100)
    generated_at: datetime
    channel: Literal["screen", "api"] | None = Field(
        description="The reader's channel; null for the subject's own package."
    )
    complete: bool = Field(description="Nothing is masked or withheld.")
    disclosure: Annotated[dict[PersonModule, ModuleDisclosure], Field(max_length=2)]
    not_included: Annotated[list[text(64)], Field(max_length=10)] = Field(
        description="Kinds of data held on the subject that the package does not hold yet."
    )
    kinds: Annotated[dict[text(64), text(500)], Field(max_length=20)] = Field(
        description="What each kind of data in `subjects` is."
    )


class PackageDocument(BaseModel):
    """The package as one JSON document."""

    package: PackageSummary
    subjects: list[PackageSubject] = Field(max_length=100)
