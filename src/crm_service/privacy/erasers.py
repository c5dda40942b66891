"""What other features hold of a data subject, erased with them.

Registered in one place, and imported by every path that erases (the privacy service and
`backup restore`'s replay of the forget-log), so no process erases a subject but leaves their
queued mail or webhook events behind.
"""

from crm_service.integrations.webhooks import purge_subject_webhook_events
from crm_service.mail.outbox import purge_subject_mail
from crm_service.privacy.erasure import register_subject_eraser
from crm_service.privacy.package import purge_subject_packages
from crm_service.records.repository import purge_partner_disclosures

register_subject_eraser(purge_subject_mail, name="queued_mail")
register_subject_eraser(purge_subject_webhook_events, name="queued_webhook_events")
register_subject_eraser(purge_subject_packages, name="stored_packages")
register_subject_eraser(purge_partner_disclosures, name="partner_disclosures")
