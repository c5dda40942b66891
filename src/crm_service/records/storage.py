"""The storage layer of records: seal classifiable values on the way in, reveal them on the
way out, and turn exact-match filters into blind-index lookups.

Repositories call it; services and routers never see ciphertext. A lead or contact is sealed
under its data subject's key, an account under the organization's key; every write seals
under the newest key generation, re-sealing the whole row when its key is older.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import structlog
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.crypto.blind_index import IndexKind, blind_index
from crm_service.crypto.codec import (
    DataKey,
    FieldContext,
    StoredValueIntegrityError,
    column_place,
    open_row,
    open_value_at,
    seal,
    store_plain,
)
from crm_service.crypto.models import DataKeyRecord
from crm_service.crypto.service import key_generation, keyring_for
from crm_service.kit.modules import Module
from crm_service.orgs.models import FieldClassification
from crm_service.privacy.blocklist import identifiers_of, refuse_blocklisted
from crm_service.records.fields import CATALOG, Classification
from crm_service.records.models import PersonColumns

logger = structlog.get_logger("crm_service.records.storage")

# A key id the batch's key query did not find (not a destroyed key, which maps to None).
_NO_KEY: Any = object()


_CLASSIFICATIONS = select(FieldClassification.field, FieldClassification.classification).where(
    FieldClassification.organization_id == bindparam("organization_id"),
    FieldClassification.module == bindparam("module"),
)


async def classifications(
    session: AsyncSession, organization_id: uuid.UUID, module: Module
) -> dict[str, Classification]:
    result = await session.execute(
        _CLASSIFICATIONS, {"organization_id": organization_id, "module": module.value}
    )
    return _classified(module, {field: value for field, value in result.all()})


def _classified(module: Module, overrides: dict[str, str]) -> dict[str, Classification]:
    return {
        spec.name: Classification(overrides[spec.name]) if spec.name in overrides else spec.default
        for spec in CATALOG[module]
    }


def classification_column(module: Module, organization_id: Any) -> Any:
    """The organization's classification overrides of `module` as one text column
    (`field=classification,...`, NULL without any), for a record read to carry along: the
    classification then comes in the same statement, and the same snapshot, as the records."""
    return (
        select(
            func.aggregate_strings(
                FieldClassification.field + "=" + FieldClassification.classification, ","
            )
        )
        .where(
            FieldClassification.organization_id == organization_id,
            FieldClassification.module == module.value,
        )
        .scalar_subquery()
    )


def parse_classification_column(module: Module, text: str | None) -> dict[str, Classification]:
    pairs = (item.partition("=") for item in text.split(",")) if text else ()
    return _classified(module, {field: value for field, _, value in pairs})


class RecordStorage:
    """Sealing and revealing for one module of one organization, within one session."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID, module: Module) -> None:
        self.session = session
        self.organization_id = organization_id
        self.module = module
        self.keyring = keyring_for(session, organization_id)
        self._classification: dict[str, Classification] | None = None
        self._index_key: bytes | None = None
        self._generation: int | None = None

    def carry_classification(self, text: str | None) -> None:
        """Take the classification a record read carried (see `classification_column`)."""
        if self._classification is None:
            self._classification = parse_classification_column(self.module, text)

    async def classification(self) -> dict[str, Classification]:
        if self._classification is None:
            self._classification = await classifications(
                self.session, self.organization_id, self.module
            )
        return self._classification

    async def index_key(self) -> bytes:
        if self._index_key is None:
            self._index_key = await self.keyring.index_key()
        return self._index_key

    def _context(self, record: Any, field: str) -> FieldContext:
        return FieldContext(self.organization_id, record.__tablename__, field, record.id)

    async def generation(self) -> int:
        """The organization's key generation, read once per storage (one request or batch)."""
        if self._generation is None:
            self._generation = await key_generation(
                self.session, self.organization_id, for_write=True
            )
        return self._generation

    async def key_for(self, record: Any) -> DataKey:
        """The key that seals new values of `record` (what derives from it, like history)."""
        return await self._active_key(record)

    async def _active_key(self, record: Any) -> DataKey:
        generation = await self.generation()
        if isinstance(record, PersonColumns):
            if record.is_new_subject:
                # The subject's first key, made by this transaction when the record was first
                # sealed: what derives from the record (its history) seals under it too.
                if record.sealing_key is not None:
                    return record.sealing_key
                return await self.keyring.new_subject_key(record.subject_id, generation)
            return await self.keyring.subject_key(record.subject_id, generation)
        return await self.keyring.organization_key(generation)

    async def seal(self, record: Any, *, force: bool = False) -> None:
        """Write pending plaintext into stored columns (and blind indexes).

        With `force`, or when the record's key is older than the active one, every field is
        re-sealed, so one row never mixes key generations.
        """
        written = await self._seal(record, force=force)
        if written is not None and isinstance(record, PersonColumns):
            # An erased subject's email or phone is not entered again (409 `blocklisted`).
            await refuse_blocklisted(
                self.session, self.organization_id, identifiers_of(record, written)
            )

    async def seal_many(self, records: Sequence[Any]) -> None:
        """:meth:`seal` for a batch of new records (one blocklist query for all of them): a
        batch with one blocklisted email or phone is refused whole."""
        identifiers: set[Any] = set()
        for record in records:
            written = await self._seal(record, force=False)
            if written is not None and isinstance(record, PersonColumns):
                identifiers |= identifiers_of(record, written)
        await refuse_blocklisted(self.session, self.organization_id, identifiers)

    async def _seal(self, record: Any, *, force: bool) -> set[str] | None:
        """Seal `record`; the fields the caller wrote, or None when there was nothing to do.
        The blocklist is the caller's to ask."""
        if not (record.pending_fields or force or record.data_key_id is None):
            return None
        if record.id is None:
            record.id = uuid.uuid4()
        # The key (and with it the FOR SHARE read of the organization) before the
        # classification, so a concurrent reclassification cannot slip between them.
        key = await self._active_key(record)
        # What the caller wrote (not what re-sealing touches): only new values can be refused.
        written = set(record.pending_fields)
        if force or (record.sealing_key is not None and record.sealing_key.id != key.id):
            record.mark_all_pending()
        classification = await self.classification()
        plaintext = dict(record.__dict__.get("_plaintext", {}))
        for field in record.pending_fields:
            value = plaintext.get(field)
            if value is None:
                stored = None
            elif classification[field].sealed:
                stored = seal(key, value, self._context(record, field))
            else:
                stored = store_plain(value)
            setattr(record, f"{field}_stored", stored)
            kind: IndexKind | None = record.__indexed_fields__.get(field)
            if kind is not None:
                setattr(record, f"{field}_bidx", await self.index_of(kind, value))
        record.data_key_id = key.id
        record.set_revealed(plaintext, key=key)
        return written

    async def index_of(self, kind: IndexKind, value: str | None) -> str | None:
        if value is None:
            return None
        phone_region = self.session.info.get("phone_region")
        return blind_index(await self.index_key(), kind, value, phone_region=phone_region)

    async def reveal(
        self, records: Sequence[Any], key_rows: Sequence[DataKeyRecord | None] | None = None
    ) -> None:
        """Open every sealed value of `records`; a record whose key was destroyed is erased.

        `key_rows` are the records' data key rows when the read that loaded them joined them
        (the organization's key named by each record's `data_key_id`, or None); without
        them the keys are read here."""
        if key_rows is None:
            keys = await self.keyring.keys_by_id(
                {record.data_key_id for record in records if record.data_key_id is not None}
            )
        else:
            keys = self.keyring.open_rows(row for row in key_rows if row is not None)
        # The associated data's column part, built once per table and field for the batch.
        places: dict[tuple[str, str], bytes] = {}
        for record in records:
            if record.data_key_id not in keys:
                self._integrity_failure(record, "data_key_id")
                raise StoredValueIntegrityError("A record names a data key its organization lacks.")
            key = keys[record.data_key_id]
            if key is None:  # destroyed: the data subject was erased
                record.set_revealed(dict.fromkeys(record.__sealed_fields__), erased=True)
                continue
            values: dict[str, str | None] = {}
            table = record.__tablename__
            row_place = record.id.bytes + b"|"
            for field in record.__sealed_fields__:
                stored = getattr(record, f"{field}_stored")
                if stored is None:
                    values[field] = None
                    continue
                place = places.get((table, field))
                if place is None:
                    place = places[table, field] = column_place(self.organization_id, table, field)
                try:
                    values[field] = open_value_at(stored, key, place + row_place)
                except StoredValueIntegrityError:
                    self._integrity_failure(record, field)
                    raise
            record.set_revealed(values, key=key)

    def open_rows(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        *,
        stored: Sequence[tuple[str, int]],
        id_at: int = 0,
        key_at: int = 1,
        key_row_at: int,
    ) -> list[list[str | None] | None]:
        """Open plain rows of `table` read without the ORM (an export's batch): each key
        unwrapped once, every value through the field codec. `stored` names each field and
        where its stored form is in a row; a row holds its id at `id_at`, its data key id at
        `key_at` and that key's row (`crypto.service.KEY_COLUMNS`, joined by organization)
        from `key_row_at`. Per row, the plaintexts in the order of `stored`, or None when the
        data subject was erased (the key destroyed)."""
        keys: dict[uuid.UUID, DataKey | None] = {}
        for row in rows:
            key_id = row[key_at]
            # The joined row's id is empty when the organization has no such key.
            if key_id is not None and key_id not in keys and row[key_row_at] == key_id:
                keys[key_id] = self.keyring.open_columns(row, key_row_at)
        positions = [position for _, position in stored]
        places = [column_place(self.organization_id, table, field) for field, _ in stored]
        opened: list[list[str | None] | None] = []
        for row in rows:
            key = keys.get(row[key_at], _NO_KEY)
            if key is None:  # destroyed: the data subject was erased
                opened.append(None)
                continue
            if key is _NO_KEY:
                self._integrity_failure(
                    SimpleNamespace(__tablename__=table, id=row[id_at]), "data_key_id"
                )
                raise StoredValueIntegrityError("A record names a data key its organization lacks.")
            row_id = row[id_at]
            values = [row[position] for position in positions]
            try:
                opened.append(open_row(values, key, places, row_id.bytes + b"|"))
            except StoredValueIntegrityError:
                self._name_integrity_failure(table, row_id, stored, values, key, places)
                raise
        return opened

    def _name_integrity_failure(
        self,
        table: str,
        row_id: uuid.UUID,
        stored: Sequence[tuple[str, int]],
        values: list[bytes | None],
        key: DataKey,
        places: list[bytes],
    ) -> None:
        """Log which field of a row failed to open (each tried on its own)."""
        for (field, _), value, place in zip(stored, values, places, strict=True):
            if value is None:
                continue
            try:
                open_value_at(value, key, place + row_id.bytes + b"|")
            except StoredValueIntegrityError:
                self._integrity_failure(SimpleNamespace(__tablename__=table, id=row_id), field)
                return

    @staticmethod
    def _integrity_failure(record: Any, column: str) -> None:
        # A security event: names the place, never a value.
        logger.error(
            "stored_value_integrity_failure",
            table=record.__tablename__,
            column=column,
            record_id=str(record.id),
        )
