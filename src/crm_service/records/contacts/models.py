"""The Contact model."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base
from crm_service.kit.modules import Module
from crm_service.records.fields import CATALOG
from crm_service.records.models import PersonColumns, RecordColumns, sealed_columns

if TYPE_CHECKING:
    # The sealed columns are made from the field catalogue at import; to a type checker they
    # are a sealed record with dynamic field attributes.
    from crm_service.records.models import SealedColumns

    _ContactSealed = SealedColumns
else:
    _ContactSealed = sealed_columns((spec.name, spec.index) for spec in CATALOG[Module.CONTACTS])


class Contact(
    RecordColumns,
    PersonColumns,
    _ContactSealed,
    Base,
):
    __tablename__ = "contacts"

    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
