"""Which records of a module a caller may read and which they may change.

Computed once per request from the caller's profile, role and groups and the module's
sharing default, and applied by the record repositories to every statement they build, so
lists, lookups, conversion and every later feature obey it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, or_, select

from crm_service.access.models import RecordShare
from crm_service.kit.modules import Module


class SharingLevel(StrEnum):
    PRIVATE = "private"  # the owner and the roles above the owner's
    READ_ONLY = "read_only"  # everyone reads; the owner and the roles above edit
    READ_WRITE = "read_write"  # everyone reads and edits


class ShareAccess(StrEnum):
    READ_ONLY = "read_only"
    READ_WRITE = "read_write"


# Sharing defaults of a new organization: nobody sees what they do not own or manage.
DEFAULT_LEVEL = SharingLevel.PRIVATE


@dataclass(frozen=True)
class Visibility:
    module: Module
    level: SharingLevel
    sees_all: bool
    # The caller and every user in a role below the caller's.
    owner_ids: frozenset[uuid.UUID]
    group_ids: frozenset[uuid.UUID]

    def _shared(self, model: Any, accesses: tuple[ShareAccess, ...]) -> ColumnElement[bool]:
        return model.id.in_(
            select(RecordShare.record_id).where(
                RecordShare.module == self.module.value,
                RecordShare.group_id.in_(self.group_ids),
                RecordShare.access.in_([access.value for access in accesses]),
            )
        )

    def _owned_or_shared(
        self, model: Any, accesses: tuple[ShareAccess, ...]
    ) -> ColumnElement[bool]:
        clauses = [model.owner_id.in_(self.owner_ids)]
        if self.group_ids:
            clauses.append(self._shared(model, accesses))
        return or_(*clauses)

    def read_clause(self, model: Any) -> ColumnElement[bool] | None:
        if self.sees_all or self.level is not SharingLevel.PRIVATE:
            return None
        return self._owned_or_shared(model, (ShareAccess.READ_ONLY, ShareAccess.READ_WRITE))

    def write_clause(self, model: Any) -> ColumnElement[bool] | None:
        if self.sees_all or self.level is SharingLevel.READ_WRITE:
            return None
        return self._owned_or_shared(model, (ShareAccess.READ_WRITE,))
