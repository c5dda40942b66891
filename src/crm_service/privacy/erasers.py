"""What other features hold of a data subject, erased with them.

Registered in one place, and imported by every path that erases (the privacy service and
`backup restore`'s replay of the forget-log), so no process erases a subject but leaves their
queued mail or webhook events behind.
"""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.consent.webforms import drop_pending_of
from crm_service.crypto.blind_index import IndexKind
from crm_service.integrations.webhooks import purge_subject_webhook_events
from crm_service.mail.outbox import purge_subject_mail
from crm_service.portal.repository import end_visits_of
from crm_service.privacy.erasure import register_subject_eraser
from crm_service.privacy.package import purge_subject_packages
from crm_service.privacy.repository import subject_rows
from crm_service.records.repository import purge_partner_disclosures


async def _emails_of(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> list[str]:
    """The blind indexes of the subject's email addresses (read before their records are
    emptied)."""
    return sorted(
        {
            value
            for row in await subject_rows(session, organization_id, subject_id)
            for kind, value in row.identifiers
            if kind == IndexKind.EMAIL.value
        }
    )


async def end_portal_visits(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> int:
    """The portal sessions and sign-ins of the subject's addresses: a session keeps its
    address under the organization's key."""
    return await end_visits_of(
        session, organization_id, await _emails_of(session, organization_id, subject_id)
    )


async def drop_pending_submissions(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> int:
    """Web-form submissions from the subject's addresses still waiting for their double
    opt-in: each is sealed under a key of its own, which the subject's erasure does not
    reach."""
    return await drop_pending_of(
        session, organization_id, await _emails_of(session, organization_id, subject_id)
    )


register_subject_eraser(purge_subject_mail, name="queued_mail")
register_subject_eraser(purge_subject_webhook_events, name="queued_webhook_events")
register_subject_eraser(purge_subject_packages, name="stored_packages")
register_subject_eraser(purge_partner_disclosures, name="partner_disclosures")
register_subject_eraser(end_portal_visits, name="portal_sessions")
register_subject_eraser(drop_pending_submissions, name="pending_webform_submissions")
