"""Exports of a module's records: `GET /v1/{module}/export?format=csv|ndjson`.

What an export holds is decided like a list: the profile's `export` operation on the module
(partner clients: the scope), the sharing rules, the list's exact-match filters, and the one
disclosure policy on the `export` channel (masked fields empty, withheld fields absent: no
CSV column, no NDJSON key). Records of a restricted data subject (GDPR Art. 18) are left out,
and so are erased ones.

The body is streamed: keyset batches of :data:`BATCH_SIZE` rows read in a session of the
stream's own, each batch written out and forgotten before the next is read, so memory stays
flat whatever the size. The request's transaction has committed before the first byte goes
out, so the export's one audit event (`records.exported`: module, field names, channel,
rows sent) is written in a transaction of its own when the stream ends, or is cut because the
client went away; a cut export says so (`outcome` failure, reason `...;cut`). The export
changes nothing else, so a cut leaves nothing half-done.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import anyio
import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.audit.actions import AuditAction, Outcome
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.db.session import commit
from crm_service.metrics import observe_exported
from crm_service.records.disclosure import Channel, DisclosurePolicy, FieldDisclosure
from crm_service.records.service import PAGING_KEYS, RecordService, require_operation
from crm_service.security.permissions import Operation
from crm_service.security.principal import Principal

logger = structlog.get_logger("crm_service.records.export")

BATCH_SIZE = 1000
# Not record fields: the response's own bookkeeping, and the nested parts flattened below.
_NOT_COLUMNS = frozenset({"etag", "masked_fields", "withheld_fields", "source", "legal_basis"})
# A spreadsheet takes a cell starting with one of these for a formula (OWASP CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(StrEnum):
    CSV = "csv"
    NDJSON = "ndjson"

    @property
    def media_type(self) -> str:
        if self is ExportFormat.CSV:
            return "text/csv; charset=utf-8"
        return "application/x-ndjson"


@dataclass(frozen=True)
class ExportStream:
    """An export decided in the request's transaction, its rows still to be read."""

    format: ExportFormat
    filename: str
    columns: tuple[str, ...]  # CSV header, in order
    disclosure: FieldDisclosure
    body: AsyncIterator[bytes]


def neutralise(value: Any) -> str:
    """A cell's text, with a leading `'` where a spreadsheet would read a formula."""
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        text = value.isoformat()
    else:
        text = str(value)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def columns_of(read_schema: type[BaseModel], disclosure: FieldDisclosure) -> tuple[str, ...]:
    names = [
        name
        for name in read_schema.model_fields
        if name not in _NOT_COLUMNS and name not in disclosure.withheld
    ]
    extra = ["source_channel"]
    if "legal_basis" in read_schema.model_fields:
        extra.append("legal_basis")
    return (*names, *extra)


async def prepare_export(
    *,
    service: RecordService[Any],
    session: AsyncSession,
    principal: Principal,
    query: BaseModel,
    read_schema: type[BaseModel],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> ExportStream:
    """Check who may export what (403/422 before anything is sent) and return the stream."""
    require_operation(principal, service.module, Operation.EXPORT)
    repository = await service.repository(session, principal)
    values = query.model_dump()
    export_format = ExportFormat(values.pop("format"))
    filters = {k: v for k, v in values.items() if k not in PAGING_KEYS and v is not None}
    policy = DisclosurePolicy(session, principal, Channel.EXPORT)
    await policy.refuse_hidden_input(
        repository.storage,
        [field for name in filters for field in repository.filter_aliases.get(name, (name,))],
    )
    disclosure = await policy.fields(repository.storage)
    clauses = await repository.filter_clauses(filters)
    columns = columns_of(read_schema, disclosure)
    body = _stream(
        service=service,
        principal=principal,
        sessionmaker=sessionmaker,
        visibility=repository.visibility,
        clauses=clauses,
        export_format=export_format,
        columns=columns,
        disclosure=disclosure,
        read_schema=read_schema,
    )
    return ExportStream(
        format=export_format,
        filename=f"{service.module.value}.{export_format.value}",
        columns=columns,
        disclosure=disclosure,
        body=body,
    )


def _csv_line(writer: Any, buffer: io.StringIO, cells: list[str]) -> bytes:
    writer.writerow(cells)
    line = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return line.encode()


async def _stream(
    *,
    service: RecordService[Any],
    principal: Principal,
    sessionmaker: async_sessionmaker[AsyncSession],
    visibility: Any,
    clauses: list[Any],
    export_format: ExportFormat,
    columns: tuple[str, ...],
    disclosure: FieldDisclosure,
    read_schema: type[BaseModel],
) -> AsyncIterator[bytes]:
    sent = 0
    complete = False
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    masked = frozenset(disclosure.masked)
    try:
        if export_format is ExportFormat.CSV:
            yield _csv_line(writer, buffer, list(columns))
        async with sessionmaker() as session:
            repository = service.repository_class(session, principal.organization_id, visibility)
            after: tuple[Any, Any] | None = None
            while True:
                batch = await repository.export_batch(clauses, after=after, limit=BATCH_SIZE)
                if not batch:
                    break
                after = (batch[-1].created_at, batch[-1].id)
                chunk: list[bytes] = []
                for record in batch:
                    if record.erased:
                        continue
                    if export_format is ExportFormat.CSV:
                        cells = [
                            "" if name in masked else neutralise(_cell(record, name))
                            for name in columns
                        ]
                        chunk.append(_csv_line(writer, buffer, cells))
                    else:
                        DisclosurePolicy.stamp(record, disclosure)
                        item = read_schema.model_validate(record).model_dump(mode="json")
                        chunk.append(json.dumps(item, separators=(",", ":")).encode() + b"\n")
                    sent += 1
                # Rows leave the session's identity map with their batch: memory stays flat.
                session.expunge_all()
                if chunk:
                    yield b"".join(chunk)
                if len(batch) < BATCH_SIZE:
                    break
        complete = True
    finally:
        # Cancelled when the client goes away: the record of what left is written regardless.
        with anyio.CancelScope(shield=True):
            await _audit_export(
                sessionmaker,
                principal,
                service=service,
                export_format=export_format,
                columns=columns,
                sent=sent,
                complete=complete,
            )


def _cell(record: Any, name: str) -> Any:
    if name == "source_channel":
        return record.source_channel if hasattr(record, "source_channel") else None
    return getattr(record, name, None)


async def _audit_export(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    *,
    service: RecordService[Any],
    export_format: ExportFormat,
    columns: tuple[str, ...],
    sent: int,
    complete: bool,
) -> None:
    observe_exported(service.module.value, sent)
    ending = "complete" if complete else "cut"
    try:
        async with sessionmaker() as session:
            audit(
                session,
                Actor.of(principal),
                AuditAction.RECORDS_EXPORTED,
                target_type=service.noun,
                fields=columns,
                outcome=Outcome.SUCCESS if complete else Outcome.FAILURE,
                reason=f"channel={Channel.EXPORT.value};format={export_format.value};"
                f"rows={sent};{ending}",
            )
            await commit(session)
    except Exception as exc:  # noqa: BLE001 - the stream is over; say so loudly instead
        logger.error(
            "export_audit_failed", module=service.module.value, error_type=type(exc).__name__
        )
        raise
