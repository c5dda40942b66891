"""Every ORM model, imported in one place so foreign keys between features resolve.

The app (`main.py`) and the CLI import this before touching the database.
"""

from crm_service.access.models import Group, GroupMember, Profile, RecordShare, Role, SharingDefault
from crm_service.audit.models import AuditChain, AuditEvent, RecordHistoryEntry
from crm_service.auth.models import (
    AuthSession,
    IdentityProvider,
    MfaChallenge,
    RecoveryCode,
    SsoAttempt,
    TotpCredential,
    User,
    UserIdentity,
    UserInvitation,
)
from crm_service.consent.models import (
    ConsentEvent,
    ConsentLink,
    ConsentPurpose,
    ConsentRequest,
    ConsentSigningKey,
    PublicFormCounter,
    Webform,
    WebformSubmission,
    WebformVersion,
)
from crm_service.crypto.models import DataKeyRecord
from crm_service.db.tenancy import Organization
from crm_service.integrations.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from crm_service.jobs.models import WorkerJob
from crm_service.mail.models import MailTemplate, OutboxMessage
from crm_service.oauth.models import OAuthClient, OAuthToken, UsedClientAssertion
from crm_service.orgs.models import ComplianceSettings, FieldClassification, IpAllowlist
from crm_service.portal.models import PortalSession, PortalSignIn
from crm_service.privacy.models import (
    BlocklistEntry,
    ErasureReceipt,
    PrivacyRequest,
    PrivacyRequestSubject,
)
from crm_service.privacy.package_models import StoredPackagePart
from crm_service.records.accounts.models import Account
from crm_service.records.contacts.models import Contact
from crm_service.records.leads.models import Lead
from crm_service.records.models import LegalBasisEntry, SubjectProcessingLock

__all__ = [
    "Account",
    "AuditChain",
    "AuditEvent",
    "Group",
    "GroupMember",
    "Profile",
    "RecordHistoryEntry",
    "RecordShare",
    "Role",
    "SharingDefault",
    "AuthSession",
    "BlocklistEntry",
    "PrivacyRequest",
    "PrivacyRequestSubject",
    "ErasureReceipt",
    "ComplianceSettings",
    "ConsentEvent",
    "ConsentLink",
    "ConsentPurpose",
    "ConsentRequest",
    "ConsentSigningKey",
    "Contact",
    "PublicFormCounter",
    "Webform",
    "WebformSubmission",
    "WebformVersion",
    "DataKeyRecord",
    "FieldClassification",
    "IdentityProvider",
    "IpAllowlist",
    "Lead",
    "LegalBasisEntry",
    "MailTemplate",
    "MfaChallenge",
    "OAuthClient",
    "OAuthToken",
    "Organization",
    "OutboxMessage",
    "PortalSession",
    "PortalSignIn",
    "RecoveryCode",
    "SsoAttempt",
    "StoredPackagePart",
    "SubjectProcessingLock",
    "TotpCredential",
    "User",
    "UserIdentity",
    "UserInvitation",
    "UsedClientAssertion",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WorkerJob",
]
