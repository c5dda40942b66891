"""Organizations and their settings."""

from __future__ import annotations

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped, TimestampMixin


class Organization(IdMixin, TimestampMixin, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    # Data keys of an older generation are superseded: `crm-service keys rotate` raises it,
    # new writes seal under the new generation at once, a batch job re-seals the rest.
    key_generation: Mapped[int] = mapped_column(Integer, default=1)


class FieldClassification(IdMixin, OrganizationScoped, Base):
    """An organization's classification of one field, where it differs from the default."""

    __tablename__ = "field_classifications"
    __table_args__ = (UniqueConstraint("organization_id", "module", "field"),)

    module: Mapped[str] = mapped_column(String(16))
    field: Mapped[str] = mapped_column(String(64))
    classification: Mapped[str] = mapped_column(String(16))
