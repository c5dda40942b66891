"""SQL for leads."""

from __future__ import annotations

from crm_service.kit.modules import Module
from crm_service.records.leads.models import Lead
from crm_service.records.repository import RecordRepository


class LeadRepository(RecordRepository[Lead]):
    model = Lead
    module = Module.LEADS
    filter_aliases = {"phone": ("phone", "mobile")}
