"""The consent feature's mail: consent requests, their reminders and double opt-in links,
queued in the outbox in the request's transaction and sealed under the data subject's key."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.consent.models import ConsentPurpose
from crm_service.db.tenancy import Organization
from crm_service.mail.outbox import enqueue


def _purposes(purposes: list[ConsentPurpose]) -> list[dict[str, Any]]:
    return [
        {"name": p.name, "description": p.description, "notice_url": p.notice_url} for p in purposes
    ]


async def _organization_name(session: AsyncSession, organization_id: uuid.UUID) -> str:
    organization = await session.get(Organization, organization_id)
    assert organization is not None
    return organization.name


async def send_consent_request(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    subject_id: uuid.UUID,
    to: str,
    link: str,
    purposes: list[ConsentPurpose],
    deadline: datetime,
    language: str,
    reminder: bool,
) -> uuid.UUID:
    return await enqueue(
        session,
        organization_id=organization_id,
        to=to,
        template="consent_reminder" if reminder else "consent_request",
        context={
            "organization_name": await _organization_name(session, organization_id),
            "link": link,
            "purposes": _purposes(purposes),
            "deadline": deadline.strftime("%Y-%m-%d %H:%M UTC"),
        },
        language=language,
        subject_id=subject_id,
        list_unsubscribe=link,
    )


async def send_optin(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    subject_id: uuid.UUID,
    to: str,
    link: str,
    form_name: str,
    purposes: list[ConsentPurpose],
    valid_hours: int,
    language: str,
) -> uuid.UUID:
    return await enqueue(
        session,
        organization_id=organization_id,
        to=to,
        template="optin_confirm",
        context={
            "organization_name": await _organization_name(session, organization_id),
            "link": link,
            "form_name": form_name,
            "purposes": _purposes(purposes),
            "valid_hours": valid_hours,
        },
        language=language,
        subject_id=subject_id,
    )
