"""Erasure (GDPR Art. 17): a data subject is erased within the request that asks for it.

:func:`erase_subject` does it all in the caller's transaction:

1. collects the subject's emails and phone numbers as blind-index HMACs (current ones from
   the index columns, former ones from the record history, opened while the keys exist) and
   adds them to the blocklist;
2. calls every registered eraser (features that keep the subject's data elsewhere: the mail
   outbox, the webhook outbox, consent evidence, the portal sessions of their addresses)
   through :func:`register_subject_eraser`;
3. deletes the subject's records in the recycle bin for good (with their history), and empties
   every value column and blind index of their live records, keeping each row's id, dates,
   owner and links, so a converted lead still points at its contact, a contact still belongs
   to its account, and each answers 410 `erased`; drops their shares, legal-basis entries
   (the assessment is plain text) and processing locks;
4. destroys the subject's data keys, so every value sealed under them — history, copies in
   backups, anything a feature sealed — is unreadable wherever its bytes still lie;
5. writes a receipt (what, when, by whom; counts and ids, never a value), an audit event and,
   last before the commit, an entry in the forget-log (see `backups/forget_log.py`), so a
   restore of an older backup erases the subject again.

SQLite runs with `secure_delete` on every connection, so deleted and overwritten cells are
zeroed in the file; after the commit the router checkpoints the WAL (TRUNCATE), so no page
image holding an old value stays in `-wal` either (`db.engine.checkpoint_sqlite`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.crypto.blind_index import IndexKind, blind_index
from crm_service.crypto.codec import FieldContext, open_value, sealed_key_id
from crm_service.crypto.service import keyring_for
from crm_service.errors import ServiceUnavailable
from crm_service.privacy import repository
from crm_service.privacy.blocklist import Identifier, add_entries

logger = structlog.get_logger("crm_service.privacy")

SubjectEraser = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[int]]
_erasers: dict[str, SubjectEraser] = {}


def register_subject_eraser(fn: SubjectEraser, *, name: str | None = None) -> None:
    """Register what a feature erases of a data subject: `async fn(session, organization_id,
    subject_id) -> int` (how many rows it deleted or emptied). Called in the erasure's
    transaction, also when a restore applies an erasure again; it must be idempotent. The
    receipt counts its result under `name` (the function's name by default)."""
    _erasers[name or fn.__name__] = fn


@dataclass
class ErasureReceipt:
    """What erasing one data subject did. No values: counts, ids and names."""

    id: uuid.UUID
    organization_id: uuid.UUID
    subject_id: uuid.UUID
    erased_at: datetime
    records: dict[str, list[str]] = field(default_factory=dict)  # module -> record ids
    counts: dict[str, int] = field(default_factory=dict)
    identifiers: list[Identifier] = field(default_factory=list)  # kept out of the response


def _former_identifiers(
    entries: list[Any], keys: dict[uuid.UUID, Any], index_key: bytes, region: str | None
) -> set[Identifier]:
    """Emails and phones a record had before (from its history, opened while keys exist)."""
    found: set[Identifier] = set()
    kinds = {"email": IndexKind.EMAIL, "phone": IndexKind.PHONE, "mobile": IndexKind.PHONE}
    for entry in entries:
        key_id = sealed_key_id(entry.changes_sealed)
        key = keys.get(key_id) if key_id is not None else None
        if key is None:
            continue
        context = FieldContext(entry.organization_id, "record_history", "changes", entry.id)
        changes = json.loads(open_value(entry.changes_sealed, key, context) or "{}")
        for name, kind in kinds.items():
            for value in changes.get(name, ()):
                if isinstance(value, str) and value:
                    found.add(
                        (kind.value, blind_index(index_key, kind, value, phone_region=region))
                    )
    return found


async def _erase_data(
    session: AsyncSession,
    organization_id: uuid.UUID,
    subject_id: uuid.UUID,
    *,
    now: datetime,
    receipt: ErasureReceipt,
    known_identifiers: set[Identifier],
) -> None:
    rows = await repository.subject_rows(session, organization_id, subject_id)
    identifiers = set(known_identifiers)
    keyring = keyring_for(session, organization_id)
    index_key = await keyring.index_key()
    region = session.info.get("phone_region")
    for module in repository.PERSON_MODELS:
        ids = [row.id for row in rows if row.module is module]
        receipt.records[module.value] = sorted(str(id_) for id_ in ids)
        entries = await repository.history_of(session, organization_id, module, ids)
        key_ids = {sealed_key_id(entry.changes_sealed) for entry in entries if entry.changes_sealed}
        keys = await keyring.keys_by_id({key_id for key_id in key_ids if key_id is not None})
        identifiers |= _former_identifiers(entries, keys, index_key, region)
    for row in rows:
        identifiers |= row.identifiers
    receipt.identifiers = sorted(identifiers)
    receipt.counts["blocklist_entries"] = await add_entries(
        session, organization_id, identifiers, now=now, receipt_id=receipt.id
    )
    for name, eraser in sorted(_erasers.items()):
        receipt.counts[name] = await eraser(session, organization_id, subject_id)
    binned = live = 0
    for module in repository.PERSON_MODELS:
        ids = [row.id for row in rows if row.module is module]
        await repository.forget_links(session, organization_id, module, ids)
        binned += await repository.remove_rows(
            session,
            organization_id,
            module,
            [row.id for row in rows if row.module is module and row.binned],
        )
        live += await repository.scrub_rows(
            session,
            organization_id,
            module,
            [row.id for row in rows if row.module is module and not row.binned],
            now=now,
        )
    await repository.forget_processing_locks(session, organization_id, subject_id)
    receipt.counts["recycle_bin_records_deleted"] = binned
    receipt.counts["records_emptied"] = live
    receipt.counts["data_keys_destroyed"] = await keyring.destroy_subject_keys(subject_id)
    await session.flush()


async def erase_subject(
    session: AsyncSession,
    organization_id: uuid.UUID,
    subject_id: uuid.UUID,
    *,
    actor: Actor,
    now: datetime,
) -> ErasureReceipt:
    """Erase one data subject in the caller's transaction (see the module docstring)."""
    receipt = ErasureReceipt(
        id=uuid.uuid4(), organization_id=organization_id, subject_id=subject_id, erased_at=now
    )
    await _erase_data(
        session, organization_id, subject_id, now=now, receipt=receipt, known_identifiers=set()
    )
    repository.add_receipt(
        session,
        receipt_id=receipt.id,
        organization_id=organization_id,
        subject_id=subject_id,
        erased_at=now,
        actor_type=actor.type,
        actor_id=actor.id,
        erased={"records": receipt.records, "counts": receipt.counts},
    )
    audit(
        session,
        actor,
        AuditAction.SUBJECT_ERASED,
        target_type="erasure",
        target_id=receipt.id,
        fields=sorted(receipt.records),
    )
    await session.flush()
    # Last before the commit, and on disk (fsync) before it: if the commit succeeds, the
    # entry exists. A crash between the two leaves an entry whose erasure did not happen; a
    # restore then erases that subject (who asked to be erased): erring on their side.
    forget_log = session.info.get("forget_log")
    if forget_log is not None:
        try:
            forget_log.append(
                organization_id=organization_id,
                subject_id=subject_id,
                identifiers=receipt.identifiers,
                erased_at=now,
                receipt_id=receipt.id,
            )
        except OSError as exc:
            # Not erased rather than erased in a way a restore would undo.
            logger.error("forget_log_unwritable", error_type=type(exc).__name__)
            raise ServiceUnavailable(
                "The forget-log cannot be written (CRM_BACKUP_DIR); nothing was erased. "
                "Try again once an operator has fixed it."
            ) from None
    logger.info("subject_erased", receipt_id=str(receipt.id), **receipt.counts)
    return receipt


async def reapply_erasure(
    session: AsyncSession,
    organization_id: uuid.UUID,
    subject_id: uuid.UUID,
    *,
    identifiers: set[Identifier],
    receipt_id: uuid.UUID,
    erased_at: datetime,
    now: datetime,
) -> bool:
    """Erase again a subject a restored database still holds (the forget-log's replay).
    Idempotent; True when it changed anything (keys destroyed, rows emptied, entries or the
    receipt restored)."""
    receipt = ErasureReceipt(
        id=receipt_id, organization_id=organization_id, subject_id=subject_id, erased_at=erased_at
    )
    await _erase_data(
        session,
        organization_id,
        subject_id,
        now=now,
        receipt=receipt,
        known_identifiers=identifiers,
    )
    changed = any(
        receipt.counts[name]
        for name in ("blocklist_entries", "recycle_bin_records_deleted", "data_keys_destroyed")
    )
    if await repository.receipt(session, organization_id, receipt_id) is None:
        changed = True
        repository.add_receipt(
            session,
            receipt_id=receipt_id,
            organization_id=organization_id,
            subject_id=subject_id,
            erased_at=erased_at,
            actor_type="system",
            actor_id=None,
            erased={"records": receipt.records, "counts": receipt.counts},
            reapplied_at=now,
        )
    await session.flush()
    return changed
