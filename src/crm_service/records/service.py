"""Rules every record module shares: create, read, update with If-Match, delete, list, history.

A module subclasses :class:`RecordService` to name its model and repository and to check the
references its payload carries (owner, account). Services flush and never commit. What builds
on these rules lives beside them: sharing (`sharing.py`), the legal basis (`legal_basis.py`)
and the recycle bin (`recycle_bin.py`).

Access control happens here and in the repository: the caller's profile must allow the
operation on the module (403), the record must be visible under the sharing rules (404
otherwise) and, for changes, editable (403). Every change then passes one check,
:meth:`RecordService.check_change`: the data subject's processing lock (423,
`processing.py`) and the module's own rule (a converted lead is closed, 409). What each
response shows of a record, and what the caller may set or filter on, the disclosure policy
decides (`disclosure.py`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access.service import visibility_for
from crm_service.audit.actions import AuditAction
from crm_service.audit.history import HistoryAction, HistoryItem, note_change, read_history
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.auth.repository import UserRepository
from crm_service.db.base import Base, utcnow
from crm_service.errors import FieldProblem, Forbidden, Gone, NotFound, ValidationFailed
from crm_service.kit.modules import Module
from crm_service.privacy.blocklist import audited_refusal
from crm_service.records.disclosure import DisclosurePolicy, FieldDisclosure, Shown, View
from crm_service.records.etag import check_if_match
from crm_service.records.events import RecordEventKind, emit
from crm_service.records.models import PersonColumns, SourceChannel
from crm_service.records.paging import Cursor, Page, PageRequest, RecordSort
from crm_service.records.processing import Change, Read, check_processable, check_readable
from crm_service.records.repository import LegalBasisRepository, RecordRepository
from crm_service.records.schemas import LegalBasisSet
from crm_service.security.permissions import Operation
from crm_service.security.principal import Principal

ModelT = TypeVar("ModelT", bound=Base)

# Keys of a list query that are paging, not filters.
PAGING_KEYS = frozenset({"limit", "cursor", "sort"})


@dataclass(frozen=True)
class Origin:
    """Whom a new lead or contact is about and where they came from: a new data subject, or
    one the CRM already holds (a converted lead's, with its key and its source)."""

    subject_id: uuid.UUID
    new_subject: bool
    source: dict[str, Any]  # source_channel, source_client_id, source_batch_id, source_form


def unknown_reference(field: str, what: str) -> ValidationFailed:
    return ValidationFailed(
        f"`{field}` names no {what} of this organization.",
        errors=[FieldProblem(field=f"body.{field}", rule="not_found", message=f"no such {what}")],
    )


def require_operation(principal: Principal, module: Module, operation: Operation) -> None:
    """403 unless the caller's profile allows `operation` on `module` (partner clients are
    limited by their scopes instead)."""
    if principal.permissions is not None and not principal.permissions.can(module, operation):
        raise Forbidden(f"Your profile does not allow {operation.value} on {module.value}.")


class RecordService(Generic[ModelT]):
    module: ClassVar[Module]
    model: ClassVar[type[Any]]
    repository_class: ClassVar[type[RecordRepository[Any]]]

    @property
    def noun(self) -> str:
        return self.module.noun

    async def repository(
        self, session: AsyncSession, principal: Principal, module: Module | None = None
    ) -> RecordRepository[ModelT]:
        """The module's repository, limited to what the caller may see."""
        visibility = await visibility_for(session, principal, module or self.module)
        return self.repository_class(session, principal.organization_id, visibility)

    # -- access checks ------------------------------------------------------------------

    async def check_references(
        self, *, session: AsyncSession, principal: Principal, values: dict[str, Any]
    ) -> None:
        """Every id a payload carries must name something of the caller's organization."""
        owner_id = values.get("owner_id")
        if owner_id is not None:
            owner = await UserRepository(session, principal.organization_id).get(owner_id)
            if owner is None or not owner.is_active:
                raise unknown_reference("owner_id", "active user")

    def check_state(self, record: Any, change: Change) -> None:
        """Raise when the record's own state forbids `change` (a converted lead, say)."""

    async def check_change(
        self, session: AsyncSession, record: Any, change: Change, *, ends_consent_lock: bool = False
    ) -> None:
        """The one check every change of a record passes, whatever path it takes: the data
        subject's processing lock, then the module's rule for the record's state. Only a
        legal-basis change may end a consent lock (see `legal_basis.py`)."""
        await check_processable(
            session,
            record,
            noun=self.noun,
            ends_consent_lock=ends_consent_lock and change is Change.LEGAL_BASIS,
        )
        self.check_state(record, change)

    def origin_of(self, principal: Principal) -> Origin:
        """A new data subject, entered through the API by `principal`."""
        if principal.client_id is not None:
            source = {
                "source_channel": SourceChannel.API.value,
                "source_client_id": principal.client_id,
            }
        else:
            source = {"source_channel": SourceChannel.MANUAL.value}
        return Origin(subject_id=uuid.uuid4(), new_subject=True, source=source)

    # -- operations -----------------------------------------------------------------------

    async def create(
        self, *, session: AsyncSession, principal: Principal, payload: BaseModel
    ) -> ModelT:
        require_operation(principal, self.module, Operation.CREATE)
        repository = await self.repository(session, principal)
        policy = DisclosurePolicy(session, principal)
        values = payload.model_dump(exclude={"legal_basis"})
        await policy.refuse_hidden_input(
            repository.storage, [name for name, value in values.items() if value is not None]
        )
        await self.check_references(session=session, principal=principal, values=values)
        with audited_refusal(principal, target_type=self.noun):
            created = await self.insert(
                session=session,
                principal=principal,
                repository=repository,
                values=values,
                legal_basis=getattr(payload, "legal_basis", None),
            )
        # The caller just sent these values: showing them back is no reveal.
        await policy.show(View.RECORD, Shown(repository, [created], sent=frozenset(values)))
        return created

    async def insert(
        self,
        *,
        session: AsyncSession,
        principal: Principal,
        repository: RecordRepository[ModelT],
        values: dict[str, Any],
        origin: Origin | None = None,
        legal_basis: LegalBasisSet | None = None,
        carried_from_lead_id: uuid.UUID | None = None,
        actor: Actor | None = None,
    ) -> ModelT:
        """Write a new record: the one way one is made, so each gets its owner (the caller
        unless given), its data subject and origin (a lead or contact: `origin`, else a new
        subject entered by the caller), its legal basis, a `record.created` event and a first
        history entry naming exactly the fields set. Callers check the values beforehand and
        disclose the record they show. `actor` names who acted when it is not the principal
        (the system, confirming a web form for its submitter)."""
        values = dict(values)
        if values.get("owner_id") is None:
            values["owner_id"] = principal.user_id
        # What was set (and the owner): the fields audit and history name.
        provided = {name: value for name, value in values.items() if value is not None}
        if issubclass(self.model, PersonColumns):
            origin = origin or self.origin_of(principal)
            values.update(origin.source, subject_id=origin.subject_id)
        record = self.model(
            id=uuid.uuid4(),
            organization_id=principal.organization_id,
            created_by_id=principal.user_id,
            **values,
        )
        if isinstance(record, PersonColumns) and origin is not None and origin.new_subject:
            record.mark_new_subject()
        if legal_basis is not None:
            # Before the insert, so the record is written once, at version 1.
            await LegalBasisRepository(session, principal.organization_id).append(
                record,
                self.module,
                basis=legal_basis.basis.value,
                assessment=legal_basis.assessment,
                set_by_id=principal.user_id,
                set_by_client_id=principal.client_id,
                carried_from_lead_id=carried_from_lead_id,
            )
        created = await repository.add(record)
        await emit(session, self.module, RecordEventKind.CREATED, created)
        audit(
            session,
            actor or principal,
            AuditAction.RECORD_CREATED,
            target_type=self.noun,
            target_id=created.id,  # type: ignore[attr-defined]  # every record model has an id
            fields=list(provided),
        )
        await self.note(
            session,
            actor or principal,
            repository,
            created,
            HistoryAction.CREATED,
            {name: (None, value) for name, value in provided.items()},
        )
        return created

    async def note(
        self,
        session: AsyncSession,
        principal: Principal | Actor,
        repository: RecordRepository[Any],
        record: Any,
        action: HistoryAction,
        changes: dict[str, tuple[Any, Any]],
    ) -> None:
        """Append to the record's history (values sealed under the record's key)."""
        await note_change(
            session,
            principal if isinstance(principal, Actor) else Actor.of(principal),
            storage=repository.storage,
            record=record,
            module=self.module.value,
            action=action,
            changes=changes,
        )

    async def visible(self, repository: RecordRepository[Any], record_id: uuid.UUID) -> ModelT:
        """A live record the caller may see (else 404) whose subject was not erased (else 410)."""
        record = await repository.get(record_id)
        if record is None:
            raise NotFound(f"No such {self.noun}.")
        if record.erased:
            raise Gone(f"This {self.noun}'s data subject was erased.")
        return record

    async def readable(
        self,
        session: AsyncSession,
        principal: Principal,
        repository: RecordRepository[Any],
        record_id: uuid.UUID,
        read: Read,
    ) -> ModelT:
        """A record whose data `read` discloses: one the caller may see (see `visible`) and,
        when its data subject is restricted, the caller holds `view_restricted` (else 423;
        audited when they do)."""
        record = await self.visible(repository, record_id)
        await check_readable(session, principal, record, noun=self.noun, read=read)
        return record

    async def get_for_change(
        self,
        *,
        session: AsyncSession,
        principal: Principal,
        record_id: uuid.UUID,
        change: Change,
        ends_consent_lock: bool = False,
    ) -> tuple[ModelT, RecordRepository[ModelT]]:
        """A record the caller may see (else 404) and change (else 403) that `change` may
        change (see `check_change`); undisclosed: callers disclose what they show."""
        require_operation(principal, self.module, change.operation)
        repository = await self.repository(session, principal)
        record = await self.visible(repository, record_id)
        if not await repository.writable(record_id):
            raise Forbidden(f"The sharing rules do not let you change this {self.noun}.")
        await self.check_change(session, record, change, ends_consent_lock=ends_consent_lock)
        return record, repository

    async def get(
        self, *, session: AsyncSession, principal: Principal, record_id: uuid.UUID
    ) -> ModelT:
        require_operation(principal, self.module, Operation.READ)
        repository = await self.repository(session, principal)
        record = await self.readable(session, principal, repository, record_id, Read.RECORD)
        await DisclosurePolicy(session, principal).show(View.RECORD, Shown(repository, [record]))
        return record

    async def update(
        self,
        *,
        session: AsyncSession,
        principal: Principal,
        record_id: uuid.UUID,
        payload: BaseModel,
        if_match: str | None,
    ) -> ModelT:
        record, repository = await self.get_for_change(
            session=session, principal=principal, record_id=record_id, change=Change.UPDATE
        )
        check_if_match(if_match, record.version)  # type: ignore[attr-defined]
        changes = payload.model_dump(exclude_unset=True)
        policy = DisclosurePolicy(session, principal)
        await policy.refuse_hidden_input(repository.storage, changes)
        await self.check_references(session=session, principal=principal, values=changes)
        before = {name: getattr(record, name) for name in changes}
        changed = [name for name, value in changes.items() if before[name] != value]
        for name in changed:
            setattr(record, name, changes[name])
        record_id = record.id  # type: ignore[attr-defined]  # every record model has an id
        with audited_refusal(principal, target_type=self.noun, target_id=record_id):
            saved = await repository.save(record)
        if changed:
            await self.note(
                session,
                principal,
                repository,
                saved,
                HistoryAction.UPDATED,
                {name: (before[name], changes[name]) for name in changed},
            )
        if changed:
            await emit(session, self.module, RecordEventKind.UPDATED, saved)
            audit(
                session,
                principal,
                AuditAction.RECORD_UPDATED,
                target_type=self.noun,
                target_id=record.id,  # type: ignore[attr-defined]  # every record model has an id
                fields=changed,
            )
        await policy.show(View.RECORD, Shown(repository, [saved], sent=frozenset(changes)))
        return saved

    async def delete(
        self,
        *,
        session: AsyncSession,
        principal: Principal,
        record_id: uuid.UUID,
        if_match: str | None,
    ) -> None:
        record, repository = await self.get_for_change(
            session=session, principal=principal, record_id=record_id, change=Change.DELETE
        )
        check_if_match(if_match, record.version)  # type: ignore[attr-defined]
        record.deleted_at = utcnow()  # type: ignore[attr-defined]
        record.deleted_by_id = principal.user_id  # type: ignore[attr-defined]
        await repository.save(record)
        await emit(session, self.module, RecordEventKind.DELETED, record)
        await self.note(session, principal, repository, record, HistoryAction.DELETED, {})
        audit(
            session,
            principal,
            AuditAction.RECORD_DELETED,
            target_type=self.noun,
            target_id=record_id,
        )

    async def history(
        self,
        *,
        session: AsyncSession,
        principal: Principal,
        record_id: uuid.UUID,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[HistoryItem], FieldDisclosure, str | None]:
        """The record's changes, newest first, as the disclosure policy lets the caller see
        them; what it masked and withheld; the next cursor."""
        require_operation(principal, self.module, Operation.READ)
        repository = await self.repository(session, principal)
        # An erased subject's record still shows that its history existed (values erased).
        record = await repository.get(record_id)
        if record is None:
            raise NotFound(f"No such {self.noun}.")
        await check_readable(session, principal, record, noun=self.noun, read=Read.HISTORY)
        after = None
        if cursor is not None:
            decoded = Cursor.decode(cursor, RecordSort.CREATED_DESC)
            after = (decoded.value, decoded.id)
        items = await read_history(
            session,
            storage=repository.storage,
            organization_id=principal.organization_id,
            module=self.module.value,
            record_id=record_id,
            after=after,
            limit=limit,
        )
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            last = items[-1].entry
            next_cursor = Cursor(RecordSort.CREATED_DESC, last.occurred_at, last.id).encode()
        disclosure = await DisclosurePolicy(session, principal).show_history(
            repository,
            record_id,
            items,
            # An erased subject's history shows no values: nothing of theirs is disclosed.
            subject_id=None
            if getattr(record, "erased", False)
            else getattr(record, "subject_id", None),
        )
        return items, disclosure, next_cursor

    async def list(self, *, session: AsyncSession, principal: Principal, query: BaseModel) -> Page:
        require_operation(principal, self.module, Operation.READ)
        repository = await self.repository(session, principal)
        values = query.model_dump()
        request = PageRequest(limit=values["limit"], cursor=values["cursor"], sort=values["sort"])
        filters = {key: value for key, value in values.items() if key not in PAGING_KEYS}
        used = [name for name, value in filters.items() if value is not None]
        policy = DisclosurePolicy(session, principal)
        await policy.refuse_hidden_input(
            repository.storage,
            [field for name in used for field in repository.filter_aliases.get(name, (name,))],
        )
        page = await repository.page(filters=filters, request=request)
        await policy.show(View.LIST, Shown(repository, page.items))
        return page
