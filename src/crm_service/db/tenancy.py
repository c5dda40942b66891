"""The organization: the tenant every scoped row belongs to, and the key generation the
encrypted store seals under (so the core reads it without importing a feature)."""

from __future__ import annotations

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, TimestampMixin


class Organization(IdMixin, TimestampMixin, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    # Data keys of an older generation are superseded: `crm-service keys rotate` raises it,
    # new writes seal under the new generation at once, a batch job re-seals the rest.
    key_generation: Mapped[int] = mapped_column(Integer, default=1)
    # Every user must pass a second factor; those without one enrol before getting a token.
    mfa_required: Mapped[bool] = mapped_column(Boolean, default=False)
