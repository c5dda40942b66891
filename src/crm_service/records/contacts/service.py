"""Contact rules: a contact's account must be one of the organization's accounts."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access.service import visibility_for
from crm_service.kit.modules import Module
from crm_service.records.accounts.repository import AccountRepository
from crm_service.records.contacts.models import Contact
from crm_service.records.contacts.repository import ContactRepository
from crm_service.records.service import RecordService, unknown_reference
from crm_service.security.principal import Principal


class ContactService(RecordService[Contact]):
    module = Module.CONTACTS
    model = Contact
    repository_class = ContactRepository

    async def check_references(
        self, *, session: AsyncSession, principal: Principal, values: dict[str, Any]
    ) -> None:
        await super().check_references(session=session, principal=principal, values=values)
        account_id = values.get("account_id")
        if account_id is not None:
            visibility = await visibility_for(session, principal, Module.ACCOUNTS)
            accounts = AccountRepository(session, principal.organization_id, visibility)
            if await accounts.get(account_id) is None:
                raise unknown_reference("account_id", "account")


contacts = ContactService()
