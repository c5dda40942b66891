"""Data keys for one organization: find or create the active key, open keys by id, destroy.

Unwrapped key material is cached in process memory for a short time (a KMS round trip per
request would be too slow), keyed by key id and wrapped bytes, so a re-wrapped or destroyed
key is never served from the cache: the key row is always read from the database first.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.crypto.codec import DataKey, FieldContext, open_value, seal, sealed_key_id
from crm_service.crypto.master import KeyProvider, KeyUnwrapError
from crm_service.crypto.models import DataKeyPurpose, DataKeyRecord, DataKeyStatus
from crm_service.db.base import utcnow
from crm_service.db.tenancy import Organization
from crm_service.errors import CRMError

ORGANIZATION_WIDE = uuid.UUID(int=0)


class KeyMaterialError(CRMError):
    status, slug, title = 500, "key-unavailable", "An encryption key could not be opened"


def wrap_context(record: Any) -> bytes:
    """Binds wrapped material to its organization, purpose, owner and key id."""
    return b"|".join(
        (
            b"crm-data-key-v1",
            record.organization_id.bytes,
            record.purpose.encode(),
            record.subject_id.bytes,
            record.id.bytes,
        )
    )


def keyring_material_rewrap(record: DataKeyRecord, provider: KeyProvider) -> None:
    """Re-wrap one data key under the provider's active master key (material unchanged)."""
    assert record.wrapped is not None and record.master_key_id is not None
    context = wrap_context(record)
    material = provider.unwrap(record.master_key_id, record.wrapped, context)
    record.master_key_id, record.wrapped = provider.wrap(material, context)


class UnwrappedKeyCache:
    """A small LRU of unwrapped keys with a time limit."""

    def __init__(self, *, ttl_seconds: float = 60.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[uuid.UUID, bytes], tuple[float, bytes]] = OrderedDict()
        self._named: dict[tuple[str, uuid.UUID], tuple[float, bytes]] = {}

    def get(self, key_id: uuid.UUID, wrapped: bytes) -> bytes | None:
        entry = self._entries.get((key_id, wrapped))
        if entry is None or entry[0] < time.monotonic():
            return None
        self._entries.move_to_end((key_id, wrapped))
        return entry[1]

    def put(self, key_id: uuid.UUID, wrapped: bytes, material: bytes) -> None:
        self._entries[(key_id, wrapped)] = (time.monotonic() + self.ttl, material)
        self._entries.move_to_end((key_id, wrapped))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def remember(self, name: tuple[str, uuid.UUID], material: bytes) -> None:
        """Keep material that never changes under a name (not a key id)."""
        self._named[name] = (time.monotonic() + self.ttl, material)

    def recall(self, name: tuple[str, uuid.UUID]) -> bytes | None:
        entry = self._named.get(name)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def forget(self, key_id: uuid.UUID) -> None:
        for cache_key in [k for k in self._entries if k[0] == key_id]:
            del self._entries[cache_key]


def session_info(provider: KeyProvider, *, phone_region: str | None) -> dict[str, object]:
    """What each database session carries for the storage layer."""
    return {
        "key_provider": provider,
        "key_cache": UnwrappedKeyCache(),
        "phone_region": phone_region,
    }


# Built once (every read of a record opens its keys): a reused statement keeps its cache key.
# Plain rows, not ORM entities: an export opens a key per data subject, thousands a second.
_KEYS_BY_ID = select(*DataKeyRecord.__table__.c).where(
    DataKeyRecord.organization_id == bindparam("organization_id"),
    DataKeyRecord.id.in_(bindparam("key_ids", expanding=True)),
)


class KeyColumns(NamedTuple):
    """What opening a data key needs of its row: a read that joins each record's key row
    (an export's batch) selects :data:`KEY_COLUMNS` and hands them to `Keyring.open_columns`."""

    id: uuid.UUID
    organization_id: uuid.UUID
    purpose: str
    subject_id: uuid.UUID
    generation: int
    master_key_id: str | None
    wrapped: bytes | None
    status: str


KEY_COLUMNS = tuple(DataKeyRecord.__table__.c[name] for name in KeyColumns._fields)


