"""Rules every record module shares: create, read, update with If-Match, delete, list.

A module subclasses :class:`RecordService` to name its model and repository and to check the
references its payload carries (owner, account). Services flush and never commit.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.audit.actions import AuditAction
from crm_service.audit.service import record as audit
from crm_service.auth.repository import UserRepository
from crm_service.db.base import Base
from crm_service.errors import FieldProblem, Gone, NotFound, ValidationFailed
from crm_service.records.etag import check_if_match
from crm_service.records.legal_basis import legal_basis_history, set_legal_basis
from crm_service.records.models import LegalBasisEntry, Module, PersonColumns, SourceChannel
from crm_service.records.paging import Page, PageRequest
from crm_service.records.repository import RecordRepository
from crm_service.records.schemas import LegalBasisSet
from crm_service.security.principal import Principal

ModelT = TypeVar("ModelT", bound=Base)

# Keys of a list query that are paging, not filters.
PAGING_KEYS = frozenset({"limit", "cursor", "sort"})


def unknown_reference(field: str, what: str) -> ValidationFailed:
    return ValidationFailed(
        f"`{field}` names no {what} of this organization.",
        errors=[FieldProblem(field=f"body.{field}", rule="not_found", message=f"no such {what}")],
    )


class RecordService(Generic[ModelT]):
    module: ClassVar[Module]
    model: ClassVar[type[Any]]
    repository_class: ClassVar[type[RecordRepository[Any]]]
    noun: ClassVar[str]

    def repository(self, session: AsyncSession, principal: Principal) -> RecordRepository[ModelT]:
        return self.repository_class(session, principal.organization_id)

    async def check_references(
        self, *, session: AsyncSession, principal: Principal, values: dict[str, Any]
    ) -> None:
        """Every id a payload carries must name something of the caller's organization."""
        owner_id = values.get("owner_id")
        if owner_id is not None:
            owner = await UserRepository(session, principal.organization_id).get(owner_id)
            if owner is None or not owner.is_active:
                raise unknown_reference("owner_id", "active user")

    def check_editable(self, record: Any) -> None:
        """Raise when the record's state forbids changes (a converted lead, say)."""

    def source_of(self, principal: Principal) -> dict[str, Any]:
        """Where a record created through the API by `principal` came from."""
        if principal.client_id is not None:
            return {"source_channel": SourceChannel.API.value, "source_client_id": principal.client_id}
        return {"source_channel": SourceChannel.MANUAL.value}

    async def create(
        self,
        *,
        session: AsyncSession,
        principal: Principal,
        payload: BaseModel,
        source: dict[str, Any] | None = None,
    ) -> ModelT:
        values = payload.model_dump(exclude={"legal_basis"})
        await self.check_references(session=session, principal=principal, values=values)
        if values.get("owner_id") is None:
            values["owner_id"] = principal.user_id
        if issubclass(self.model, PersonColumns):
            values.update(source if source is not None else self.source_of(principal))
            values["subject_id"] = uuid.uuid4()
        record = self.model(
            id=uuid.uuid4(),
            organization_id=principal.organization_id,
            created_by_id=principal.user_id,
            **values,
        )
        if isinstance(record, PersonColumns):
            record.mark_new_subject()
        legal_basis: LegalBasisSet | None = getattr(payload, "legal_basis", None)
        if legal_basis is not None:
            # Before the insert, so the record is written once, at version 1.
            await set_legal_basis(
                session=session,
                principal=principal,
                subject_type=self.module,
                record=record,
                payload=legal_basis,
            )
        created = await self.repository(session, principal).add(record)
        self.audit_created(session, principal, created, values)
        return created

    def audit_created(
        self, session: AsyncSession, principal: Principal, record: Any, values: dict[str, Any]
    ) -> None:
        audit(
            session,
            principal,
            AuditAction.RECORD_CREATED,
            target_type=self.noun,
            target_id=record.id,
            fields=[name for name, value in values.items() if value is not None],
        )

    async def get(
        self, *, session: AsyncSession, principal: Principal, record_id: uuid.UUID
    ) -> ModelT:
        record = await self.repository(session, principal).get(record_id)
        if record is None:
            raise NotFound(f"No such {self.noun}.")
        if record.erased:
            raise Gone(f"This {self.noun}'s data subject was erased.")
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
        record = await self.get(session=session, principal=principal, record_id=record_id)
        check_if_match(if_match, record.version)  # type: ignore[attr-defined]
        changes = payload.model_dump(exclude_unset=True)
        self.check_editable(record)
        await self.check_references(session=session, principal=principal, values=changes)
        changed = [name for name, value in changes.items() if getattr(record, name) != value]
        for name in changed:
            setattr(record, name, changes[name])
        saved = await self.repository(session, principal).save(record)
        if changed:
            audit(
                session,
                principal,
                AuditAction.RECORD_UPDATED,
                target_type=self.noun,
                target_id=record.id,
                fields=changed,
            )
        return saved

    async def delete(
        self,
        *,
        session: AsyncSession,
        principal: Principal,
        record_id: uuid.UUID,
        if_match: str | None,
    ) -> None:
        record = await self.get(session=session, principal=principal, record_id=record_id)
        check_if_match(if_match, record.version)  # type: ignore[attr-defined]
        await self.repository(session, principal).delete(record)
        audit(session, principal, AuditAction.RECORD_DELETED, target_type=self.noun, target_id=record_id)

    async def list(
        self, *, session: AsyncSession, principal: Principal, query: BaseModel
    ) -> Page:
        values = query.model_dump()
        request = PageRequest(limit=values["limit"], cursor=values["cursor"], sort=values["sort"])
        filters = {key: value for key, value in values.items() if key not in PAGING_KEYS}
        return await self.repository(session, principal).page(filters=filters, request=request)

    async def set_legal_basis(
        self,
        *,
        session: AsyncSession,
        principal: Principal,
        record_id: uuid.UUID,
        payload: LegalBasisSet,
    ) -> LegalBasisEntry:
        record = await self.get(session=session, principal=principal, record_id=record_id)
        entry = await set_legal_basis(
            session=session,
            principal=principal,
            subject_type=self.module,
            record=record,
            payload=payload,
        )
        audit(
            session,
            principal,
            AuditAction.RECORD_UPDATED,
            target_type=self.noun,
            target_id=record_id,
            fields=["legal_basis"],
        )
        return entry

    async def legal_basis_history(
        self, *, session: AsyncSession, principal: Principal, record_id: uuid.UUID
    ) -> list[LegalBasisEntry]:
        await self.get(session=session, principal=principal, record_id=record_id)
        return await legal_basis_history(
            session=session, principal=principal, subject_type=self.module, subject_id=record_id
        )
