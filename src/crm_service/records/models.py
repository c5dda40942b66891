"""Columns every record shares, where a lead or contact came from, its legal basis, and the
processing locks of data subjects.

The three record models live with their modules (`records/leads`, `records/contacts`,
`records/accounts`); this module holds what they are built from.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from crm_service.crypto.blind_index import IndexKind
from crm_service.crypto.sealed import SealedField, SealedRecord
from crm_service.db.base import Base, IdMixin, OrganizationScoped, TimestampMixin


class SourceChannel(StrEnum):
    """How a lead or contact entered the CRM. Set by the server, never by the client."""

    MANUAL = "manual"
    API = "api"
    IMPORT = "import"
    WEBFORM = "webform"
    INTEGRATION = "integration"


class LegalBasis(StrEnum):
    """The six lawful bases of GDPR Art. 6(1)."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


class RecordColumns(IdMixin, TimestampMixin, OrganizationScoped):
    """Identity, ownership, the data key of its sealed values and the optimistic-concurrency
    version of a record."""

    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    data_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("data_keys.id"))
    version: Mapped[int] = mapped_column(default=1)
    # In the recycle bin since then (and by whom); purged for good after the retention.
    deleted_at: Mapped[datetime | None]
    deleted_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805
        # Every UPDATE carries "WHERE version = <read version>": a concurrent change makes it
        # match nothing, which surfaces as 412 instead of a lost update.
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:  # noqa: N805
        name = cls.__tablename__  # type: ignore[attr-defined]
        indexed = getattr(cls, "__indexed_fields__", {})
        return (
            Index(f"ix_{name}_org_created", "organization_id", "created_at", "id"),
            Index(f"ix_{name}_org_updated", "organization_id", "updated_at", "id"),
            Index(f"ix_{name}_data_key_id", "data_key_id"),
            Index(f"ix_{name}_org_deleted", "organization_id", "deleted_at"),
            *(
                Index(f"ix_{name}_{field}_bidx", "organization_id", f"{field}_bidx")
                for field in indexed
            ),
            *(
                [Index(f"ix_{name}_org_subject", "organization_id", "subject_id")]
                if issubclass(cast(type, cls), PersonColumns)
                else []
            ),
        )


if TYPE_CHECKING:

    class SealedColumns(SealedRecord):
        """What a type checker knows of a `sealed_columns` mixin: a sealed record whose field
        attributes (one per catalogue field) are made at import."""

        def __getattr__(self, name: str) -> Any: ...


def sealed_columns(fields: Iterable[tuple[str, IndexKind | None]]) -> type[SealedRecord]:
    """A mixin with, per classifiable field, the stored-form column (named as the field), a
    `SealedField` attribute for the plaintext and, for indexed fields, a blind-index column."""
    fields = tuple(fields)
    namespace: dict[str, Any] = {
        "__annotations__": {},
        "__sealed_fields__": tuple(name for name, _ in fields),
        "__indexed_fields__": {name: kind for name, kind in fields if kind is not None},
    }
    for name, kind in fields:
        namespace["__annotations__"][f"{name}_stored"] = Mapped[bytes | None]
        namespace[f"{name}_stored"] = mapped_column(name, LargeBinary, nullable=True)
        namespace[name] = SealedField(name)
        if kind is not None:
            namespace["__annotations__"][f"{name}_bidx"] = Mapped[str | None]
            namespace[f"{name}_bidx"] = mapped_column(String(64), nullable=True)
    return type("SealedColumns", (SealedRecord,), namespace)


class PersonColumns(SealedRecord):
    """A data subject (lead or contact): who they are, where they came from, the legal basis.

    `subject_id` names the person across records: a lead and the contact it becomes share it,
    and with it their data key, so erasing the person reaches both. A person's record is
    always a sealed record of its organization (`RecordColumns`, `sealed_columns`).
    """

    if TYPE_CHECKING:
        # Mapped by `RecordColumns`, beside which this mixin is always used.
        organization_id: Mapped[uuid.UUID]

    subject_id: Mapped[uuid.UUID]

    source_channel: Mapped[str] = mapped_column(String(16))
    source_client_id: Mapped[str | None] = mapped_column(String(64))
    source_batch_id: Mapped[uuid.UUID | None]
    source_form: Mapped[str | None] = mapped_column(String(100))

    legal_basis: Mapped[str | None] = mapped_column(String(32))
    legal_basis_set_at: Mapped[datetime | None]
    legal_basis_set_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )

    @property
    def processing_restricted(self) -> bool | None:
        """Whether the data subject was restricted (GDPR Art. 18) when the record was read by
        id (the same statement says so); None when it was loaded some other way, unknown."""
        return self.__dict__.get("_processing_restricted")

    def note_restriction(self, restricted: bool) -> None:
        self.__dict__["_processing_restricted"] = restricted


class LegalBasisEntry(IdMixin, OrganizationScoped, Base):
    """One setting of a lead's or contact's legal basis. Entries are appended, never changed."""

    __tablename__ = "legal_basis_entries"
    __table_args__ = (
        Index("ix_legal_basis_entries_subject", "organization_id", "subject_type", "subject_id"),
    )

    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[uuid.UUID]
    basis: Mapped[str] = mapped_column(String(32))
    # The legitimate-interest assessment, required when basis is legitimate_interests.
    assessment: Mapped[str | None] = mapped_column(Text)
    set_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    set_by_client_id: Mapped[str | None] = mapped_column(String(64))
    set_at: Mapped[datetime]
    # When a lead is converted, its basis is carried to the contact with a pointer back.
    carried_from_lead_id: Mapped[uuid.UUID | None]


class ProcessingLockKind(StrEnum):
    """Why nothing about a data subject may change for now."""

    LOCKED = "locked"  # a consent request is unanswered
    RESTRICTED = "restricted"  # GDPR Art. 18: stored, not processed


class SubjectProcessingLock(Base):
    """A data subject (a lead and the contact it became) locked for processing.

    Set and lifted by the features that decide it (consent requests, privacy requests)
    through `ProcessingLockRepository`; read by the one check every change of a lead or
    contact passes (`records/processing.py`). A subject can be locked and restricted at once,
    each set and lifted by its own feature, so the kind is part of the key.
    """

    __tablename__ = "subject_processing_locks"
    __table_args__ = (CheckConstraint("kind IN ('locked', 'restricted')", name="kind"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    subject_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    # A value-free code from the feature that set it, e.g. consent_unanswered.
    reason: Mapped[str] = mapped_column(String(64))
    since: Mapped[datetime]
    # The consent request or privacy request that set it, when one did.
    request_id: Mapped[uuid.UUID | None]


class PartnerDisclosure(Base):
    """A partner client (an OAuth client) was shown a data subject's data: one row per client
    and subject, from the first time. GDPR Art. 19 asks that a rectification, erasure or
    restriction be told to every recipient; the disclosure policy writes these as it decides
    a partner's response, and privacy requests list them. Ids only, no value; erasing the
    subject deletes its rows once the request has listed them."""

    __tablename__ = "partner_disclosures"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    subject_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # No foreign key: a client deleted since still received the data and is still to be told.
    client_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    first_disclosed_at: Mapped[datetime]
