"""SQL shared by the record modules: organization-scoped keyset pages with exact filters,
reading and writing through the storage layer so values are sealed at rest; the legal-basis
entries and the processing locks of data subjects."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    delete,
    exists,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access.visibility import Visibility
from crm_service.crypto.models import DataKeyPurpose, DataKeyRecord, DataKeyStatus
from crm_service.db.base import Base, utcnow
from crm_service.db.repository import OrganizationRepository, insert_ignoring_conflicts
from crm_service.kit.modules import Module
from crm_service.records.models import (
    LegalBasisEntry,
    PartnerDisclosure,
    PersonColumns,
    ProcessingLockKind,
    SubjectProcessingLock,
)
from crm_service.records.paging import (
    Page,
    PageRequest,
    after_key,
    apply_keyset,
    newest_first_after,
    to_page,
)
from crm_service.records.storage import RecordStorage, classification_column

ModelT = TypeVar("ModelT", bound=Base)


# (model, binned) -> a record by id within an organization, built once per model: a statement
# object reused keeps its cache key, so the hot read is neither rebuilt nor re-keyed.
_BY_ID: dict[tuple[type[Any], bool], Select[Any]] = {}


def _by_id(model: type[Any], module: Module, binned: bool) -> Select[Any]:
    statement = _BY_ID.get((model, binned))
    if statement is None:
        statement = with_restriction(
            with_keys_and_classification(
                select(model).where(
                    model.organization_id == bindparam("organization_id"),
                    model.deleted_at.is_not(None) if binned else model.deleted_at.is_(None),
                    model.id == bindparam("record_id"),
                ),
                model,
                module,
                bindparam("organization_id"),
            ),
            model,
        )
        _BY_ID[(model, binned)] = statement
    return statement


def restricted_clause(model: Any) -> ColumnElement[bool]:
    """The record's data subject is restricted (GDPR Art. 18): a lookup by the lock's key."""
    return exists().where(
        SubjectProcessingLock.organization_id == model.organization_id,
        SubjectProcessingLock.subject_id == model.subject_id,
        SubjectProcessingLock.kind == ProcessingLockKind.RESTRICTED.value,
    )


def with_restriction(statement: Select[Any], model: Any) -> Select[Any]:
    """A read of one lead or contact that also says, in the same statement, whether its data
    subject is restricted (the read gate in `processing.py` needs it); accounts unchanged."""
    if not issubclass(model, PersonColumns):
        return statement
    return statement.add_columns(restricted_clause(model).label("processing_restricted"))


def with_keys_and_classification(
    statement: Select[Any], model: Any, module: Module, organization_id: Any
) -> Select[Any, Any, Any]:
    """A read of records that also brings, in the same round trip, each record's data key row
    (joined by its organization too) and the organization's field classification."""
    return statement.add_columns(
        DataKeyRecord, classification_column(module, organization_id)
    ).outerjoin(
        DataKeyRecord,
        (DataKeyRecord.id == model.data_key_id)
        & (DataKeyRecord.organization_id == model.organization_id),
    )


