"""SQL for accounts."""

from __future__ import annotations

from crm_service.kit.modules import Module
from crm_service.records.accounts.models import Account
from crm_service.records.repository import RecordRepository


class AccountRepository(RecordRepository[Account]):
    model = Account
    module = Module.ACCOUNTS
