"""What an audit event can say happened. Targets are named by type and id, fields by name."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    # Records (target_type is the module: lead, contact, account)
    RECORD_CREATED = "record.created"
    RECORD_UPDATED = "record.updated"
    RECORD_DELETED = "record.deleted"  # moved to the recycle bin
    RECORD_RESTORED = "record.restored"
    RECORD_PURGED = "record.purged"
    RECORD_CONVERTED = "record.converted"
    RECORD_SENSITIVE_REVEALED = "record.sensitive_revealed"
    RECORD_SHARED = "record.shared"
    RECORD_UNSHARED = "record.unshared"
    RECORDS_EXPORTED = "records.exported"  # fields named, rows counted in `reason`
    # A restricted subject's record read by a holder of `view_restricted` (`reason`: what)
    RECORD_RESTRICTED_READ = "record.restricted_read"
    # Sign-in
    LOGIN_SUCCEEDED = "auth.login_succeeded"
    LOGIN_FAILED = "auth.login_failed"
    SECOND_FACTOR_FAILED = "auth.second_factor_failed"
    LOCKED_OUT = "auth.locked_out"
    IP_BLOCKED = "auth.ip_blocked"
    LOGGED_OUT = "auth.logged_out"
    SESSION_ENDED = "auth.session_ended"
    SSO_LOGIN_SUCCEEDED = "auth.sso_login_succeeded"
    SSO_LOGIN_REFUSED = "auth.sso_login_refused"
    # Users
    USER_CREATED = "user.created"
    USER_INVITED = "user.invited"  # POST /v1/users: an invitation mailed to the address
    USER_INVITATION_ACCEPTED = "user.invitation_accepted"
    USER_UPDATED = "user.updated"
    USER_PASSWORD_CHANGED = "user.password_changed"
    USER_SESSIONS_ENDED = "user.sessions_ended"
    USER_SIGN_IN_UNLOCKED = "user.sign_in_unlocked"
    USER_MFA_ENROLLED = "user.mfa_enrolled"
    USER_MFA_DISABLED = "user.mfa_disabled"
    USER_RECOVERY_CODES_REPLACED = "user.recovery_codes_replaced"
    USER_IDENTITY_LINKED = "user.identity_linked"
    # Access control
    PROFILE_CREATED = "profile.created"
    PROFILE_UPDATED = "profile.updated"
    PROFILE_DELETED = "profile.deleted"
    ROLE_CREATED = "role.created"
    ROLE_UPDATED = "role.updated"
    ROLE_DELETED = "role.deleted"
    GROUP_CREATED = "group.created"
    GROUP_UPDATED = "group.updated"
    GROUP_DELETED = "group.deleted"
    DELEGATION_REFUSED = "access.delegation_refused"  # a grant beyond the caller's own rights
    # Organization settings
    ORGANIZATION_CREATED = "organization.created"
    FIELDS_CLASSIFIED = "settings.fields_classified"
    IP_ALLOWLIST_CHANGED = "settings.ip_allowlist_changed"
    SECURITY_CHANGED = "settings.security_changed"
    SSO_CONFIGURED = "settings.sso_configured"
    SSO_REMOVED = "settings.sso_removed"
    SHARING_CHANGED = "settings.sharing_changed"
    # An organization's own mail template (target_type mail_template, target_id `kind.language`;
    # `fields` the parts stored or removed, never their text)
    MAIL_TEMPLATE_SET = "settings.mail_template_set"
    MAIL_TEMPLATE_REMOVED = "settings.mail_template_removed"
    # Data-subject rights (target_type erasure: the receipt; blocklist: the entry)
    SUBJECT_ERASED = "privacy.subject_erased"
    BLOCKLIST_ENTRY_REMOVED = "privacy.blocklist_entry_removed"
    BLOCKLIST_REFUSED = "privacy.blocklist_refused"  # an erased email or phone entered again
    # An access or portability package left the CRM (`target_id` the data subject; format
    # and channel in `reason`, the kinds of data in `fields`; never a value)
    PACKAGE_DISCLOSED = "privacy.package_disclosed"
    # GDPR Art. 18 (target_type data_subject: the subject id). A lift's `reason` says whether
    # the subject was told first: subject_told or subject_unreachable (no email).
    PROCESSING_RESTRICTED = "privacy.processing_restricted"
    RESTRICTION_LIFTED = "privacy.restriction_lifted"
    BACKUP_RESTORED = "backup.restored"
    # Privacy requests (target_type privacy_request; `reason` a value-free code)
    PRIVACY_REQUEST_FILED = "privacy.request_filed"
    PRIVACY_REQUEST_VERIFIED = "privacy.request_verified"
    PRIVACY_REQUEST_EXTENDED = "privacy.request_extended"
    PRIVACY_REQUEST_COMPLETED = "privacy.request_completed"
    PRIVACY_REQUEST_REJECTED = "privacy.request_rejected"
    PRIVACY_RECIPIENTS_TOLD = "privacy.recipients_told"  # Art. 19: ids in target_ids
    # Consent (target_type consent_purpose, lead/contact, consent_request, webform)
    CONSENT_PURPOSE_CREATED = "consent.purpose_created"
    CONSENT_RECORDED = "consent.recorded"
    CONSENT_RECEIPT_ISSUED = "consent.receipt_issued"
    CONSENT_REQUEST_CREATED = "consent.request_created"
    CONSENT_REQUEST_ANSWERED = "consent.request_answered"
    CONSENT_REQUEST_REMINDED = "consent.request_reminded"
    CONSENT_REQUEST_NO_RESPONSE = "consent.request_no_response"
    PROCESSING_LOCKED = "consent.processing_locked"
    PROCESSING_UNLOCKED = "consent.processing_unlocked"
    WEBFORM_CREATED = "webform.created"
    WEBFORM_UPDATED = "webform.updated"
    WEBFORM_SUBMITTED = "webform.submitted"
    WEBFORM_CONFIRMED = "webform.confirmed"
    WEBFORM_SUBMISSIONS_PURGED = "webform.submissions_purged"
    # Mail
    MAIL_REVEALED = "mail.revealed"  # an operator opened a queued message (`outbox show`)
    # Partner clients (target_type oauth_client)
    OAUTH_CLIENT_CREATED = "oauth_client.created"
    OAUTH_CLIENT_UPDATED = "oauth_client.updated"
    OAUTH_CLIENT_SECRET_ROTATED = "oauth_client.secret_rotated"
    OAUTH_CLIENT_DELETED = "oauth_client.deleted"
    OAUTH_TOKEN_ISSUED = "oauth.token_issued"
    OAUTH_TOKEN_REFUSED = "oauth.token_refused"
    OAUTH_TOKEN_REVOKED = "oauth.token_revoked"
    COMPLIANCE_CHANGED = "settings.compliance_changed"  # `fields`: the channels changed
    # Webhooks (target_type webhook_endpoint)
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_UPDATED = "webhook.updated"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated"
    WEBHOOK_DISABLED = "webhook.disabled"  # by the worker: 410 or sustained failure
    WEBHOOK_REDELIVERED = "webhook.redelivered"
    # The privacy portal (actor_type `subject`: the person who proved their email address)
    PORTAL_SIGNED_IN = "portal.signed_in"
    PORTAL_SIGNED_OUT = "portal.signed_out"
    PORTAL_DATA_DOWNLOADED = "portal.data_downloaded"
    # Keys and the log itself
    KEYS_ROTATED = "keys.rotated"
    MASTER_KEY_ROTATED = "keys.master_rotated"
    AUDIT_PURGED = "audit.purged"
    AUDIT_LOG_STARTED = "audit.log_started"  # an organization older than the audit log


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"  # wrong credentials, refused sign-in
    DENIED = "denied"  # blocked by a rule (IP allowlist, lock-out)
