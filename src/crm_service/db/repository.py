"""Repository base: every statement starts from the caller's organization."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from crm_service.db.base import Base

ModelT = TypeVar("ModelT", bound=Base)


def insert_ignoring_conflicts(
    session: AsyncSession,
    model: Any,
    rows: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    index_elements: Sequence[str] | None = None,
) -> Insert:
    """`INSERT ... ON CONFLICT DO NOTHING` in the session's dialect (PostgreSQL or SQLite):
    a row whose key is already there is left as it is, on any instance."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model).values(rows).on_conflict_do_nothing(index_elements=index_elements)


class OrganizationRepository(Generic[ModelT]):
    """SQL for one organization-owned model. Nothing here can reach another organization."""

    model: ClassVar[type[Any]]

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self.session = session
        self.organization_id = organization_id

    def scoped(self) -> Select[ModelT]:
        return select(self.model).where(self.model.organization_id == self.organization_id)

    async def get(self, id_: uuid.UUID) -> ModelT | None:
        result = await self.session.execute(self.scoped().where(self.model.id == id_))
        return result.scalar_one_or_none()

    async def add(self, instance: ModelT) -> ModelT:
        if instance.organization_id != self.organization_id:  # type: ignore[attr-defined]
            raise ValueError("instance belongs to another organization")
        self.session.add(instance)
        await self.session.flush()
        return instance

    async def delete(self, instance: ModelT) -> None:
        await self.session.delete(instance)
        await self.session.flush()
