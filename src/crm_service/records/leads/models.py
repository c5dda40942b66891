"""The Lead model."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base
from crm_service.kit.modules import Module
from crm_service.records.fields import CATALOG
from crm_service.records.models import PersonColumns, RecordColumns, sealed_columns

if TYPE_CHECKING:
    from crm_service.records.models import SealedColumns


class LeadStatus(StrEnum):
    NEW = "new"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    UNQUALIFIED = "unqualified"
    CONVERTED = "converted"


if TYPE_CHECKING:
    # The sealed columns are made from the field catalogue at import; to a type checker they
    # are the sealed-record mixin they extend.
    _LeadSealed = SealedColumns
else:
    _LeadSealed = sealed_columns((spec.name, spec.index) for spec in CATALOG[Module.LEADS])


class Lead(
    RecordColumns,
    PersonColumns,
    _LeadSealed,
    Base,
):
    __tablename__ = "leads"

    status: Mapped[str] = mapped_column(String(16), default=LeadStatus.NEW.value)
    converted_at: Mapped[datetime | None]
    converted_contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    converted_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL")
    )
