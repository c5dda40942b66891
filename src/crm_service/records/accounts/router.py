"""HTTP for accounts: /v1/accounts."""

from __future__ import annotations

from crm_service.records.accounts.schemas import (
    AccountCreate,
    AccountList,
    AccountQuery,
    AccountRead,
    AccountSearch,
    AccountUpdate,
)
from crm_service.records.accounts.service import accounts
from crm_service.records.router import RecordModuleSpec, build_record_router
from crm_service.security.scopes import Scope

router = build_record_router(
    RecordModuleSpec(
        service=accounts,
        singular="Account",
        plural="Accounts",
        create_schema=AccountCreate,
        update_schema=AccountUpdate,
        read_schema=AccountRead,
        list_schema=AccountList,
        query_schema=AccountQuery,
        search_schema=AccountSearch,
        read_scope=Scope.ACCOUNTS_READ,
        write_scope=Scope.ACCOUNTS_WRITE,
        delete_scope=Scope.ACCOUNTS_DELETE,
        has_legal_basis=False,
    )
)
