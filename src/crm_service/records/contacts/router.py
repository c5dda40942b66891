"""HTTP for contacts: /v1/contacts."""

from __future__ import annotations

from crm_service.records.contacts.schemas import (
    ContactCreate,
    ContactList,
    ContactQuery,
    ContactRead,
    ContactSearch,
    ContactUpdate,
)
from crm_service.records.contacts.service import contacts
from crm_service.records.router import RecordModuleSpec, build_record_router
from crm_service.security.scopes import Scope

router = build_record_router(
    RecordModuleSpec(
        service=contacts,
        singular="Contact",
        plural="Contacts",
        create_schema=ContactCreate,
        update_schema=ContactUpdate,
        read_schema=ContactRead,
        list_schema=ContactList,
        query_schema=ContactQuery,
        search_schema=ContactSearch,
        read_scope=Scope.CONTACTS_READ,
        write_scope=Scope.CONTACTS_WRITE,
        delete_scope=Scope.CONTACTS_DELETE,
        has_legal_basis=True,
    )
)
