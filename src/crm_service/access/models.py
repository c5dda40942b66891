"""Profiles, roles, groups, organization-wide sharing defaults and record shares."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped, TimestampMixin


class Profile(IdMixin, TimestampMixin, OrganizationScoped, Base):
    """A permission set. Every user has exactly one."""

    __tablename__ = "profiles"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500))
    # "administrator" or "standard" for the two every organization starts with.
    builtin: Mapped[str | None] = mapped_column(String(16))
    # JSON: {"leads": ["create", "read", ...], ...}
    module_permissions: Mapped[str] = mapped_column(Text)
    view_sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    # JSON array of administration rights.
    rights: Mapped[str] = mapped_column(Text, default="[]")


class Role(IdMixin, TimestampMixin, OrganizationScoped, Base):
    """A place in the hierarchy: a user sees what users in the roles below theirs own."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("roles.id", ondelete="RESTRICT"), index=True
    )
    # A narrower IP allowlist for the role's users, newline-separated normalized CIDRs, on
    # top of the organization's; None: the organization's list alone applies.
    ip_allowlist: Mapped[str | None] = mapped_column(Text)


class Group(IdMixin, TimestampMixin, OrganizationScoped, Base):
    """Users given shared access to records together."""

    __tablename__ = "user_groups"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))


class GroupMember(OrganizationScoped, Base):
    __tablename__ = "group_members"

    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class SharingDefault(Base):
    """How a module's records are shared inside the organization when no rule says more."""

    __tablename__ = "sharing_defaults"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    module: Mapped[str] = mapped_column(String(16), primary_key=True)
    access: Mapped[str] = mapped_column(String(16))


class RecordShare(IdMixin, OrganizationScoped, Base):
    """One record shared with one group, to read or to read and write."""

    __tablename__ = "record_shares"
    __table_args__ = (UniqueConstraint("module", "record_id", "group_id"),)

    module: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[uuid.UUID] = mapped_column(index=True)
    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_groups.id", ondelete="CASCADE"), index=True
    )
    access: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
