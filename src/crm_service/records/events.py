"""What happened to a record, told to the features that act on it in the same transaction.

The record service emits a :class:`RecordEvent` for every create, update, delete and
conversion, inside the change's transaction; a feature registers a listener with
:func:`on_record_event` (webhooks write their outbox), so records import no such feature and
a rolled-back change leaves nothing behind. Events carry ids and the record's version, never
values.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.db.base import utcnow
from crm_service.kit.modules import Module
from crm_service.records.models import PersonColumns


class RecordEventKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    CONVERTED = "converted"


@dataclass(frozen=True)
class RecordEvent:
    organization_id: uuid.UUID
    module: Module
    kind: RecordEventKind
    record_id: uuid.UUID
    subject_id: uuid.UUID | None  # leads and contacts: the data subject
    version: int
    occurred_at: datetime

    @property
    def type(self) -> str:
        """As webhooks name it: `contact.created`, `lead.converted`."""
        return f"{self.module.noun}.{self.kind.value}"


RecordListener = Callable[[AsyncSession, RecordEvent], Awaitable[None]]
_listeners: list[RecordListener] = []


def on_record_event(listener: RecordListener) -> None:
    """Register a feature's listener (once, when its module is imported)."""
    if listener not in _listeners:
        _listeners.append(listener)


async def emit(session: AsyncSession, module: Module, kind: RecordEventKind, record: Any) -> None:
    event = RecordEvent(
        organization_id=record.organization_id,
        module=module,
        kind=kind,
        record_id=record.id,
        subject_id=record.subject_id if isinstance(record, PersonColumns) else None,
        version=int(record.version),
        occurred_at=utcnow(),
    )
    for listener in _listeners:
        await listener(session, event)
