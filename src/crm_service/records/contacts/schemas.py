"""Contact bodies: ContactCreate / ContactUpdate / ContactRead, list, search and query."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, Field

from crm_service.kit.schemas import Name, text
from crm_service.records.paging import MAX_LIMIT
from crm_service.records.schemas import (
    LegalBasisSet,
    PersonInput,
    PersonRead,
    PersonSearch,
    QueryPaging,
    ShortText,
)


class ContactCreate(PersonInput):
    last_name: Name
    department: ShortText | None = None
    account_id: uuid.UUID | None = None
    legal_basis: LegalBasisSet | None = None


class ContactUpdate(PersonInput):
    last_name: Name = None  # type: ignore[assignment]  # omit to keep; null refused
    department: ShortText | None = None
    account_id: uuid.UUID | None = None


class ContactRead(PersonRead):
    department: text(100) | None
    account_id: uuid.UUID | None


class ContactList(BaseModel):
    data: Annotated[list[ContactRead], Field(max_length=MAX_LIMIT)]
    next_cursor: text(512) | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class ContactSearch(PersonSearch):
    account_id: uuid.UUID | None = None


class ContactQuery(QueryPaging, ContactSearch):
    """The same filters in the query string."""
