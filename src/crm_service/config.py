"""Settings, read from the environment (prefix ``CRM_``) through :func:`get_settings` only."""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import structlog
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EMBEDDED_DATABASE_URL = "sqlite+aiosqlite:///./var/crm.db"
ENV_PREFIX = "CRM_"
# Variables of the test suite (CRM_TEST_POSTGRES_URL, ...): never settings of the service.
TEST_ENV_PREFIX = "CRM_TEST_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

logger = structlog.get_logger("crm_service.config")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SettingsError(ValueError):
    """A setting is missing or wrong; the message is one line an operator can act on."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    database_url: str = EMBEDDED_DATABASE_URL
    redis_url: str | None = None
    master_key: SecretStr | None = None
    master_key_file: Path | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    smtp_url: str | None = None
    public_base_url: str = Field(default="http://127.0.0.1:8000", max_length=500)
    # Browser origins (`https://app.example.com`) allowed to call the API; none = no CORS.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Region for phone numbers written without a +country code (ISO 3166 alpha-2, e.g. GB).
    default_phone_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    # Read by `crm-service bootstrap` only; stdin is asked when unset.
    bootstrap_password: SecretStr | None = None

    # Sign-in
    # How long the link of an invitation to join an organization (POST /v1/users) works.
    invitation_ttl_hours: int = Field(default=72, ge=1, le=24 * 30)
    session_absolute_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    session_idle_ttl_seconds: int = Field(default=30 * 60, ge=60)
    # Failed password sign-ins one source address may make in 15 minutes (then 429).
    sign_in_address_failures: int = Field(default=50, ge=1)
    # A failed sign-in is answered no sooner than this, whatever failed.
    sign_in_failure_seconds: float = Field(default=0.25, ge=0, le=5)

    # Retention (days): the recycle bin before the worker purges, the audit log.
    recycle_bin_retention_days: int = Field(default=60, ge=1)
    audit_retention_days: int = Field(default=3 * 365, ge=30)
    # Backups: where they and the forget-log are written, how often the worker takes one
    # (unset: never), how many it keeps.
    backup_dir: Path = Path("var/backups")
    backup_interval_hours: float | None = Field(default=None, gt=0)
    backup_keep: int = Field(default=14, ge=1)
    # How often `crm-service worker` (and the embedded in-process loop) looks for due jobs;
    # queued mail goes out on the next look.
    worker_interval_seconds: float = Field(default=10.0, gt=0)

    # Mail (sent by the worker through smtp_url; unset: mail stays in the outbox)
    # The From address of every message; its domain names the Message-IDs.
    mail_from: str = Field(default="crm-service <no-reply@localhost>", max_length=300)
    # Attempts before a message is marked failed; the wait doubles from the base up to 1 h.
    mail_max_attempts: int = Field(default=10, ge=1, le=100)
    mail_retry_base_seconds: float = Field(default=60.0, gt=0)
    # Sent, failed and cancelled mail is deleted from the outbox after this many days.
    mail_keep_days: int = Field(default=30, ge=1)
    # A CA bundle to verify the SMTP server's certificate with (a private CA); unset: the
    # system's trusted CAs.
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # Embedded mode (SQLite): `serve` runs the worker's jobs in-process. Turn off when a
    # separate `crm-service worker` runs beside it.
    embedded_worker: bool = True

    # Partner access (OAuth 2.0 client credentials)
    # How long an access token from /oauth/token lives.
    oauth_token_ttl_seconds: int = Field(default=3600, ge=60, le=86400)
    # After `POST /v1/oauth-clients/{id}/secret`, how long the previous secret still works.
    client_secret_grace_seconds: int = Field(default=86400, ge=0)
    # Longest `exp` a private_key_jwt client assertion may carry, from now.
    client_assertion_max_seconds: int = Field(default=300, ge=30, le=3600)
    # Rate limits of a partner client that sets none of its own (per policy).
    client_rate_limit_burst: int = Field(default=100, ge=1)
    client_rate_limit_window_seconds: int = Field(default=10, ge=1, le=3600)
    client_rate_limit_daily: int = Field(default=25000, ge=1)
    client_rate_limit_concurrency: int = Field(default=10, ge=1)
    # A signed-in session's burst: requests per window.
    session_rate_limit_burst: int = Field(default=1000, ge=1)
    session_rate_limit_window_seconds: int = Field(default=60, ge=1, le=3600)
    # A concurrency slot of a crashed instance frees itself after this long.
    rate_limit_slot_lease_seconds: int = Field(default=300, ge=5)

    # Webhooks: deliver to private, loopback and link-local addresses (never in production
    # unless the receivers are on your own network); each attempt's timeout; how long a
    # rotated-out secret still signs beside the new one.
    webhook_allow_private_targets: bool = False
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=60)
    webhook_secret_overlap_seconds: int = Field(default=86400, ge=0, le=30 * 86400)
    # Consent and web forms
    # How long a double opt-in link works; the unconfirmed submission is purged after it.
    optin_ttl_hours: int = Field(default=48, ge=1, le=24 * 30)
    # Reminders of an unanswered email consent request, in hours before its deadline.
    consent_reminder_hours: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [72, 24])
    # Public web-form submissions: per form and source address an hour (then 429), per
    # email address a day (more are dropped, answered as usual), per form a minute (429).
    webform_address_hourly_limit: int = Field(default=20, ge=1)
    webform_email_daily_limit: int = Field(default=3, ge=1)
    webform_form_minute_limit: int = Field(default=600, ge=1)
    # The privacy portal: a signed-in visit ends after this long unused, and at the latest
    # after the absolute lifetime; sign-in codes asked per source address an hour (then 429)
    # and mailed per email address an hour (more are answered as usual, and not mailed); a
    # code request is answered no sooner than this, known address or not.
    portal_session_idle_seconds: int = Field(default=1800, ge=60, le=86400)
    portal_session_absolute_seconds: int = Field(default=7200, ge=300, le=86400)
    portal_address_hourly_limit: int = Field(default=30, ge=1)
    portal_email_hourly_limit: int = Field(default=3, ge=1)
    portal_answer_seconds: float = Field(default=0.25, ge=0, le=5)
    # Privacy: how long a data subject's access or portability package stays downloadable
    # (sealed under the subject's key meanwhile) before the worker deletes it.
    privacy_package_ttl_hours: int = Field(default=168, ge=1, le=24 * 90)

    # Request handling
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_level: str = "INFO"
    # None: JSON unless stderr is a terminal in development (then console lines).
    log_json: bool | None = None

    # prometheus-client's own variable (not CRM_): where every worker process writes its
    # metrics; `serve --workers N` sets it up for its workers.
    metrics_multiprocess_directory: Path | None = Field(
        default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR"
    )

    # CRM_ variables that name no setting (probably mistyped), found when settings load.
    _unknown_variables: list[str] = PrivateAttr(default_factory=list)
    _unknown_reported: bool = PrivateAttr(default=False)

    @field_validator("trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("consent_reminder_hours", mode="before")
    @classmethod
    def _split_hours(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not an IP network") from exc
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        return [_serialized_origin(origin) for origin in value]

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: str | None) -> str | None:
        # The message never quotes the URL: it may hold a password.
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme.lower() not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
            raise ValueError(
                "must be smtp://, smtps:// or smtp+starttls://[user:password@]host[:port]"
            )
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        return value.strip()

    @field_validator("master_key")
    @classmethod
    def _check_master_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                raw = base64.b64decode(value.get_secret_value().strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("must be base64 (of 32 random bytes)") from None
            if len(raw) != 32:
                raise ValueError("must be base64 of exactly 32 bytes")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @model_validator(mode="after")
    def _check_variables(self) -> Settings:
        """Mistyped CRM_ variables (CRM_DATABSE_URL), which would otherwise be ignored without
        a word, and what production needs. Every problem is named at once, so an operator
        fixes them in one go."""
        known = {
            ENV_PREFIX + name.upper()
            for name, field in type(self).model_fields.items()
            if field.validation_alias is None
        }
        self._unknown_variables = [
            _describe_unknown(name, known)
            for name in sorted(os.environ)
            if name.upper().startswith(ENV_PREFIX)
            and not name.upper().startswith(TEST_ENV_PREFIX)
            and name.upper() not in known
        ]
        if self.env is not Environment.PRODUCTION:
            return self
        missing = []
        if self.master_key is None and self.master_key_file is None:
            missing.append("CRM_MASTER_KEY or CRM_MASTER_KEY_FILE (a generated key is refused)")
        if "database_url" not in self.model_fields_set:
            missing.append("an explicit CRM_DATABASE_URL")
        if "public_base_url" not in self.model_fields_set:
            missing.append("CRM_PUBLIC_BASE_URL")
        if self.smtp_url is not None and "mail_from" not in self.model_fields_set:
            missing.append("CRM_MAIL_FROM (mail is sent)")
        problems = list(self._unknown_variables)
        if missing:
            problems.insert(0, f"CRM_ENV=production needs {', '.join(missing)}")
        if problems:
            raise SettingsError("; ".join(problems))
        return self

    def report_unknown_variables(self) -> None:
        """Warn, once per process, about CRM_ variables that are not settings."""
        if self._unknown_reported:
            return
        self._unknown_reported = True
        for description in self._unknown_variables:
            logger.warning("unknown_setting", problem=description)

    @property
    def serves_https(self) -> bool:
        return urlsplit(self.public_base_url).scheme.lower() == "https"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def forget_log_path(self) -> Path:
        return self.backup_dir / "forget.log"

    @property
    def is_embedded(self) -> bool:
        """The no-other-process deployment: SQLite, in-memory limits, keys under ./var."""
        return self.is_sqlite


def _serialized_origin(text: str) -> str:
    """An origin as browsers send it in `Origin` (lowercase, no default port, no path), so that
    `https://App.example.com:443/` matches what arrives.

    `*` is refused rather than served without credentials (tokens travel in `Authorization`,
    so credentials mode is never needed): with `*`, a page on any site that got hold of a token
    could use it from inside the victim's browser, and so from inside their organization's IP
    allowlist. `null` is refused too: sandboxed frames and local files send it, so any page can.
    """
    refused = ValueError(
        f"{text!r} is not an origin: list scheme://host[:port] entries (`*` is not allowed)"
    )
    parts = urlsplit(text.strip())
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        raise refused from None
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise refused
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default_port) else "")


def _describe_unknown(name: str, known: set[str]) -> str:
    closest = difflib.get_close_matches(name.upper(), sorted(known), n=1)
    hint = f"did you mean {closest[0]}?" if closest else "see the README for every setting"
    return f"{name} is not a setting ({hint})"


def describe_validation_error(exc: ValidationError) -> str:
    """Every failing setting and its rule on one line, never the value (it may be a secret)."""
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if error.get("loc"):
            message = f"{ENV_PREFIX}{str(error['loc'][0]).upper()}: {message}"
        problems.append(message)
    return "; ".join(problems)


@lru_cache
def get_settings() -> Settings:
    """The settings from the environment; a SettingsError names every problem in one line."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
