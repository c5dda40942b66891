"""Tables of the privacy portal: one-time sign-in codes and the short sessions they open.

Neither holds a plain email address: both name the person by the organization's blind index
of it (HMAC-SHA256), and the session seals the address (it is needed to file requests in the
person's name) under the organization's key. Codes and session tokens are kept as hashes:
a code as an HMAC keyed by the sign-in's own random token, which only the browser that asked
for the code holds, so even a copy of the database cannot try the million codes offline.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped


class PortalSignIn(IdMixin, OrganizationScoped, Base):
    """One code mailed (or, for an address the organization does not know, not mailed) to
    an email address: single use, `CODE_TTL` long, `MAX_ATTEMPTS` tries."""

    __tablename__ = "portal_sign_ins"
    __table_args__ = (Index("ix_portal_sign_ins_expires", "organization_id", "expires_at"),)

    # SHA-256 of the sign-in token the browser carries in the code form.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email_bidx: Mapped[str] = mapped_column(String(64))
    # HMAC-SHA256 of the code under the sign-in token.
    code_mac: Mapped[str] = mapped_column(String(64))
    # False when no code was mailed (unknown address, throttled address): it never opens.
    live: Mapped[bool] = mapped_column(Boolean)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PortalSession(IdMixin, OrganizationScoped, Base):
    """A signed-in portal visit: the cookie's token (kept as its SHA-256) for one email
    address of one organization, ended by sign-out, idleness or its absolute lifetime."""

    __tablename__ = "portal_sessions"
    __table_args__ = (Index("ix_portal_sessions_expires", "organization_id", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email_bidx: Mapped[str] = mapped_column(String(64))
    # The address, sealed under the organization's key (bound to this row).
    email_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    language: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    # The absolute end; idleness ends it sooner (CRM_PORTAL_SESSION_IDLE_SECONDS). Signing
    # out deletes the row.
    expires_at: Mapped[datetime]