class RecordRepository(OrganizationRepository[ModelT]):
    """Records come back revealed (an erased one says so); `add` and `save` seal first.

    With a `visibility`, every statement is limited to the records the caller may read
    (a record outside it does not exist for them); without one (jobs, the system) nothing is.
    """

    module: ClassVar[Module]
    # A filter on one of these matches any of the listed indexed fields (same index kind).
    filter_aliases: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(
        self,
        session: AsyncSession,
        organization_id: uuid.UUID,
        visibility: Visibility | None = None,
    ) -> None:
        super().__init__(session, organization_id)
        self.storage = RecordStorage(session, organization_id, self.module)
        self.visibility = visibility

    def scoped(self, *, binned: bool = False) -> Select[ModelT]:
        """The caller's visible records: live ones, or those in the recycle bin."""
        statement = (
            super()
            .scoped()
            .where(
                self.model.deleted_at.is_not(None) if binned else self.model.deleted_at.is_(None)
            )
        )
        if self.visibility is not None:
            clause = self.visibility.read_clause(self.model)
            if clause is not None:
                statement = statement.where(clause)
        return statement

    def listable(self, *, binned: bool = False) -> Select[ModelT]:
        """What lists, searches, exports and the recycle bin show: the caller's visible records
        without those of a restricted data subject (GDPR Art. 18: stored, not processed; a
        direct read by id is the one, audited, way in). One NOT EXISTS in the same statement,
        so counts and keyset pages stay right."""
        statement = self.scoped(binned=binned)
        if issubclass(self.model, PersonColumns):
            statement = statement.where(~restricted_clause(self.model))
        return statement

    async def writable(self, id_: uuid.UUID) -> bool:
        """Whether the caller may change the record (it is known to be readable)."""
        if self.visibility is None:
            return True
        clause = self.visibility.write_clause(self.model)
        if clause is None:
            return True
        statement = select(self.model.id).where(
            self.model.organization_id == self.organization_id, self.model.id == id_, clause
        )
        return (await self.session.execute(statement)).first() is not None

    async def filter_clauses(self, filters: dict[str, Any]) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        indexed = self.model.__indexed_fields__
        for name, value in filters.items():
            if value is None:
                continue
            fields = self.filter_aliases.get(name, (name,))
            if fields[0] in indexed:
                digest = await self.storage.index_of(indexed[fields[0]], value)
                clauses.append(or_(*(getattr(self.model, f"{f}_bidx") == digest for f in fields)))
            else:
                clauses.append(getattr(self.model, name) == value)
        return clauses

    async def get(self, id_: uuid.UUID, *, binned: bool = False) -> ModelT | None:
        clause = None if self.visibility is None else self.visibility.read_clause(self.model)
        if clause is None:
            # Nothing but the organization limits the caller: the statement built once.
            result = await self.session.execute(
                _by_id(self.model, self.module, binned),
                {"organization_id": self.organization_id, "record_id": id_},
            )
        else:
            result = await self.session.execute(
                with_restriction(
                    with_keys_and_classification(
                        self.scoped(binned=binned).where(self.model.id == id_),
                        self.model,
                        self.module,
                        self.organization_id,
                    ),
                    self.model,
                )
            )
        row = result.one_or_none()
        if row is None:
            return None
        record, key_row, classification = row[:3]
        if isinstance(record, PersonColumns):
            record.note_restriction(bool(row[3]))
        self.storage.carry_classification(classification)
        await self.storage.reveal([record], [key_row])
        return record

    async def binned_page(self, *, after: tuple[Any, uuid.UUID] | None, limit: int) -> list[ModelT]:
        """Records in the recycle bin, most recently deleted first (not revealed)."""
        statement = self.listable(binned=True)
        clause = newest_first_after(self.model.deleted_at, self.model.id, after)
        if clause is not None:
            statement = statement.where(clause)
        statement = statement.order_by(self.model.deleted_at.desc(), self.model.id.desc())
        return list((await self.session.execute(statement.limit(limit))).scalars())

    async def subject_in_use(self, subject_id: uuid.UUID, *, except_id: uuid.UUID) -> bool:
        statement = select(self.model.id).where(
            self.model.organization_id == self.organization_id,
            self.model.subject_id == subject_id,
            self.model.id != except_id,
        )
        return (await self.session.execute(statement.limit(1))).first() is not None

    async def page(self, *, filters: dict[str, Any], request: PageRequest) -> Page:
        statement = self.listable().where(*await self.filter_clauses(filters))
        statement = with_keys_and_classification(
            apply_keyset(statement, self.model, request),
            self.model,
            self.module,
            self.organization_id,
        )
        result = (await self.session.execute(statement)).all()
        rows = [row[0] for row in result]
        if result:
            self.storage.carry_classification(result[0][2])
        await self.storage.reveal(rows, [row[1] for row in result])
        page = to_page(rows, request)
        # Erased subjects drop out of lists; the cursor still moves past them.
        return Page(items=[r for r in page.items if not r.erased], next_cursor=page.next_cursor)

    def export_query(
        self,
        clauses: list[ColumnElement[bool]],
        *,
        columns: Sequence[Any],
        after: tuple[Any, uuid.UUID] | None,
        limit: int,
    ) -> Select[Any]:
        """The one statement of an export's batches: `columns` (plain, no ORM entities) of the
        caller's visible live records matching `clauses`, oldest first after `after`, without
        those of a restricted data subject. Every rule of what an export holds is here.
        Each record's data key row is joined (by its organization too), so `columns` may
        include `crypto.service.KEY_COLUMNS`: one round trip a batch."""
        model = self.model
        statement = (
            self.listable()
            .with_only_columns(*columns)
            .outerjoin(
                DataKeyRecord,
                (DataKeyRecord.id == model.data_key_id)
                & (DataKeyRecord.organization_id == model.organization_id),
            )
            .where(*clauses)
        )
        if after is not None:
            value, id_ = after
            statement = statement.where(
                after_key(model.created_at, model.id, value, id_, descending=False)
            )
        return statement.order_by(model.created_at.asc(), model.id.asc()).limit(limit)

    async def export_batch(
        self,
        clauses: list[ColumnElement[bool]],
        *,
        columns: Sequence[Any],
        after: tuple[Any, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[Any]:
        """A batch of an export (see :meth:`export_query`) as plain rows, still sealed: the
        export opens them a batch at a time (`RecordStorage.open_rows`)."""
        statement = self.export_query(clauses, columns=columns, after=after, limit=limit)
        # Plain columns: run as Core on the session's connection (the same transaction),
        # without the ORM's result machinery, which costs more than the rows a batch holds.
        connection = await self.session.connection()
        return (await connection.execute(statement)).all()

    async def add(self, instance: ModelT) -> ModelT:
        await self.storage.seal(instance)
        return await super().add(instance)

    async def save(self, instance: ModelT, *, reseal: bool = False) -> ModelT:
        await self.storage.seal(instance, force=reseal)
        await self.session.flush()
        return instance


class LegalBasisRepository(OrganizationRepository[LegalBasisEntry]):
    """Every setting of a lead's or contact's legal basis, appended, never changed."""

    model = LegalBasisEntry

    async def append(
        self,
        record: Any,
        subject_type: Module,
        *,
        basis: str,
        assessment: str | None,
        set_by_id: uuid.UUID | None,
        set_by_client_id: str | None,
        carried_from_lead_id: uuid.UUID | None = None,
    ) -> LegalBasisEntry:
        """Append a setting and make it the record's current basis, which the record's row
        keeps for listing (the record is written with its own save)."""
        now = utcnow()
        entry = LegalBasisEntry(
            organization_id=self.organization_id,
            subject_type=subject_type.value,
            subject_id=record.id,
            basis=basis,
            assessment=assessment,
            set_by_id=set_by_id,
            set_by_client_id=set_by_client_id,
            set_at=now,
            carried_from_lead_id=carried_from_lead_id,
        )
        await self.add(entry)
        record.legal_basis = basis
        record.legal_basis_set_at = now
        record.legal_basis_set_by_id = set_by_id
        return entry

    async def history(self, subject_type: Module, subject_id: uuid.UUID) -> list[LegalBasisEntry]:
        result = await self.session.execute(
            self.scoped()
            .where(
                LegalBasisEntry.subject_type == subject_type.value,
                LegalBasisEntry.subject_id == subject_id,
            )
            .order_by(LegalBasisEntry.set_at.desc(), LegalBasisEntry.id.desc())
        )
        return list(result.scalars())

    async def delete_for(self, subject_type: Module, subject_id: uuid.UUID) -> None:
        """A purged record takes its legal-basis history along (the assessment is plain text)."""
        await self.session.execute(
            delete(LegalBasisEntry).where(
                LegalBasisEntry.organization_id == self.organization_id,
                LegalBasisEntry.subject_type == subject_type.value,
                LegalBasisEntry.subject_id == subject_id,
            )
        )


class ProcessingLockRepository(OrganizationRepository[SubjectProcessingLock]):
    """The processing locks of an organization's data subjects. The consent and privacy
    features set and lift them; every change of a lead or contact reads them."""

    model = SubjectProcessingLock

    async def of_subject(self, subject_id: uuid.UUID) -> list[SubjectProcessingLock]:
        result = await self.session.execute(
            self.scoped().where(SubjectProcessingLock.subject_id == subject_id)
        )
        return list(result.scalars())

    async def is_restricted(self, subject_id: uuid.UUID) -> bool:
        statement = select(SubjectProcessingLock.subject_id).where(
            SubjectProcessingLock.organization_id == self.organization_id,
            SubjectProcessingLock.subject_id == subject_id,
            SubjectProcessingLock.kind == ProcessingLockKind.RESTRICTED.value,
        )
        return (await self.session.execute(statement)).first() is not None

    async def restricted_page(
        self, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[SubjectProcessingLock]:
        """Restricted data subjects, most recently restricted first, `limit` of them."""
        statement = self.scoped().where(
            SubjectProcessingLock.kind == ProcessingLockKind.RESTRICTED.value
        )
        clause = newest_first_after(
            SubjectProcessingLock.since, SubjectProcessingLock.subject_id, after
        )
        if clause is not None:
            statement = statement.where(clause)
        statement = statement.order_by(
            SubjectProcessingLock.since.desc(), SubjectProcessingLock.subject_id.desc()
        )
        return list((await self.session.execute(statement.limit(limit))).scalars())

    async def set(
        self,
        subject_id: uuid.UUID,
        kind: ProcessingLockKind,
        *,
        reason: str,
        since: datetime,
        request_id: uuid.UUID | None = None,
    ) -> SubjectProcessingLock:
        """Lock or restrict the subject; setting it again says anew why, since when and by
        which request. `reason` is a value-free code (it reaches problem details)."""
        lock = await self.session.get(
            SubjectProcessingLock, (self.organization_id, subject_id, kind.value)
        )
        if lock is None:
            lock = SubjectProcessingLock(
                organization_id=self.organization_id,
                subject_id=subject_id,
                kind=kind.value,
                reason=reason,
                since=since,
                request_id=request_id,
            )
            self.session.add(lock)
        else:
            lock.reason, lock.since, lock.request_id = reason, since, request_id
        await self.session.flush()
        return lock

    async def lift(self, subject_id: uuid.UUID, kind: ProcessingLockKind) -> bool:
        """End the lock of `kind` (another kind stays); False when there was none."""
        result = await self.session.execute(
            delete(SubjectProcessingLock).where(
                SubjectProcessingLock.organization_id == self.organization_id,
                SubjectProcessingLock.subject_id == subject_id,
                SubjectProcessingLock.kind == kind.value,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def expired_in_bin(session: AsyncSession, model: Any, before: Any, limit: int) -> list[Any]:
    """Records of every organization in the bin since before `before` (the worker's purge),
    except those of a locked or restricted data subject: purging is processing too, and a
    restricted subject's data must be kept. They are purged once the lock is lifted."""
    statement = select(model).where(model.deleted_at.is_not(None), model.deleted_at < before)
    if issubclass(model, PersonColumns):
        statement = statement.where(
            ~exists().where(
                SubjectProcessingLock.organization_id == model.organization_id,
                SubjectProcessingLock.subject_id == model.subject_id,
            )
        )
    statement = statement.order_by(model.deleted_at, model.id).limit(limit)
    return list((await session.execute(statement)).scalars())


# -- partner disclosures (GDPR Art. 19) ---------------------------------------------------------

_DISCLOSURES_PER_STATEMENT = 1000


async def add_partner_disclosures(
    session: AsyncSession, rows: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID]], at: datetime
) -> None:
    """Record (organization, client, subject) disclosures; one already there keeps its time."""
    for start in range(0, len(rows), _DISCLOSURES_PER_STATEMENT):
        values = [
            {
                "organization_id": organization_id,
                "client_id": client_id,
                "subject_id": subject_id,
                "first_disclosed_at": at,
            }
            for organization_id, client_id, subject_id in rows[
                start : start + _DISCLOSURES_PER_STATEMENT
            ]
        ]
        await session.execute(insert_ignoring_conflicts(session, PartnerDisclosure, values))


async def hold_subjects(
    session: AsyncSession, organization_id: uuid.UUID, subject_ids: Sequence[uuid.UUID]
) -> None:
    """Write-lock the subjects' data keys for the rest of the transaction: a partner's
    disclosure of these subjects that commits meanwhile waits for it, or is refused (see
    :func:`subjects_with_keys`). PostgreSQL: `FOR UPDATE` on the key rows; SQLite, which
    locks the whole database for a writer: an update that changes nothing."""
    if not subject_ids:
        return
    of_subjects = (
        DataKeyRecord.organization_id == organization_id,
        DataKeyRecord.purpose == DataKeyPurpose.SUBJECT.value,
        DataKeyRecord.subject_id.in_(list(subject_ids)),
    )
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(DataKeyRecord.id).where(*of_subjects).with_for_update())
        return
    await session.execute(
        update(DataKeyRecord)
        .where(*of_subjects)
        .values(status=DataKeyRecord.status)
        .execution_options(synchronize_session=False)
    )


async def subjects_with_keys(
    session: AsyncSession,
    organization_id: uuid.UUID,
    subject_ids: Sequence[uuid.UUID],
    *,
    lock: bool = True,
) -> set[uuid.UUID]:
    """Those of the subjects that still have a key (the others were erased). With `lock`, on
    PostgreSQL, the key rows are share-locked without waiting: held by :func:`hold_subjects`,
    the statement fails with lock-not-available."""
    statement = select(DataKeyRecord.subject_id).where(
        DataKeyRecord.organization_id == organization_id,
        DataKeyRecord.purpose == DataKeyPurpose.SUBJECT.value,
        DataKeyRecord.subject_id.in_(list(subject_ids)),
        DataKeyRecord.status != DataKeyStatus.DESTROYED.value,
    )
    if lock and session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(read=True, nowait=True)
    return set((await session.execute(statement)).scalars())


async def partner_clients_shown(
    session: AsyncSession, organization_id: uuid.UUID, subject_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """The partner clients shown any of these subjects' data, first shown first."""
    if not subject_ids:
        return []
    result = await session.execute(
        select(PartnerDisclosure.client_id, PartnerDisclosure.first_disclosed_at)
        .where(
            PartnerDisclosure.organization_id == organization_id,
            PartnerDisclosure.subject_id.in_(list(subject_ids)),
        )
        .order_by(PartnerDisclosure.first_disclosed_at, PartnerDisclosure.client_id)
    )
    return list(dict.fromkeys(client_id for client_id, _ in result.all()))


async def purge_partner_disclosures(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> int:
    """Delete an erased subject's disclosure rows; returns how many."""
    result = await session.execute(
        delete(PartnerDisclosure)
        .where(
            PartnerDisclosure.organization_id == organization_id,
            PartnerDisclosure.subject_id == subject_id,
        )
        .returning(PartnerDisclosure.client_id)
    )
    return len(result.scalars().all())
