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

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from types import SimpleNamespace
from typing import Any

import anyio
import structlog
from pydantic import BaseModel
from sqlalchemy import Boolean, Integer, Uuid
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.audit.actions import AuditAction, Outcome
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.crypto.service import KEY_COLUMNS
from crm_service.db.session import commit
from crm_service.metrics import observe_exported
from crm_service.records.disclosure import (
    Channel,
    DisclosurePolicy,
    FieldDisclosure,
    note_partner_disclosure,
    partner_of,
)
from crm_service.records.models import PersonColumns
from crm_service.records.service import PAGING_KEYS, RecordService, require_operation
from crm_service.security.permissions import Operation
from crm_service.security.principal import Principal

logger = structlog.get_logger("crm_service.records.export")

BATCH_SIZE = 1000
KEY_AT = 3  # where a batch row's data key row (`KEY_COLUMNS`) starts
# Not record fields: the response's own bookkeeping, and the nested parts flattened below.
_NOT_COLUMNS = frozenset({"etag", "masked_fields", "withheld_fields", "source", "legal_basis"})
# A spreadsheet takes a cell starting with one of these for a formula (OWASP CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(_FORMULA_STARTS)
# What a lead's or contact's NDJSON line is built from beside its fields.
_SOURCE_AND_BASIS = (
    "source_channel",
    "source_client_id",
    "source_batch_id",
    "source_form",
    "legal_basis",
    "legal_basis_set_at",
    "legal_basis_set_by_id",
)


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


def _written_as_is(column: Any) -> bool:
    """A column whose values the csv module writes right (`str()`): ids, numbers, flags."""
    return isinstance(column.type, Uuid | Integer | Boolean)


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


@dataclass(frozen=True)
class _Reading:
    """What an export reads of each record: the statement's columns (the row's id, data key
    id and creation time first: the keyset and the key; then the key's row from
    :data:`KEY_AT`), where each plain attribute is in a row, and the sealed fields with the
    positions of their stored forms."""

    columns: tuple[Any, ...]
    plain: dict[str, int]
    stored: tuple[tuple[str, int], ...]

    @property
    def sealed_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.stored)


def _reading(model: Any, names: Any) -> _Reading:
    """Read `names` of `model` (those it has; others stay empty), nothing else: a masked or
    withheld field is not even read."""
    sealed = set(model.__sealed_fields__)
    attributes = set(sa_inspect(model).column_attrs.keys())
    # The keyset and the key first, then the key's own row (joined: no query of its own).
    columns: list[Any] = [model.id, model.data_key_id, model.created_at, *KEY_COLUMNS]
    plain = {"id": 0, "data_key_id": 1, "created_at": 2}
    stored: list[tuple[str, int]] = []
    for name in names:
        if name in plain or any(name == field for field, _ in stored):
            continue
        if name in sealed:
            stored.append((name, len(columns)))
            columns.append(getattr(model, f"{name}_stored"))
        elif name in attributes:
            plain[name] = len(columns)
            columns.append(getattr(model, name))
    return _Reading(tuple(columns), plain, tuple(stored))


