"""The Account model. Its sealed values are under the organization's key: a company is no
one data subject."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_service.db.base import Base
from crm_service.kit.modules import Module
from crm_service.records.fields import CATALOG
from crm_service.records.models import RecordColumns, sealed_columns

if TYPE_CHECKING:
    # The sealed columns are made from the field catalogue at import; to a type checker they
    # are a sealed record with dynamic field attributes.
    from crm_service.records.models import SealedColumns

    _AccountSealed = SealedColumns
else:
    _AccountSealed = sealed_columns((spec.name, spec.index) for spec in CATALOG[Module.ACCOUNTS])


class Account(
    RecordColumns,
    _AccountSealed,
    Base,
):
    __tablename__ = "accounts"