class Keyring:
    """The data keys of one organization, for one database session."""

    def __init__(
        self,
        session: AsyncSession,
        organization_id: uuid.UUID,
        provider: KeyProvider,
        cache: UnwrappedKeyCache,
    ) -> None:
        self.session = session
        self.organization_id = organization_id
        self.provider = provider
        self.cache = cache

    def _scoped(self) -> Select[DataKeyRecord]:
        return select(DataKeyRecord).where(DataKeyRecord.organization_id == self.organization_id)

    def _open(self, record: Any, *, keep: bool = True) -> DataKey | None:
        """The key of a key row (None when destroyed), from the cache or unwrapped; kept in
        the cache unless `keep` is false (a key read once, like each of an export's)."""
        if record.status == DataKeyStatus.DESTROYED or record.wrapped is None:
            return None
        material = self.cache.get(record.id, record.wrapped)
        if material is None:
            try:
                material = self.provider.unwrap(
                    record.master_key_id or "", record.wrapped, wrap_context(record)
                )
            except KeyUnwrapError as exc:
                raise KeyMaterialError(
                    "A data key could not be unwrapped with the configured master keys."
                ) from exc
            if keep:
                self.cache.put(record.id, record.wrapped, material)
        return DataKey(id=record.id, material=material, generation=record.generation)

    async def _create(
        self, purpose: DataKeyPurpose, subject_id: uuid.UUID, generation: int
    ) -> DataKeyRecord:
        record = DataKeyRecord(
            id=uuid.uuid4(),
            organization_id=self.organization_id,
            purpose=purpose.value,
            subject_id=subject_id,
            generation=generation,
            status=DataKeyStatus.ACTIVE.value,
            created_at=utcnow(),
        )
        material = secrets.token_bytes(32)
        record.master_key_id, record.wrapped = self.provider.wrap(material, wrap_context(record))
        self.cache.put(record.id, record.wrapped, material)
        return record

    async def _active_record(
        self, purpose: DataKeyPurpose, subject_id: uuid.UUID
    ) -> DataKeyRecord | None:
        result = await self.session.execute(
            self._scoped()
            .where(
                DataKeyRecord.purpose == purpose.value,
                DataKeyRecord.subject_id == subject_id,
                DataKeyRecord.status == DataKeyStatus.ACTIVE.value,
            )
            .order_by(DataKeyRecord.generation.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def active_key(
        self, purpose: DataKeyPurpose, subject_id: uuid.UUID, generation: int
    ) -> DataKey:
        """The key that seals new values: of `generation` or newer, created when missing.

        Creating a newer generation retires the older active key (it still opens old values).
        """
        record = await self._active_record(purpose, subject_id)
        if record is None or record.generation < generation:
            created = await self._create(purpose, subject_id, generation)
            try:
                async with self.session.begin_nested():
                    if record is not None:
                        record.status = DataKeyStatus.RETIRED.value
                        record.retired_at = utcnow()
                    self.session.add(created)
            except IntegrityError:
                # A concurrent request created the same generation first: use theirs.
                record = await self._active_record(purpose, subject_id)
                if record is None:
                    raise
            else:
                record = created
        key = self._open(record)
        if key is None:  # an active key is never destroyed
            raise KeyMaterialError("The active data key has no material.")
        return key

    async def subject_key(self, subject_id: uuid.UUID, generation: int) -> DataKey:
        return await self.active_key(DataKeyPurpose.SUBJECT, subject_id, generation)

    async def new_subject_key(self, subject_id: uuid.UUID, generation: int) -> DataKey:
        """The first key of a data subject just created (a random id no one else holds),
        so there is nothing to look up and no concurrent creator to guard against."""
        record = await self._create(DataKeyPurpose.SUBJECT, subject_id, generation)
        self.session.add(record)
        key = self._open(record)
        assert key is not None
        return key

    async def organization_key(self, generation: int) -> DataKey:
        return await self.active_key(DataKeyPurpose.ORGANIZATION, ORGANIZATION_WIDE, generation)

    async def index_key(self) -> bytes:
        # Index keys do not follow data-key generations: a new one would need every index
        # recomputed. Master rotation re-wraps them like any other key.
        return await self._lasting_key("index", DataKeyPurpose.BLIND_INDEX)

    async def audit_key(self) -> bytes:
        # Like index keys, outside generations: the whole log is verified with one key.
        return await self._lasting_key("audit", DataKeyPurpose.AUDIT)

    async def _lasting_key(self, name: str, purpose: DataKeyPurpose) -> bytes:
        """An organization-wide key whose material never changes (master rotation re-wraps
        the same bytes) and that is never destroyed: kept for the cache's lifetime without
        reading its row. Only a key read from the database is kept, never one this
        transaction just created: a rollback would leave the cache holding material no row
        has."""
        cached = self.cache.recall((name, self.organization_id))
        if cached is not None:
            return cached
        record = await self._active_record(purpose, ORGANIZATION_WIDE)
        if record is None:
            return (await self.active_key(purpose, ORGANIZATION_WIDE, 1)).material
        key = self._open(record)
        if key is None:  # an active key is never destroyed
            raise KeyMaterialError("The active data key has no material.")
        self.cache.remember((name, self.organization_id), key.material)
        return key.material

    async def keys_by_id(self, key_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DataKey | None]:
        """Open this organization's keys by id. A destroyed key maps to None; an id the
        organization has no key for is left out (the caller treats that as tampering)."""
        wanted = set(key_ids)
        if not wanted:
            return {}
        result = await self.session.execute(
            _KEYS_BY_ID, {"organization_id": self.organization_id, "key_ids": list(wanted)}
        )
        return self.open_rows(result.all())

    def open_columns(self, row: Sequence[Any], at: int) -> DataKey | None:
        """Open the key whose :data:`KEY_COLUMNS` a row holds from position `at` (joined by
        this organization: the caller checks the id is there); None when destroyed. Used for
        reads of thousands of keys once each: they do not push the keys of everyday requests
        out of the cache."""
        record = KeyColumns._make(row[at : at + len(KEY_COLUMNS)])
        if record.organization_id != self.organization_id:
            raise KeyMaterialError("A data key of another organization was read.")
        return self._open(record, keep=False)

    def open_rows(self, records: Iterable[Any]) -> dict[uuid.UUID, DataKey | None]:
        """Open key rows already read (of this organization; entities or plain rows with the
        table's columns); a destroyed key maps to None."""
        return {
            record.id: self._open(record)
            for record in records
            if record.organization_id == self.organization_id
        }

    async def destroy_subject_keys(self, subject_id: uuid.UUID) -> int:
        """Erase a data subject: delete the material of every key they ever had."""
        result = await self.session.execute(
            update(DataKeyRecord)
            .where(
                DataKeyRecord.organization_id == self.organization_id,
                DataKeyRecord.purpose == DataKeyPurpose.SUBJECT.value,
                DataKeyRecord.subject_id == subject_id,
                DataKeyRecord.status != DataKeyStatus.DESTROYED.value,
            )
            .values(
                status=DataKeyStatus.DESTROYED.value,
                wrapped=None,
                master_key_id=None,
                destroyed_at=utcnow(),
            )
            .returning(DataKeyRecord.id)
        )
        destroyed = list(result.scalars())
        for key_id in destroyed:
            self.cache.forget(key_id)
        return len(destroyed)


def keyring_for(session: AsyncSession, organization_id: uuid.UUID) -> Keyring:
    """The session carries the key provider and cache (set by the app's sessionmaker)."""
    return Keyring(
        session, organization_id, session.info["key_provider"], session.info["key_cache"]
    )


async def key_generation(
    session: AsyncSession, organization_id: uuid.UUID, *, for_write: bool = False
) -> int:
    """The organization's key generation. A writer reads it FOR SHARE (PostgreSQL), so a
    rotation's FOR UPDATE waits until every write that sealed under the old one committed."""
    statement = select(Organization.key_generation).where(Organization.id == organization_id)
    if for_write:
        statement = statement.with_for_update(read=True)
    return int((await session.execute(statement)).scalar_one())


async def seal_organization_secret(
    session: AsyncSession, organization_id: uuid.UUID, text: str, context: FieldContext
) -> bytes:
    """Seal a secret the organization configured (a TOTP seed, an SSO client secret) under
    the organization's newest key."""
    keyring = keyring_for(session, organization_id)
    key = await keyring.organization_key(await key_generation(session, organization_id))
    return seal(key, text, context)


async def open_organization_secret(
    session: AsyncSession, organization_id: uuid.UUID, stored: bytes, context: FieldContext
) -> str | None:
    """The secret, or None when the key that sealed it is gone."""
    key_id = sealed_key_id(stored)
    if key_id is None:
        return None
    key = (await keyring_for(session, organization_id).keys_by_id([key_id])).get(key_id)
    return open_value(stored, key, context) if key is not None else None