def _ndjson_names(model: Any, read_schema: type[BaseModel], hidden: frozenset[str]) -> list[str]:
    """The record attributes an NDJSON line is built from (see `RecordRead.values_of`)."""
    names = [n for n in read_schema.model_fields if hasattr(model, n) and n not in hidden]
    names.append("version")
    if issubclass(model, PersonColumns):
        names += [*_SOURCE_AND_BASIS, *(() if "source_ip" in hidden else ("source_ip",))]
    return names


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
    """The body. Each batch is one statement of plain columns (no ORM entities) with each
    record's data key row joined, each key unwrapped once, its values opened by the field
    codec, and written out; the next batch is read meanwhile."""
    sent = 0
    complete = False
    model = service.model
    hidden = disclosure.hidden
    person = issubclass(model, PersonColumns)
    # A partner's export is a disclosure of each subject in it (Art. 19): their ids are read.
    to_partner = person and partner_of(principal) is not None
    extra = ["subject_id"] if to_partner else []
    if export_format is ExportFormat.CSV:
        reading = _reading(model, [*(name for name in columns if name not in hidden), *extra])
    else:
        reading = _reading(model, [*_ndjson_names(model, read_schema, hidden), *extra])
    subject_at = reading.plain.get("subject_id", -1) if to_partner else -1
    # Where each CSV cell comes from in a row followed by its opened values; -1: empty.
    width = len(reading.columns)
    sealed_at = {name: width + n for n, name in enumerate(reading.sealed_names)}
    cell_at = [
        -1 if name in hidden else reading.plain.get(name, sealed_at.get(name, -1))
        for name in columns
    ]
    # The cells the csv module would not write as they should be: text (a formula?),
    # dates (ISO 8601). Ids and numbers are written as they are.
    cells_to_shape = [
        n
        for n, at in enumerate(cell_at)
        if at >= 0 and not (at < width and _written_as_is(reading.columns[at]))
    ]
    table = model.__tablename__
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    try:
        if export_format is ExportFormat.CSV:
            writer.writerow(columns)
            yield _drain(buffer)
        async with sessionmaker() as session:
            repository = service.repository_class(session, principal.organization_id, visibility)

            async with contextlib.aclosing(_batches(repository, clauses, reading)) as batches:
                async for batch in batches:
                    opened = repository.storage.open_rows(
                        table, batch, stored=reading.stored, id_at=0, key_at=1, key_row_at=KEY_AT
                    )
                    if export_format is ExportFormat.CSV:
                        lines: list[Any] = []
                        for row, values in zip(batch, opened, strict=True):
                            if values is None:  # an erased subject's record: nothing to show
                                continue
                            merged = (*row, *values, None)  # -1: an empty cell
                            cells = [merged[at] for at in cell_at]
                            for n in cells_to_shape:
                                value = cells[n]
                                if value.__class__ is str:
                                    if value[:1] in _FORMULA_FIRST:
                                        cells[n] = "'" + value
                                elif value is not None:
                                    cells[n] = neutralise(value)
                            lines.append(cells)
                        writer.writerows(lines)  # None is written as an empty cell
                        chunk = _drain(buffer)
                    else:
                        lines = [
                            _ndjson_line(read_schema, reading, disclosure, row, values, person)
                            for row, values in zip(batch, opened, strict=True)
                            if values is not None
                        ]
                        chunk = b"".join(lines)
                    sent += len(lines)
                    if subject_at >= 0 and lines:
                        await _note_disclosed(
                            sessionmaker,
                            principal,
                            [
                                row[subject_at]
                                for row, values in zip(batch, opened, strict=True)
                                if values is not None
                            ],
                        )
                    if lines:
                        yield chunk
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


async def _batches(
    repository: Any, clauses: list[Any], reading: _Reading
) -> AsyncGenerator[Sequence[Any], None]:
    """An export's batches in keyset order. The next batch is read while the caller opens
    and writes this one, so the database works while this process decrypts; nothing else
    uses the session meanwhile."""

    def read_after(after: tuple[Any, Any] | None) -> asyncio.Task[Sequence[Any]]:
        return asyncio.create_task(
            repository.export_batch(clauses, columns=reading.columns, after=after, limit=BATCH_SIZE)
        )

    reading_next: asyncio.Task[Sequence[Any]] | None = read_after(None)
    try:
        while reading_next is not None:
            batch = await reading_next
            reading_next = None
            if not batch:
                return
            if len(batch) == BATCH_SIZE:
                last = batch[-1]
                reading_next = read_after((last[2], last[0]))
                await asyncio.sleep(0)  # let it send its statement
            yield batch
    finally:
        if reading_next is not None:
            # Cut: the read under way is cancelled (as one the stream awaited would be) and
            # has ended before the session closes.
            reading_next.cancel()
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reading_next


async def _note_disclosed(
    sessionmaker: async_sessionmaker[AsyncSession], principal: Principal, subject_ids: list[Any]
) -> None:
    """Record, before a batch goes out, that the partner receives these subjects' data (in a
    short transaction of its own: the stream's session only reads)."""
    async with sessionmaker() as session:
        note_partner_disclosure(session, principal, subject_ids)
        await commit(session)


def _drain(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode()


def _ndjson_line(
    read_schema: Any,
    reading: _Reading,
    disclosure: FieldDisclosure,
    row: Any,
    values: list[str | None],
    person: bool,
) -> bytes:
    """One record as `GET` answers it: the read schema builds and checks it from the row."""
    attributes = {name: row[at] for name, at in reading.plain.items()}
    attributes.update(zip(reading.sealed_names, values, strict=True))
    attributes.update(dict.fromkeys(disclosure.hidden))
    shaped = read_schema.values_of(SimpleNamespace(**attributes), disclosure, person=person)
    item = read_schema.model_validate(shaped).model_dump(mode="json")
    return json.dumps(item, separators=(",", ":")).encode() + b"\n"


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
