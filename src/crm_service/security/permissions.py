"""What a profile grants: operations per module, seeing sensitive values, administration.

Pure values: a signed-in user's principal carries the :class:`Permissions` of their profile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from crm_service.kit.modules import Module


class Operation(StrEnum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    EXPORT = "export"


class Right(StrEnum):
    """Administration rights."""

    MANAGE_USERS = "manage_users"  # users, their profiles and roles, their sessions
    MANAGE_SETTINGS = "manage_settings"  # field classification, IP allowlist, security, SSO
    MANAGE_ACCESS = "manage_access"  # profiles, roles, groups, sharing defaults
    VIEW_AUDIT = "view_audit"  # the audit log
    VIEW_ALL_RECORDS = "view_all_records"  # every record, whatever the sharing rules say
    MANAGE_INTEGRATIONS = "manage_integrations"  # partner clients, webhooks, compliance settings
    MANAGE_PRIVACY = "manage_privacy"  # consent purposes, web forms, privacy requests, blocklist
    VIEW_RESTRICTED = "view_restricted"  # read a restricted subject's records (audited)


class BuiltinProfile(StrEnum):
    ADMINISTRATOR = "administrator"
    STANDARD = "standard"


@dataclass(frozen=True)
class Permissions:
    modules: Mapping[Module, frozenset[Operation]] = field(default_factory=dict)
    view_sensitive: bool = False
    rights: frozenset[Right] = frozenset()
    # The built-in Administrator profile: the one holder of everything, now and later.
    administrator: bool = False

    def can(self, module: Module, operation: Operation) -> bool:
        return operation in self.modules.get(module, frozenset())

    def has(self, right: Right) -> bool:
        return right in self.rights

    @property
    def administers(self) -> bool:
        return bool(self.rights)

    def beyond(self, holder: Permissions) -> list[str]:
        """What these permissions grant that `holder` lacks, by name (empty when `holder`
        covers them): the rule of delegated administration is that nobody grants more."""
        extra: list[str] = []
        if self.administrator and not holder.administrator:
            extra.append("administrator")
        extra += sorted(f"right:{right.value}" for right in self.rights - holder.rights)
        if self.view_sensitive and not holder.view_sensitive:
            extra.append("view_sensitive")
        for module, operations in sorted(self.modules.items()):
            missing = operations - holder.modules.get(module, frozenset())
            extra += sorted(f"{module.value}:{operation.value}" for operation in missing)
        return extra

    def modules_json(self) -> str:
        return json.dumps(
            {module.value: sorted(ops) for module, ops in sorted(self.modules.items())}
        )

    @staticmethod
    def parse_modules(text: str) -> dict[Module, frozenset[Operation]]:
        raw = json.loads(text or "{}")
        return {Module(name): frozenset(Operation(op) for op in ops) for name, ops in raw.items()}


EVERY_OPERATION = frozenset(Operation)

BUILTIN: dict[BuiltinProfile, tuple[str, str, Permissions]] = {
    BuiltinProfile.ADMINISTRATOR: (
        "Administrator",
        "Everything: every record, sensitive values, exports and administration.",
        Permissions(
            modules=dict.fromkeys(Module, EVERY_OPERATION),
            view_sensitive=True,
            rights=frozenset(Right),
            administrator=True,
        ),
    ),
    BuiltinProfile.STANDARD: (
        "Standard",
        "Create, read, update and delete records as sharing allows; no export, no sensitive "
        "values, no administration.",
        Permissions(
            modules=dict.fromkeys(
                Module,
                frozenset({Operation.CREATE, Operation.READ, Operation.UPDATE, Operation.DELETE}),
            ),
        ),
    ),
}
