"""The record modules: the names every feature, and the permissions, speak of."""

from __future__ import annotations

from enum import StrEnum


class Module(StrEnum):
    LEADS = "leads"
    CONTACTS = "contacts"
    ACCOUNTS = "accounts"

    @property
    def noun(self) -> str:
        """One record of the module, as audit events name its type: lead, contact, account."""
        return self.value.removesuffix("s")
