"""Organization settings bodies: field classification."""

from __future__ import annotations

from pydantic import BaseModel, Field

from crm_service.kit.schemas import Flag, InputModel, single_line
from crm_service.records.fields import Classification
from crm_service.records.models import Module


class FieldClassificationRead(BaseModel):
    name: str
    label: str
    classification: Classification
    default: Classification
    searchable: bool = Field(description="Exact-match filter through a blind index.")


class ModuleFields(BaseModel):
    module: Module
    fields: list[FieldClassificationRead]
    resealing: bool = Field(
        default=False,
        description="True when this change started re-sealing the module's stored values "
        "in the background; reads are correct throughout.",
    )


class ModuleFieldsUpdate(InputModel):
    """Classifications to change, by field name; fields not named keep theirs."""

    fields: dict[single_line(64), Classification] = Field(min_length=1, max_length=64)


class IpAllowlistRead(BaseModel):
    enabled: bool
    cidrs: list[str] = Field(description="Normalized IPv4/IPv6 networks.")
    your_address: str | None = Field(
        description="The address this request came from, as the service resolved it."
    )


class IpAllowlistUpdate(InputModel):
    enabled: Flag
    cidrs: list[single_line(64)] = Field(
        max_length=500, description="IPv4/IPv6 addresses or CIDR networks."
    )
    confirm_self_lockout: Flag = Field(
        default=False,
        description="Save even though your own address is outside the list (409 otherwise).",
    )


class SecuritySettings(InputModel):
    mfa_required: Flag = Field(
        description="Every user must pass a second factor; those without one enrol at sign-in."
    )
