"""Organizations and their settings."""

from __future__ import annotations

import uuid

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped


class FieldClassification(IdMixin, OrganizationScoped, Base):
    """An organization's classification of one field, where it differs from the default."""

    __tablename__ = "field_classifications"
    __table_args__ = (UniqueConstraint("organization_id", "module", "field"),)

    module: Mapped[str] = mapped_column(String(16))
    field: Mapped[str] = mapped_column(String(64))
    classification: Mapped[str] = mapped_column(String(16))


class IpAllowlist(OrganizationScoped, Base):
    """Where an organization's users may sign in and call the API from."""

    __tablename__ = "ip_allowlists"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Newline-separated CIDRs, normalized (e.g. 10.0.0.0/8, 2001:db8::/32).
    cidrs: Mapped[str] = mapped_column(Text, default="")


class ComplianceSettings(OrganizationScoped, Base):
    """Which classifications an organization withholds from each channel data leaves by.

    `withhold` is JSON: channel (`api`, `export`, `integrations`) -> classifications
    (`personal`, `sensitive`). No row withholds nothing. Read on every request (one primary-key
    lookup), so a change holds on every instance's next request.
    """

    __tablename__ = "compliance_settings"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    withhold: Mapped[str] = mapped_column(Text, default="{}")
