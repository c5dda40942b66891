"""Bodies of /v1/oauth-clients and of the OAuth endpoints' answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from crm_service.kit.schemas import (
    Flag,
    InputModel,
    IpNetwork,
    LongName,
    integer,
    single_line,
    text,
)
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


# The signature algorithms a client assertion may use (RFC 7518 §3.1, RFC 8037 §3.1).
AssertionAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "ES256", "ES384", "EdDSA"]
# Members only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _base64url(min_length: int, max_length: int) -> Any:
    """An unpadded base64url value (RFC 7515 §2) of `min_length` to `max_length` characters."""
    return single_line(max_length, min_length=min_length, pattern=r"^[A-Za-z0-9_-]+$")


# The last character of an unpadded base64url value whose last group holds two bytes: its
# two lowest bits are unused, hence zero.
_TWO_BYTES_LAST = "[AEIMQUYcgkosw048]"


def _octets(size: int) -> Any:
    """Exactly `size` bytes, unpadded base64url (a curve coordinate or an Edwards key)."""
    length = (size * 8 + 5) // 6
    tail = {0: "", 1: "[AQgw]", 2: _TWO_BYTES_LAST}[size % 3]
    body = length - (1 if tail else 0)
    pattern = f"^[A-Za-z0-9_-]{{{body}}}{tail}$"
    return single_line(length, min_length=length, pattern=pattern)


class _PublicJwk(InputModel):
    """The members every public key may have (RFC 7517 §4)."""

    kid: single_line(128) | None = Field(default=None, description="The key's id.")
    use: Literal["sig"] | None = None
    alg: AssertionAlgorithm | None = None

    @model_validator(mode="before")
    @classmethod
    def _public_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and PRIVATE_MEMBERS & set(data):
            raise PydanticCustomError("private_key", "must be a public key (no private members)")
        return data


class RsaJwk(_PublicJwk):
    """An RSA public key of 2048 to 8192 bits (RFC 7518 §6.3.1)."""

    kty: Literal["RSA"]
    n: _base64url(342, 1366) = Field(description="The modulus.")
    e: _base64url(1, 8) = Field(description="The exponent, e.g. `AQAB`.")


class P256Jwk(_PublicJwk):
    """A P-256 public key (RFC 7518 §6.2.1): a point on the curve, for ES256."""

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: _octets(32)
    y: _octets(32)


class P384Jwk(_PublicJwk):
    """A P-384 public key (RFC 7518 §6.2.1): a point on the curve, for ES384."""

    kty: Literal["EC"]
    crv: Literal["P-384"]
    x: _octets(48)
    y: _octets(48)


class Ed25519Jwk(_PublicJwk):
    """An Ed25519 public key (RFC 8037 §2), for EdDSA."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: _octets(32)


class Ed448Jwk(_PublicJwk):
    """An Ed448 public key (RFC 8037 §2), for EdDSA."""

    kty: Literal["OKP"]
    crv: Literal["Ed448"]
    x: _octets(57)


def _key_kind(key: Any) -> str | None:
    """`RSA`, or the curve of an EC or OKP key: which of the shapes below a key must have."""
    members = key if isinstance(key, dict) else getattr(key, "__dict__", None)
    if not isinstance(members, dict):
        return None
    kty = members.get("kty")
    return "RSA" if kty == "RSA" else f"{kty}:{members.get('crv')}"


Jwk = Annotated[
    Annotated[RsaJwk, Tag("RSA")]
    | Annotated[P256Jwk, Tag("EC:P-256")]
    | Annotated[P384Jwk, Tag("EC:P-384")]
    | Annotated[Ed25519Jwk, Tag("OKP:Ed25519")]
    | Annotated[Ed448Jwk, Tag("OKP:Ed448")],
    Discriminator(
        _key_kind,
        custom_error_type="key_type",
        custom_error_message="must be an RSA key, or an EC (P-256, P-384) or OKP (Ed25519, "
        "Ed448) key with its `crv`",
    ),
]


class Jwks(InputModel):
    """A JSON Web Key Set of public keys (RSA, EC or OKP) for `private_key_jwt`. Each key
    must also be a key in fact (an EC point on its curve): else 422 `jwk`."""

    keys: Annotated[list[Jwk], Field(min_length=1, max_length=10)]


class JwkRead(BaseModel):
    """A public key as stored: only the members it has are answered."""

    kty: text(3)
    kid: text(128) | None = None
    use: text(3) | None = None
    alg: text(8) | None = None
    crv: text(8) | None = None
    x: text(76) | None = None
    y: text(64) | None = None
    n: text(1366) | None = None
    e: text(8) | None = None

    @model_serializer(mode="wrap")
    def _members_given(self, handler: Any) -> Any:
        return {name: value for name, value in handler(self).items() if value is not None}


class JwksRead(BaseModel):
    keys: Annotated[list[JwkRead], Field(max_length=10)]


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
    scopes: Scopes = None  # type: ignore[assignment]  # omit to keep; null refused
    ip_allowlist: Cidrs | None = None
    rate_limits: RateLimits | None = None
    jwks: Jwks | None = None
    is_active: Flag = Field(  # type: ignore[assignment]  # omit to keep; null refused
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
    jwks: JwksRead | None
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
