"""Record history: each change of a lead, contact or account with its old and new values.

Values are sealed under the record's own key (the data subject's for leads and contacts, the
organization's for accounts), bound to the history entry, so erasing a subject makes their
history unreadable with everything else. Field names stay readable, like the audit log.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit import repository
from crm_service.audit.models import RecordHistoryEntry
from crm_service.audit.service import Actor
from crm_service.crypto.codec import FieldContext, open_value, seal, sealed_key_id
from crm_service.db.base import utcnow

Changes = dict[str, tuple[Any, Any]]


class HistoryAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"  # moved to the recycle bin
    RESTORED = "restored"
    CONVERTED = "converted"


def _context(entry: RecordHistoryEntry) -> FieldContext:
    return FieldContext(entry.organization_id, "record_history", "changes", entry.id)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


async def note_change(
    session: AsyncSession,
    actor: Actor,
    *,
    storage: Any,
    record: Any,
    module: str,
    action: HistoryAction,
    changes: Changes,
) -> None:
    """Append a history entry for `record`; `storage` is the record's RecordStorage."""
    entry = RecordHistoryEntry(
        id=uuid.uuid4(),
        organization_id=record.organization_id,
        module=module,
        record_id=record.id,
        occurred_at=utcnow(),
        actor_type=actor.type,
        actor_id=actor.id,
        action=action.value,
        fields=json.dumps(sorted(changes)),
    )
    if changes:
        payload = json.dumps(
            {name: [_plain(old), _plain(new)] for name, (old, new) in sorted(changes.items())}
        )
        entry.changes_sealed = seal(await storage.key_for(record), payload, _context(entry))
    session.add(entry)


@dataclass
class HistoryItem:
    entry: RecordHistoryEntry
    changes: dict[str, tuple[Any, Any]] | None  # None: no values, or erased
    erased: bool


async def read_history(
    session: AsyncSession,
    *,
    storage: Any,
    organization_id: uuid.UUID,
    module: str,
    record_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[HistoryItem]:
    """Newest first, keyset-paged; values opened (an erased subject's come back erased)."""
    entries = await repository.history_page(
        session, organization_id, module, record_id, after=after, limit=limit + 1
    )
    key_ids = {sealed_key_id(e.changes_sealed) for e in entries if e.changes_sealed is not None}
    keys = await storage.keyring.keys_by_id({key_id for key_id in key_ids if key_id is not None})
    items = []
    for entry in entries:
        if entry.changes_sealed is None:
            items.append(HistoryItem(entry, None, erased=False))
            continue
        key = keys.get(sealed_key_id(entry.changes_sealed))
        if key is None:
            items.append(HistoryItem(entry, None, erased=True))
            continue
        opened = json.loads(open_value(entry.changes_sealed, key, _context(entry)) or "{}")
        items.append(
            HistoryItem(entry, {name: (pair[0], pair[1]) for name, pair in opened.items()}, False)
        )
    return items
