"""Schema pieces shared by the record modules: source, legal basis, person fields, pages."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from crm_service.db.base import Base
from crm_service.kit.schemas import (
    Date,
    Email,
    FieldNames,
    InputModel,
    Name,
    integer,
    multi_line,
    query_integer,
    single_line,
    text,
)
from crm_service.records.disclosure import FieldDisclosure, disclosure_of
from crm_service.records.etag import etag_for
from crm_service.records.models import LegalBasis, PersonColumns, SourceChannel
from crm_service.records.paging import DEFAULT_LIMIT, MAX_LIMIT, RecordSort

ShortText = single_line(100)
Phone = single_line(32, min_length=3, pattern=r"^\+?[0-9 ()./-]+$")
Website = single_line(
    255, pattern=r"^https?://[^\s/$.?#\u0000-\u001f\u007f-\u009f][^\s\u0000-\u001f\u007f-\u009f]*$"
)
Street = single_line(250)
PostalCode = single_line(20)
Identifier = single_line(64, pattern=r"^[A-Za-z0-9 ./-]+$")
Description = multi_line(32_000)
Assessment = multi_line(10_000, min_length=1)
CursorText = single_line(512, min_length=0)


class PersonInput(InputModel):
    """A person's writable fields (leads and contacts). All optional: updates are partial."""

    first_name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    mobile: Phone | None = None
    title: ShortText | None = None
    date_of_birth: Date | None = None
    mailing_street: Street | None = None
    mailing_city: ShortText | None = None
    mailing_state: ShortText | None = None
    mailing_postal_code: PostalCode | None = None
    mailing_country: ShortText | None = None
    description: Description | None = None
    national_id: Identifier | None = Field(
        default=None, description="Passport or national identity number (sensitive)."
    )
    owner_id: uuid.UUID | None = Field(
        default=None, description="Owning user; defaults to the creator."
    )


class SourceRead(BaseModel):
    """Where the record came from. Set by the server when the record is created."""

    channel: SourceChannel
    client_id: text(100) | None = Field(default=None, description="OAuth client, for `api`.")
    batch_id: uuid.UUID | None = Field(default=None, description="Import batch, for `import`.")
    form: text(200) | None = Field(default=None, description="Web form name, for `webform`.")
    ip: text(45) | None = Field(default=None, description="Submitter's IP address, for `webform`.")


class LegalBasisSet(InputModel):
    """Set the legal basis of processing; the previous one is kept in the history."""

    # The assessment rule below, in the schema's words.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"basis": {"const": LegalBasis.LEGITIMATE_INTERESTS.value}}},
            "then": {
                "required": ["assessment"],
                "properties": {"assessment": {"not": {"type": "null"}}},
            },
        }
    )

    basis: LegalBasis
    assessment: Assessment | None = Field(
        default=None,
        description="Legitimate-interest assessment; required for `legitimate_interests`.",
    )

    @model_validator(mode="after")
    def _assessment_for_legitimate_interests(self) -> Self:
        if self.basis is LegalBasis.LEGITIMATE_INTERESTS and not self.assessment:
            raise ValueError("legitimate_interests needs an assessment (the LIA text)")
        return self


class LegalBasisRead(BaseModel):
    basis: LegalBasis
    set_at: datetime
    set_by_id: uuid.UUID | None


class LegalBasisEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    basis: LegalBasis
    assessment: text(10_000) | None
    set_at: datetime
    set_by_id: uuid.UUID | None
    set_by_client_id: text(100) | None
    carried_from_lead_id: uuid.UUID | None


class LegalBasisHistory(BaseModel):
    current: LegalBasisEntryRead | None
    history: list[LegalBasisEntryRead] = Field(description="Every setting, newest first.")


