"""SQL for contacts."""

from __future__ import annotations

from crm_service.kit.modules import Module
from crm_service.records.contacts.models import Contact
from crm_service.records.repository import RecordRepository


class ContactRepository(RecordRepository[Contact]):
    model = Contact
    module = Module.CONTACTS
    filter_aliases = {"phone": ("phone", "mobile")}
