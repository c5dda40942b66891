"""The Contact model."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base
from crm_service.kit.modules import Module
from crm_service.records.fields import CATALOG
from crm_service.records.models import PersonColumns, RecordColumns, sealed_columns


class Contact(
    RecordColumns,
    PersonColumns,
    sealed_columns((spec.name, spec.index) for spec in CATALOG[Module.CONTACTS]),
    Base,
):
    __tablename__ = "contacts"

    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
