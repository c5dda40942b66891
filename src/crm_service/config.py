"""Settings, read from the environment (prefix ``CRM_``) through :func:`get_settings` only."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EMBEDDED_DATABASE_URL = "sqlite+aiosqlite:///./var/crm.db"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SettingsError(ValueError):
    """A setting is missing or wrong; the message is one line an operator can act on."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    database_url: str = EMBEDDED_DATABASE_URL
    redis_url: str | None = None
    master_key: SecretStr | None = None
    master_key_file: Path | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    smtp_url: str | None = None
    public_base_url: str = Field(default="http://127.0.0.1:8000", max_length=500)
    # Region for phone numbers written without a +country code (ISO 3166 alpha-2, e.g. GB).
    default_phone_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    # Read by `crm-service bootstrap` only; stdin is asked when unset.
    bootstrap_password: SecretStr | None = None

    # Sign-in
    session_absolute_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    session_idle_ttl_seconds: int = Field(default=30 * 60, ge=60)

    # Retention (days): the recycle bin before the worker purges, the audit log.
    recycle_bin_retention_days: int = Field(default=60, ge=1)
    audit_retention_days: int = Field(default=3 * 365, ge=30)
    # How often `crm-service worker` looks for due jobs.
    worker_interval_seconds: float = Field(default=60.0, gt=0)

    # Request handling
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
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

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @model_validator(mode="after")
    def _production_needs_explicit_settings(self) -> Settings:
        if self.env is not Environment.PRODUCTION:
            return self
        if self.master_key is None and self.master_key_file is None:
            raise SettingsError(
                "CRM_ENV=production needs CRM_MASTER_KEY or CRM_MASTER_KEY_FILE; "
                "a generated key is refused in production"
            )
        if "database_url" not in self.model_fields_set:
            raise SettingsError("CRM_ENV=production needs an explicit CRM_DATABASE_URL")
        if "public_base_url" not in self.model_fields_set:
            raise SettingsError("CRM_ENV=production needs CRM_PUBLIC_BASE_URL")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_embedded(self) -> bool:
        """The no-other-process deployment: SQLite, in-memory limits, keys under ./var."""
        return self.is_sqlite


@lru_cache
def get_settings() -> Settings:
    return Settings()
