"""Organization rules: bootstrapping a new organization with its first administrator."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service import models  # noqa: F401 - registers every table
from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor, record
from crm_service.auth.models import User
from crm_service.auth.schemas import UserCreate
from crm_service.auth.service import add_user
from crm_service.db.tenancy import Organization


@dataclass(frozen=True)
class Bootstrapped:
    organization: Organization
    admin: User


async def bootstrap_organization(
    *, session: AsyncSession, org_name: str, admin_email: str, password: str
) -> Bootstrapped:
    """Create an organization and its administrator in the caller's transaction.

    Raises Conflict when a user with that email exists; nothing is created then.
    """
    organization = Organization(name=org_name)
    session.add(organization)
    await session.flush()
    admin = await add_user(
        session=session,
        organization_id=organization.id,
        payload=UserCreate(email=admin_email, password=password, is_admin=True),
    )
    actor = Actor.system(organization.id)
    record(
        session,
        actor,
        AuditAction.ORGANIZATION_CREATED,
        target_type="organization",
        target_id=organization.id,
    )
    record(
        session,
        actor,
        AuditAction.USER_CREATED,
        target_type="user",
        target_id=admin.id,
        fields=["email", "is_admin"],
    )
    return Bootstrapped(organization=organization, admin=admin)
