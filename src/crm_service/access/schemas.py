"""Access-control bodies: profiles, roles, groups, sharing defaults, record shares."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crm_service.access.visibility import ShareAccess, SharingLevel
from crm_service.kit.modules import Module
from crm_service.kit.schemas import Flag, InputModel, IpNetwork, Name, multi_line, text
from crm_service.security.permissions import Operation, Permissions, Right

ModuleOperations = Annotated[
    dict[Module, Annotated[list[Operation], Field(max_length=len(Operation))]],
    Field(max_length=len(Module)),
]
Rights = Annotated[list[Right], Field(max_length=len(Right))]
ProfileDescription = multi_line(500)


class ProfileCreate(InputModel):
    name: Name
    description: ProfileDescription | None = None
    modules: ModuleOperations = Field(
        default_factory=dict,
        description="Operations allowed per module; a module left out allows none.",
    )
    view_sensitive: Flag = Field(
        default=False, description="See sensitive fields unmasked (each reveal is audited)."
    )
    rights: Rights = Field(default_factory=list, description="Administration rights.")

    def permissions(self) -> Permissions:
        return Permissions(
            modules={module: frozenset(ops) for module, ops in self.modules.items()},
            view_sensitive=self.view_sensitive,
            rights=frozenset(self.rights),
        )


class ProfileUpdate(InputModel):
    """Omit a field to keep it. Only `description` can be cleared with null; the spec says
    which fields take null, so the others are typed without it."""

    name: Name = None  # type: ignore[assignment]
    description: ProfileDescription | None = None
    # None means "omitted": the spec declares the field without null.
    modules: ModuleOperations = Field(
        default=None,  # type: ignore[arg-type]
        description="Replaces the whole map.",
    )
    view_sensitive: Flag = None  # type: ignore[assignment]
    rights: Rights = None  # type: ignore[assignment]

    def merged_with(self, current: Permissions) -> Permissions:
        return Permissions(
            modules=(
                {module: frozenset(ops) for module, ops in self.modules.items()}
                if self.modules is not None
                else current.modules
            ),
            view_sensitive=current.view_sensitive
            if self.view_sensitive is None
            else self.view_sensitive,
            rights=current.rights if self.rights is None else frozenset(self.rights),
        )


class ProfileRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, data: Any) -> Any:
        if isinstance(data, BaseModel) or isinstance(data, dict):
            return data
        return {
            "id": data.id,
            "name": data.name,
            "description": data.description,
            "builtin": data.builtin,
            "modules": json.loads(data.module_permissions),
            "view_sensitive": data.view_sensitive,
            "rights": json.loads(data.rights),
        }

    id: uuid.UUID
    name: text(100)
    description: text(500) | None
    builtin: text(16) | None = Field(
        description="administrator or standard for the built-in profiles."
    )
    modules: ModuleOperations
    view_sensitive: bool
    rights: Rights


class ProfileList(BaseModel):
    data: list[ProfileRead]


IP_ALLOWLIST_DESCRIPTION = (
    "IPv4/IPv6 networks the role's users must also come from, on top of the organization's "
    "allowlist; null: the organization's list alone applies."
)
CONFIRM_DESCRIPTION = "Save a list that excludes your own address (you would be locked out)."


class RoleCreate(InputModel):
    name: Name
    parent_id: uuid.UUID | None = Field(default=None, description="The role this one reports to.")
    ip_allowlist: list[IpNetwork] | None = Field(
        default=None, max_length=200, description=IP_ALLOWLIST_DESCRIPTION
    )


class RoleUpdate(InputModel):
    name: Name = None  # type: ignore[assignment]  # omit to keep; null refused
    parent_id: uuid.UUID | None = None
    ip_allowlist: list[IpNetwork] | None = Field(
        default=None, max_length=200, description=IP_ALLOWLIST_DESCRIPTION
    )
    confirm_self_lockout: Flag = Field(default=False, description=CONFIRM_DESCRIPTION)


class RoleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: text(100)
    parent_id: uuid.UUID | None
    ip_allowlist: Annotated[list[text(64)], Field(max_length=200)] | None = Field(
        description=IP_ALLOWLIST_DESCRIPTION
    )

    @field_validator("ip_allowlist", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return value.split() if isinstance(value, str) else value


class RoleList(BaseModel):
    data: list[RoleRead]


class GroupCreate(InputModel):
    name: Name
    member_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)


class GroupUpdate(InputModel):
    name: Name = None  # type: ignore[assignment]  # omit to keep; null refused
    member_ids: list[uuid.UUID] = Field(default=None, max_length=1000)  # type: ignore[arg-type]


class GroupRead(BaseModel):
    id: uuid.UUID
    name: text(100)
    member_ids: list[uuid.UUID] = Field(max_length=1000)


class GroupList(BaseModel):
    data: list[GroupRead]


class SharingDefaults(InputModel):
    """Organization-wide sharing per module (private: owner and the roles above; read_only:
    everyone reads, the owner's side edits; read_write: everyone reads and edits)."""

    leads: SharingLevel
    contacts: SharingLevel
    accounts: SharingLevel


class RecordShareSet(InputModel):
    access: ShareAccess


class RecordShareRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    group_id: uuid.UUID
    access: ShareAccess
    created_at: datetime
    created_by_id: uuid.UUID | None


class RecordShareList(BaseModel):
    data: list[RecordShareRead]
