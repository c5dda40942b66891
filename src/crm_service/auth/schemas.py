"""Request and response bodies for sign-in and users."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_service.auth.mfa import RECOVERY_CODES
from crm_service.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from crm_service.kit.schemas import Email, Flag, HttpUrl, InputModel, LongName, single_line, text

# Passwords are taken exactly as typed: spaces are kept, control characters refused.
Password = single_line(MAX_PASSWORD_LENGTH, min_length=MIN_PASSWORD_LENGTH, strip=False)
# What a sign-in compares, so a password set under an older minimum still works.
GivenPassword = single_line(MAX_PASSWORD_LENGTH, strip=False)
Token = single_line(128)
RecoveryCode = text(16)
InvitationStatus = Literal["pending", "accepted", "expired"]
RecoveryCodeList = Annotated[list[RecoveryCode], Field(max_length=RECOVERY_CODES)]


class LoginRequest(InputModel):
    email: Email
    password: GivenPassword


class TokenResponse(BaseModel):
    access_token: text(64)
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(
        ge=0,
        le=2**31 - 1,
        json_schema_extra={"format": "int32"},
        description="Seconds until the token expires at the latest.",
    )
    recovery_codes: RecoveryCodeList | None = Field(
        default=None,
        description="Only when this sign-in confirmed a required two-factor enrolment: the "
        "recovery codes, shown this once.",
    )


class MfaRequired(BaseModel):
    """The password was right; send `mfa_token` and a code to `POST /v1/auth/mfa`."""

    mfa_required: Literal[True] = True
    mfa_token: text(64) = Field(description="Single-use, valid for 5 minutes.")
    enrolment_required: bool = Field(
        default=False,
        description="The organization requires two-factor and this user has none: call "
        "`POST /v1/auth/mfa/enrolment` with the mfa_token, then send the first code.",
    )


class MfaVerify(InputModel):
    mfa_token: Token
    code: single_line(20, min_length=6) = Field(
        description="A 6-digit TOTP code or a recovery code."
    )


class MfaEnrolmentStart(InputModel):
    mfa_token: Token


class TotpEnrolment(BaseModel):
    secret: text(64) = Field(description="Base32 TOTP secret, for manual entry.")
    otpauth_uri: text(2048)
    qr_svg: text(65_536) = Field(description="The otpauth URI as a QR code (SVG data URI).")


class TotpConfirm(InputModel):
    code: single_line(6, min_length=6, pattern=r"^[0-9]{6}$")


class PasswordConfirm(InputModel):
    password: GivenPassword


class RecoveryCodes(BaseModel):
    recovery_codes: RecoveryCodeList = Field(description="Shown this once; each works one time.")


class MfaStatus(BaseModel):
    totp_enabled: bool
    recovery_codes_left: int = Field(ge=0, le=RECOVERY_CODES, json_schema_extra={"format": "int32"})


class UserCreate(InputModel):
    email: Email
    password: Password
    full_name: LongName | None = None
    is_admin: Flag = Field(
        default=False,
        description="Shorthand for the built-in Administrator profile (else Standard) when "
        "`profile_id` is not given.",
    )
    profile_id: uuid.UUID | None = Field(default=None, description="The user's profile.")
    role_id: uuid.UUID | None = Field(default=None, description="The user's role, if any.")


class UserInvite(InputModel):
    email: Email
    full_name: LongName | None = None
    is_admin: Flag = Field(
        default=False,
        description="Shorthand for the built-in Administrator profile (else Standard) when "
        "`profile_id` is not given.",
    )
    profile_id: uuid.UUID | None = Field(default=None, description="The user's profile.")
    role_id: uuid.UUID | None = Field(default=None, description="The user's role, if any.")
    language: Literal["en", "ja"] = Field(
        default="en", description="The language of the invitation mail."
    )


class InvitationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    organization_id: uuid.UUID
    email: text(254)
    full_name: text(200) | None
    profile_id: uuid.UUID
    role_id: uuid.UUID | None
    status: InvitationStatus
    created_at: datetime
    expires_at: datetime


class InvitationList(BaseModel):
    data: list[InvitationRead]


class InvitationAccept(InputModel):
    token: Token = Field(description="The token of the mailed invitation link.")
    password: Password
    full_name: LongName | None = Field(
        default=None, description="Your name, if the invitation did not give it (or to correct it)."
    )


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    organization_id: uuid.UUID
    email: text(254)
    full_name: text(200) | None
    is_admin: bool = Field(description="True when the profile is the built-in Administrator.")
    is_active: bool
    profile_id: uuid.UUID
    role_id: uuid.UUID | None
    created_at: datetime


class UserList(BaseModel):
    data: list[UserRead]


class SessionRead(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool = Field(description="The session this request was made with.")


class SessionList(BaseModel):
    data: list[SessionRead]


class PasswordChange(InputModel):
    current_password: GivenPassword
    new_password: Password


class UserUpdate(InputModel):
    """Admin changes to a user. Disabling ends all of the user's sessions at once."""

    full_name: LongName | None = None
    is_admin: Flag = None  # type: ignore[assignment]  # omit to keep; null refused
    is_active: Flag = None  # type: ignore[assignment]
    profile_id: uuid.UUID = None  # type: ignore[assignment]  # omit to keep; null refused
    role_id: uuid.UUID | None = Field(default=None, description="null removes the role.")


class SsoCodeExchange(InputModel):
    sso_code: Token = Field(description="From the `#sso_code=` fragment.")


class IdentityProviderSet(InputModel):
    """Configure OpenID Connect single sign-on. The issuer is checked by discovery."""

    issuer: HttpUrl
    client_id: single_line(255)
    client_secret: single_line(500, strip=False) | None = Field(
        default=None,
        description="Write-only; stored encrypted. Required the first time; omit to keep.",
    )
    frontend_redirect_url: HttpUrl
    allow_jit: Flag = Field(default=False, description="Create unknown users at first sign-in.")
    require_sso: Flag = Field(
        default=False, description="Refuse password sign-in, except for the break-glass admin."
    )
    break_glass_user_id: uuid.UUID | None = None


class IdentityProviderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    protocol: text(16)
    issuer: text(500)
    client_id: text(255)
    frontend_redirect_url: text(500)
    allow_jit: bool
    require_sso: bool
    break_glass_user_id: uuid.UUID | None
    # Both are CRM_PUBLIC_BASE_URL (at most 500 characters) and a path.
    redirect_uri: text(700) = Field(description="Register this callback URL at the provider.")
    start_url: text(700) = Field(description="Send browsers here to sign in.")


class IdentityLink(InputModel):
    user_id: uuid.UUID
    subject: single_line(255) = Field(description="The `sub` at the provider.")
