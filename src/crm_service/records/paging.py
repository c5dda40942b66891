"""Keyset pagination over (sort column, id), with opaque cursors.

A cursor names the last row of a page by its sort value and id, so rows inserted while a
client pages through never shift what the next page returns. Cursors carry timestamps and
ids only, never a field value.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, tuple_

from crm_service.errors import FieldProblem, ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class RecordSort(StrEnum):
    CREATED_ASC = "created_at"
    CREATED_DESC = "-created_at"
    UPDATED_ASC = "updated_at"
    UPDATED_DESC = "-updated_at"

    @property
    def column_name(self) -> str:
        return self.value.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.value.startswith("-")


@dataclass(frozen=True)
class Cursor:
    sort: RecordSort
    value: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = json.dumps(
            {"s": self.sort.value, "v": self.value.isoformat(), "i": self.id.hex},
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, token: str, sort: RecordSort) -> Cursor:
        try:
            padded = token + "=" * (-len(token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            cursor = cls(
                sort=RecordSort(data["s"]),
                value=datetime.fromisoformat(data["v"]),
                id=uuid.UUID(hex=data["i"]),
            )
            if cursor.value.tzinfo is None:
                raise ValueError("naive timestamp")
            cursor.value.astimezone(UTC)  # representable in UTC
        except (
            binascii.Error,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,
            UnicodeDecodeError,
        ) as exc:
            raise _cursor_problem("is not a cursor this service issued") from exc
        if cursor.sort is not sort:
            raise _cursor_problem("was issued for another sort order")
        return cursor


def _cursor_problem(message: str) -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not valid.",
        errors=[FieldProblem(field="query.cursor", rule="invalid_cursor", message=message)],
    )


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    sort: RecordSort = RecordSort.CREATED_DESC


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def after_key(
    column: Any, id_column: Any, value: Any, id_: uuid.UUID, *, descending: bool
) -> ColumnElement[bool]:
    """The rows after (`value`, `id_`) in (column, id) order: a row comparison, which an
    index on (..., column, id) answers by seeking there, so page 1,000 costs what page 1
    does (the spelled-out `column > v OR (column = v AND id > i)` is a filter that reads
    every row before it)."""
    key = tuple_(column, id_column)
    return key < (value, id_) if descending else key > (value, id_)


def newest_first_after(
    column: Any, id_column: Any, after: tuple[datetime, uuid.UUID] | None
) -> ColumnElement[bool] | None:
    """The rows after `after` in (column, id) descending order; None for the first page."""
    if after is None:
        return None
    value, id_ = after
    return after_key(column, id_column, value, id_, descending=True)


def apply_keyset(statement: Select[Any], model: Any, request: PageRequest) -> Select[Any]:
    """Order by the sort column then id, start after the cursor, fetch one extra row."""
    sort = request.sort
    column = getattr(model, sort.column_name)
    if request.cursor is not None:
        cursor = Cursor.decode(request.cursor, sort)
        statement = statement.where(
            after_key(column, model.id, cursor.value, cursor.id, descending=sort.descending)
        )
    order = (column.desc(), model.id.desc()) if sort.descending else (column.asc(), model.id.asc())
    return statement.order_by(*order).limit(request.limit + 1)


def to_page(rows: list[Any], request: PageRequest) -> Page:
    if len(rows) <= request.limit:
        return Page(items=rows, next_cursor=None)
    items = rows[: request.limit]
    last = items[-1]
    cursor = Cursor(sort=request.sort, value=getattr(last, request.sort.column_name), id=last.id)
    return Page(items=items, next_cursor=cursor.encode())
