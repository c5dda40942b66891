"""The Contact model."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base
from crm_service.records.models import PersonColumns, RecordColumns


class Contact(RecordColumns, PersonColumns, Base):
    __tablename__ = "contacts"

    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
