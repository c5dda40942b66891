"""Organization settings bodies: field classification."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field

from crm_service.kit.modules import Module
from crm_service.kit.schemas import Flag, InputModel, IpNetwork, single_line, text
from crm_service.records.fields import Classification, field_names

# Which names a module has depends on the path's module, so the schema lists every module's.
_FIELD_NAMES = sorted({name for module in Module for name in field_names(module)})


def _field_map_schema(schema: dict[str, Any]) -> None:
    schema.pop("patternProperties", None)
    schema["propertyNames"] = {"enum": _FIELD_NAMES}
    schema["additionalProperties"] = {"$ref": "#/components/schemas/Classification"}


class FieldClassificationRead(BaseModel):
    name: text(64)
    label: text(100)
    classification: Classification
    default: Classification
    searchable: bool = Field(description="Exact-match filter through a blind index.")


class ModuleFields(BaseModel):
    module: Module
    fields: Annotated[list[FieldClassificationRead], Field(max_length=100)]
    resealing: bool = Field(
        default=False,
        description="True when this change started re-sealing the module's stored values "
        "in the background; reads are correct throughout.",
    )


class ModuleFieldsUpdate(InputModel):
    """Classifications to change, by field name; fields not named keep theirs."""

    fields: dict[single_line(64), Classification] = Field(
        min_length=1, max_length=64, json_schema_extra=_field_map_schema
    )


class IpAllowlistRead(BaseModel):
    enabled: bool
    cidrs: list[text(64)] = Field(max_length=500, description="Normalized IPv4/IPv6 networks.")
    your_address: text(45) | None = Field(
        description="The address this request came from, as the service resolved it."
    )


class IpAllowlistUpdate(InputModel):
    enabled: Flag
    cidrs: list[IpNetwork] = Field(
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


class WithheldClassification(StrEnum):
    """A classification a channel may withhold (`none` fields always leave)."""

    PERSONAL = "personal"
    SENSITIVE = "sensitive"


WithheldList = Annotated[
    list[WithheldClassification],
    Field(max_length=2, description="Classifications left out of what leaves by this channel."),
]


class ComplianceWithhold(InputModel):
    """Per channel data leaves by, the classifications withheld from it. A channel left out
    withholds nothing; withholding `personal` does not imply `sensitive`: name both."""

    api: WithheldList = Field(default_factory=list)
    export: WithheldList = Field(default_factory=list)
    integrations: WithheldList = Field(default_factory=list)


class ComplianceSettingsBody(InputModel):
    withhold: ComplianceWithhold
