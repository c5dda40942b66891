"""The Account model. Its sealed values are under the organization's key: a company is no
one data subject."""

from __future__ import annotations

from crm_service.db.base import Base
from crm_service.kit.modules import Module
from crm_service.records.fields import CATALOG
from crm_service.records.models import RecordColumns, sealed_columns


class Account(
    RecordColumns,
    sealed_columns((spec.name, spec.index) for spec in CATALOG[Module.ACCOUNTS]),
    Base,
):
    __tablename__ = "accounts"
