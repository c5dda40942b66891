"""OAuth-style scopes, `crm.<module>.<operation>`, as fixed in the public contract."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    LEADS_READ = "crm.leads.read"
    LEADS_WRITE = "crm.leads.write"
    LEADS_DELETE = "crm.leads.delete"
    CONTACTS_READ = "crm.contacts.read"
    CONTACTS_WRITE = "crm.contacts.write"
    CONTACTS_DELETE = "crm.contacts.delete"
    ACCOUNTS_READ = "crm.accounts.read"
    ACCOUNTS_WRITE = "crm.accounts.write"
    ACCOUNTS_DELETE = "crm.accounts.delete"
    CONSENT_READ = "crm.consent.read"
    CONSENT_WRITE = "crm.consent.write"
    PRIVACY_READ = "crm.privacy.read"
    PRIVACY_WRITE = "crm.privacy.write"
    EXPORT = "crm.export"
    ADMIN = "crm.admin"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)
# A signed-in user who is not an administrator gets every scope except administration;
# what they may do on which record is decided by profiles and sharing (a later issue).
STANDARD_USER_SCOPES: frozenset[Scope] = ALL_SCOPES - {Scope.ADMIN}
