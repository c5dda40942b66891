"""Users and their sign-in sessions."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped, TimestampMixin


class User(IdMixin, TimestampMixin, OrganizationScoped, Base):
    __tablename__ = "users"

    # Sign-in identifier, stored case-folded; unique across the service because login
    # names no organization.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    # True exactly when the profile is the built-in Administrator; kept in step with
    # profile_id by the one function that assigns profiles (access.service.assign_profile).
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    profile_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("profiles.id", ondelete="RESTRICT"), index=True
    )
    role_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("roles.id", ondelete="RESTRICT"), index=True
    )
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


class IdentityProvider(IdMixin, TimestampMixin, OrganizationScoped, Base):
    """An organization's single sign-on provider. `protocol` leaves room for SAML."""

    __tablename__ = "identity_providers"
    __table_args__ = (UniqueConstraint("organization_id"),)

    protocol: Mapped[str] = mapped_column(String(16), default="oidc")
    issuer: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    authorization_endpoint: Mapped[str] = mapped_column(String(500))
    token_endpoint: Mapped[str] = mapped_column(String(500))
    jwks_uri: Mapped[str] = mapped_column(String(500))
    # Where the single-page app receives the one-time sign-in code (in the URL fragment).
    frontend_redirect_url: Mapped[str] = mapped_column(String(500))
    allow_jit: Mapped[bool] = mapped_column(Boolean, default=False)
    require_sso: Mapped[bool] = mapped_column(Boolean, default=False)
    # The one administrator who may still sign in with a password when SSO is required.
    break_glass_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class UserIdentity(IdMixin, OrganizationScoped, Base):
    """A user linked to an identity at a provider: by (issuer, subject), never by email."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]


class SsoAttempt(IdMixin, OrganizationScoped, Base):
    """A sign-in sent to the provider: its state (hashed), nonce and PKCE verifier; then the
    one-time code the single-page app exchanges for a session token."""

    __tablename__ = "sso_attempts"

    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    nonce: Mapped[str] = mapped_column(String(64))
    code_verifier: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    handoff_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    handoff_used_at: Mapped[datetime | None]


class SignInAttempt(Base):
    """Counters that slow password guessing, one row per key: a source address
    (`address:<ip>`), an account at one address (`pair:<user id>:<ip>`) and an account from
    anywhere (`account:<user id>`). Ids and addresses only, as in the audit log; never an
    email. In the database rather than in memory so that every instance counts alike."""

    __tablename__ = "sign_in_attempts"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # The address counter's fixed window; the pair counter's lock-out.
    window_started_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(index=True)


class UserInvitation(IdMixin, OrganizationScoped, Base):
    """An invitation to join an organization, mailed to the address; the person accepts it by
    choosing a password. Creating one answers the same whether or not the address has an
    account elsewhere: only the address's owner learns that, when they try to accept.
    Only the SHA-256 of the mailed token is stored."""

    __tablename__ = "user_invitations"
    __table_args__ = (UniqueConstraint("organization_id", "email"),)

    # Case-folded, like users.email (a sign-in identifier once accepted).
    email: Mapped[str] = mapped_column(String(254))
    full_name: Mapped[str | None] = mapped_column(String(200))
    profile_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), index=True
    )
    role_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), index=True
    )
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
