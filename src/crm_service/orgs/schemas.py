"""Organization settings bodies: field classification."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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


class ModuleFieldsUpdate(BaseModel):
    """Classifications to change, by field name; fields not named keep theirs."""

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, Classification] = Field(min_length=1, max_length=64)
