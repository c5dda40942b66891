"""SQL shared by the record modules: organization-scoped keyset pages with exact filters."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func

from crm_service.db.base import Base
from crm_service.db.repository import OrganizationRepository
from crm_service.records.paging import Page, PageRequest, apply_keyset, to_page

ModelT = TypeVar("ModelT", bound=Base)


class RecordRepository(OrganizationRepository[ModelT]):
    """Adds listing; subclasses say how each filter maps to SQL in :meth:`filter_clauses`."""

    def filter_clauses(self, filters: dict[str, Any]) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        for name, value in filters.items():
            if value is None:
                continue
            column = getattr(self.model, name)
            if name == "email":
                clauses.append(func.lower(column) == value.strip().lower())
            else:
                clauses.append(column == value)
        return clauses

    async def page(self, *, filters: dict[str, Any], request: PageRequest) -> Page:
        statement = self.scoped().where(*self.filter_clauses(filters))
        result = await self.session.execute(apply_keyset(statement, self.model, request))
        return to_page(list(result.scalars()), request)