class RecordRead(BaseModel):
    """Fields every record answers with."""

    model_config = ConfigDict(from_attributes=True)

    @model_validator(mode="before")
    @classmethod
    def _from_record(cls, data: Any) -> Any:
        """Build the response from a stored record: ETag, source and legal basis included."""
        if not isinstance(data, Base):
            return data
        return cls.values_of(data, disclosure_of(data), person=isinstance(data, PersonColumns))

    @classmethod
    def values_of(cls, data: Any, disclosure: FieldDisclosure, *, person: bool) -> dict[str, Any]:
        """The response's values from anything with a record's attributes (a stored record,
        or an export's plain row), as the disclosure policy decided for it."""
        hidden = disclosure.hidden
        values = {
            name: None if name in hidden else getattr(data, name)
            for name in cls.model_fields
            if hasattr(data, name)
        }
        values["etag"] = etag_for(data.version)  # type: ignore[attr-defined]
        values["masked_fields"] = list(disclosure.masked)
        values["withheld_fields"] = list(disclosure.withheld)
        if person:
            values["source"] = SourceRead(
                channel=SourceChannel(data.source_channel),
                client_id=data.source_client_id,
                batch_id=data.source_batch_id,
                form=data.source_form,
                ip=None if "source_ip" in hidden else data.source_ip,
            )
            values["legal_basis"] = (
                LegalBasisRead(
                    basis=LegalBasis(data.legal_basis),
                    set_at=data.legal_basis_set_at,
                    set_by_id=data.legal_basis_set_by_id,
                )
                if data.legal_basis is not None and data.legal_basis_set_at is not None
                else None
            )
        return values

    id: uuid.UUID
    owner_id: uuid.UUID | None
    created_by_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    etag: text(24) = Field(description="Send as `If-Match` to update only this version.")
    masked_fields: FieldNames = Field(
        default_factory=list,
        description="Sensitive fields answered as null because your profile may not see them.",
    )
    withheld_fields: FieldNames = Field(
        description="Fields left out of this response because the organization's compliance "
        "settings withhold their classification on this channel (api, export, integrations).",
    )

    # No return annotation: pydantic would take it for the response's schema.
    @model_serializer(mode="wrap")
    def _leave_out_withheld(self, handler: SerializerFunctionWrapHandler):  # noqa: ANN202
        """A withheld field is absent, not null: null would read as "no value stored"."""
        data = handler(self)
        for name in self.withheld_fields:
            data.pop(name, None)
        return data


class PersonRead(RecordRead):
    first_name: text(100) | None
    last_name: text(100) | None
    email: text(254) | None
    phone: text(32) | None
    mobile: text(32) | None
    title: text(100) | None
    date_of_birth: date | None
    mailing_street: text(250) | None
    mailing_city: text(100) | None
    mailing_state: text(100) | None
    mailing_postal_code: text(20) | None
    mailing_country: text(100) | None
    description: text(32_000) | None
    national_id: text(64) | None
    source: SourceRead
    legal_basis: LegalBasisRead | None


class RecordSearch(InputModel):
    """Paging and exact-match filters of a list, sent as the JSON body of `POST .../search`.
    Unknown fields are refused (422)."""

    limit: integer(ge=1, le=MAX_LIMIT) = DEFAULT_LIMIT
    cursor: CursorText | None = Field(
        default=None, description="`next_cursor` of the previous page."
    )
    sort: RecordSort = RecordSort.CREATED_DESC
    owner_id: uuid.UUID | None = None


class PersonSearch(RecordSearch):
    email: single_line(254) | None = Field(
        default=None, description="Exact match, ignoring case and spaces."
    )
    phone: single_line(32) | None = Field(
        default=None, description="Matches phone or mobile, however the number is written."
    )


class QueryPaging(InputModel):
    """Mixed in first by a list's query-string model: there numbers arrive as text."""

    limit: query_integer(ge=1, le=MAX_LIMIT) = DEFAULT_LIMIT


class FieldChange(BaseModel):
    old: Any = None
    new: Any = None


class HistoryEntryRead(BaseModel):
    id: uuid.UUID
    occurred_at: datetime
    actor_type: text(16)
    actor_id: uuid.UUID | None
    action: text(32) = Field(description="created, updated, deleted, restored or converted.")
    fields: FieldNames = Field(description="The fields changed.")
    changes: Annotated[dict[text(64), FieldChange], Field(max_length=100)] | None = Field(
        description="Old and new value per field; null when the change carries no values or "
        "the data subject was erased."
    )
    erased: bool = Field(description="The values were erased with the data subject.")


class HistoryPage(BaseModel):
    data: Annotated[list[HistoryEntryRead], Field(max_length=MAX_LIMIT)]
    masked_fields: FieldNames = Field(
        description="Sensitive fields whose values are answered as null for you."
    )
    withheld_fields: FieldNames = Field(
        description="Fields whose values are left out of `changes` on this channel by the "
        "organization's compliance settings (their names stay in `fields`)."
    )
    next_cursor: text(512) | None


class HistoryQuery(QueryPaging):
    cursor: CursorText | None = None


class RecycleBinEntry(BaseModel):
    module: text(16)
    id: uuid.UUID
    owner_id: uuid.UUID | None
    deleted_at: datetime
    deleted_by_id: uuid.UUID | None
    purge_after: datetime = Field(description="When the worker purges it for good.")


class RecycleBinPage(BaseModel):
    data: Annotated[list[RecycleBinEntry], Field(max_length=MAX_LIMIT)]
    next_cursor: text(512) | None
