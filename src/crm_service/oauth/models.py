"""Partner clients, the access tokens issued to them and the client assertions already used."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.db.base import Base, IdMixin, OrganizationScoped, TimestampMixin


class OAuthClient(IdMixin, TimestampMixin, OrganizationScoped, Base):
    """A partner system. Its `client_id` is its id; only the SHA-256 of its secret is kept (the
    secret is 256 random bits, so a fast hash is as strong as the secret itself)."""

    __tablename__ = "oauth_clients"

    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(Text)  # space-separated, as OAuth writes them
    ip_allowlist: Mapped[str | None] = mapped_column(Text)  # CIDRs, one a line; None: anywhere
    rate_limits: Mapped[str | None] = mapped_column(Text)  # JSON overrides; None: defaults
    jwks: Mapped[str | None] = mapped_column(Text)  # public keys for private_key_jwt
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_secret_expires_at: Mapped[datetime | None]
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class OAuthToken(IdMixin, OrganizationScoped, Base):
    """An opaque access token; only its SHA-256 is stored, so a revocation holds at once."""

    __tablename__ = "oauth_tokens"

    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]


class UsedClientAssertion(Base):
    """A private_key_jwt assertion's `jti`, kept until the assertion expires: a second use of
    it, on any instance, hits the primary key."""

    __tablename__ = "oauth_used_assertions"

    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), primary_key=True
    )
    jti_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
