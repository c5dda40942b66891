"""Users and their sign-in sessions."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped, TimestampMixin


class User(IdMixin, TimestampMixin, OrganizationScoped, Base):
    __tablename__ = "users"

    # Sign-in identifier, stored case-folded; unique across the service because login
    # names no organization.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Second-factor throttling, per account (not per IP): failures since the last success,
    # and the end of the current lock-out.
    mfa_failed_count: Mapped[int] = mapped_column(Integer, default=0)
    mfa_locked_until: Mapped[datetime | None]


class AuthSession(IdMixin, OrganizationScoped, Base):
    """One signed-in session. Only the SHA-256 of its bearer token is stored."""

    __tablename__ = "auth_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class TotpCredential(IdMixin, OrganizationScoped, Base):
    """A user's TOTP authenticator. The secret is sealed under the organization's key."""

    __tablename__ = "totp_credentials"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    # The newest 30-second step accepted; a code for it or an older step is refused. Moved
    # by a conditional UPDATE, so two instances can never both accept one code.
    last_used_step: Mapped[int | None] = mapped_column(Integer)


class RecoveryCode(IdMixin, OrganizationScoped, Base):
    """A single-use recovery code: a clear lookup prefix and an Argon2id hash of the code."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    lookup: Mapped[str] = mapped_column(String(8))
    code_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class MfaChallenge(IdMixin, OrganizationScoped, Base):
    """The password step passed; the second step is owed. Short-lived and single-use."""

    __tablename__ = "mfa_challenges"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
