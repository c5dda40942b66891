"""Bodies of /v1/oauth-clients and of the OAuth endpoints' answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from crm_service.kit.schemas import Flag, InputModel, IpNetwork, LongName, integer, text
from crm_service.security.scopes import Scope

# A count or a time in seconds in a response (int64, never negative).
Count = Annotated[int, Field(ge=0, le=2**53, json_schema_extra={"format": "int64"})]


class ClientScope(StrEnum):
    """What a partner client may be granted: every scope but `crm.admin`, which is for
    people."""

    LEADS_READ = Scope.LEADS_READ.value
    LEADS_WRITE = Scope.LEADS_WRITE.value
    LEADS_DELETE = Scope.LEADS_DELETE.value
    CONTACTS_READ = Scope.CONTACTS_READ.value
    CONTACTS_WRITE = Scope.CONTACTS_WRITE.value
    CONTACTS_DELETE = Scope.CONTACTS_DELETE.value
    ACCOUNTS_READ = Scope.ACCOUNTS_READ.value
    ACCOUNTS_WRITE = Scope.ACCOUNTS_WRITE.value
    ACCOUNTS_DELETE = Scope.ACCOUNTS_DELETE.value
    CONSENT_READ = Scope.CONSENT_READ.value
    CONSENT_WRITE = Scope.CONSENT_WRITE.value
    PRIVACY_READ = Scope.PRIVACY_READ.value
    PRIVACY_WRITE = Scope.PRIVACY_WRITE.value
    EXPORT = Scope.EXPORT.value


class BurstLimit(InputModel):
    limit: integer(ge=1, le=1_000_000)
    window_seconds: integer(ge=1, le=3600)


class CountLimit(InputModel):
    limit: integer(ge=1, le=100_000_000)


class RateLimits(InputModel):
    """Overrides of the default policies; a policy left out keeps its default."""

    burst: BurstLimit | None = None
    daily: CountLimit | None = Field(
        default=None, description="Requests per calendar day in UTC (reset at 00:00 UTC)."
    )
    concurrency: CountLimit | None = Field(default=None, description="Requests in flight.")


class Jwks(InputModel):
    """A JSON Web Key Set of public keys (RSA, EC or OKP) for `private_key_jwt`."""

    model_config = ConfigDict(extra="forbid")

    keys: Annotated[
        list[Annotated[dict[str, Any], Field(max_length=20)]], Field(min_length=1, max_length=10)
    ]


Scopes = Annotated[list[ClientScope], Field(min_length=1, max_length=len(ClientScope))]
Cidrs = Annotated[list[IpNetwork], Field(max_length=100)]


class ClientCreate(InputModel):
    name: LongName
    scopes: Scopes
    ip_allowlist: Cidrs | None = Field(
        default=None, description="IPv4/IPv6 networks the client may call from; null: anywhere."
    )
    rate_limits: RateLimits | None = None
    jwks: Jwks | None = Field(
        default=None, description="Public keys for `private_key_jwt` client authentication."
    )


class ClientUpdate(InputModel):
    # Left out: unchanged. These three cannot be null (the others can: null clears them).
    name: LongName = None
    scopes: Scopes = None
    ip_allowlist: Cidrs | None = None
    rate_limits: RateLimits | None = None
    jwks: Jwks | None = None
    is_active: Flag = Field(
        default=None, description="false disables the client and ends its tokens at once."
    )


class ClientRead(BaseModel):
    client_id: uuid.UUID
    name: text(200)
    scopes: Annotated[list[text(64)], Field(max_length=len(ClientScope))]
    ip_allowlist: Annotated[list[text(64)], Field(max_length=100)] | None
    rate_limits: Annotated[
        dict[text(16), Annotated[dict[text(16), Count], Field(max_length=2)]], Field(max_length=3)
    ] = Field(description="The policies in force: the client's own and the defaults.")
    jwks: Annotated[dict[text(8), Any], Field(max_length=1)] | None
    is_active: bool
    previous_secret_expires_at: datetime | None = Field(
        description="Until when the secret before the last rotation still works."
    )
    created_at: datetime
    updated_at: datetime


class ClientCreated(ClientRead):
    client_secret: text(64) = Field(description="Shown this once; only its hash is kept.")


class ClientList(BaseModel):
    data: Annotated[list[ClientRead], Field(max_length=1000)]


class SecretIssued(BaseModel):
    client_id: uuid.UUID
    client_secret: text(64) = Field(description="Shown this once; only its hash is kept.")
    previous_secret_expires_at: datetime | None


class TokenGranted(BaseModel):
    access_token: text(64)
    token_type: text(16) = "Bearer"
    expires_in: Count
    scope: text(1000)


class OAuthErrorBody(BaseModel):
    """RFC 6749 §5.2."""

    error: text(32)
    error_description: text(500) | None = None


class Introspection(BaseModel):
    """RFC 7662 §2.2: an inactive token answers `{"active": false}` and nothing more."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": False})

    active: bool
    scope: text(1000) | None = None
    client_id: text(64) | None = None
    token_type: text(16) | None = None
    exp: Count | None = None
    iat: Count | None = None
    sub: text(64) | None = None
    iss: text(500) | None = None
