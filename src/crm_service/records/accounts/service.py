"""Account rules."""

from __future__ import annotations

from crm_service.kit.modules import Module
from crm_service.records.accounts.models import Account
from crm_service.records.accounts.repository import AccountRepository
from crm_service.records.service import RecordService


class AccountService(RecordService[Account]):
    module = Module.ACCOUNTS
    model = Account
    repository_class = AccountRepository


accounts = AccountService()
