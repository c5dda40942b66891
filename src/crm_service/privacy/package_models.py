"""Stored access and portability packages, waiting to be downloaded.

One row per data subject of a package: the subject's part sealed under their own data key,
so erasing any one subject (destroying their key, and their eraser deleting the row) makes
their part unreadable without touching the others'. `request_id` names the privacy request
the package answers; it is a plain id, not a foreign key, so packages do not depend on how
requests are stored.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, LargeBinary, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped


class StoredPackagePart(IdMixin, OrganizationScoped, Base):
    """One data subject's part of a stored package, until it expires."""

    __tablename__ = "privacy_package_parts"
    __table_args__ = (
        UniqueConstraint("organization_id", "request_id", "subject_id"),
        Index("ix_privacy_package_parts_subject", "organization_id", "subject_id"),
        Index("ix_privacy_package_parts_expires_at", "expires_at"),
    )

    request_id: Mapped[uuid.UUID]
    subject_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    # JSON of what the package is (when built, complete or disclosed, which kinds): no values.
    summary: Mapped[str] = mapped_column(Text)
    # JSON of the subject's part, sealed under the subject's key; null when the subject was
    # already erased when the package was built (there was nothing to seal).
    content_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
