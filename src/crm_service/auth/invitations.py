"""Users join an organization by invitation: `POST /v1/users` mails a link to the address,
and the person accepts it by choosing a password (`POST /v1/auth/invitations/accept`).

Why not create the user at once: sign-in names no organization, so an address has one
account across the service. Creating a user answered 409 when the address had an account in
another organization (an oracle for any administrator), and any design in which the
administrator sets the password lets them probe by signing in with it. Now the inviting
administrator gets the same answer, the same work done and the same later view (a pending
invitation) whether or not the address is known elsewhere; only the address's owner, holding
the mailed token, learns that it already has an account. An address already in the
administrator's own organization still answers 409: they can list those users anyway.

An address belongs to one organization: an invitation to an address that has an account
elsewhere cannot be accepted (memberships of one identity in several organizations are not
built).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access import delegation
from crm_service.access import service as access
from crm_service.audit.actions import AuditAction
from crm_service.audit.service import Actor
from crm_service.audit.service import record as audit
from crm_service.auth.models import User, UserInvitation
from crm_service.auth.schemas import InvitationAccept, InvitationStatus, UserCreate, UserInvite
from crm_service.auth.tokens import token_digest
from crm_service.config import Settings
from crm_service.db.tenancy import Organization
from crm_service.errors import Conflict, CRMError, FieldProblem, ValidationFailed
from crm_service.mail.outbox import enqueue
from crm_service.security.permissions import BuiltinProfile
from crm_service.security.principal import Principal

TEMPLATE = "user_invitation"


class InvitationInvalid(CRMError):
    """Unknown, used and expired tokens answer alike."""

    status, slug, title = 404, "invitation-invalid", "This invitation is not valid"


class AddressRegistered(CRMError):
    """Told only to the holder of the mailed token: the address has an account already."""

    status, slug, title = 409, "address-registered", "This address already has an account"


def status_of(invitation: UserInvitation, now: datetime) -> InvitationStatus:
    if invitation.accepted_at is not None:
        return "accepted"
    return "expired" if invitation.expires_at <= now else "pending"


def accept_url(settings: Settings, token: str) -> str:
    """The link in the mail: the frontend's page, the token in the fragment (never sent to a
    server, so never in an access log); the page posts it to the accept endpoint."""
    return f"{settings.public_base_url.rstrip('/')}/invitations/accept#token={token}"


async def invite_user(
    *,
    session: AsyncSession,
    principal: Principal,
    payload: UserInvite,
    settings: Settings,
    now: datetime,
) -> UserInvitation:
    organization_id = principal.organization_id
    profile_id = payload.profile_id or await access.builtin_profile_id(
        session,
        organization_id,
        BuiltinProfile.ADMINISTRATOR if payload.is_admin else BuiltinProfile.STANDARD,
    )
    granted = await access.permissions_of_profile_id(session, organization_id, profile_id)
    if granted is None:
        raise ValidationFailed(
            "no such profile",
            errors=[
                FieldProblem(field="body.profile_id", rule="not_found", message="no such profile")
            ],
        )
    delegation.check_grant(
        principal, granted, reason="grant_beyond_own", target_type="user", target_id=None
    )
    await access.check_role(session, organization_id, payload.role_id)
    await delegation.check_role_placement(
        session, principal, new_role_id=payload.role_id, current_role_id=None, user_id=None
    )
    email = str(payload.email).strip().casefold()
    # One lookup whatever the answer: where (if anywhere) the address has its account.
    owner = await session.scalar(select(User.organization_id).where(User.email == email))
    if owner == organization_id:
        raise Conflict("A user with this email already exists in your organization.")

    token = secrets.token_urlsafe(32)
    invitation = await session.scalar(
        select(UserInvitation).where(
            UserInvitation.organization_id == organization_id, UserInvitation.email == email
        )
    )
    if invitation is None:
        invitation = UserInvitation(id=uuid.uuid4(), organization_id=organization_id, email=email)
        session.add(invitation)
    # Inviting again replaces the earlier link (and its terms).
    invitation.full_name = payload.full_name
    invitation.profile_id = profile_id
    invitation.role_id = payload.role_id
    invitation.invited_by = principal.user_id
    invitation.token_hash = token_digest(token)
    invitation.created_at = now
    invitation.expires_at = now + timedelta(hours=settings.invitation_ttl_hours)
    invitation.accepted_at = None
    invitation.user_id = None

    organization_name = await session.scalar(
        select(Organization.name).where(Organization.id == organization_id)
    )
    await enqueue(
        session,
        organization_id=organization_id,
        to=email,
        template=TEMPLATE,
        context={
            "organization_name": organization_name,
            "accept_url": accept_url(settings, token),
            "valid_hours": settings.invitation_ttl_hours,
        },
        language=payload.language,
    )
    audit(
        session,
        principal,
        AuditAction.USER_INVITED,
        target_type="invitation",
        target_id=invitation.id,
        fields=payload.model_dump(exclude_none=True).keys(),
    )
    await session.flush()
    return invitation


async def list_invitations(
    session: AsyncSession, organization_id: uuid.UUID
) -> list[UserInvitation]:
    result = await session.execute(
        select(UserInvitation)
        .where(UserInvitation.organization_id == organization_id)
        .order_by(UserInvitation.created_at, UserInvitation.id)
    )
    return list(result.scalars())


async def accept_invitation(
    *, session: AsyncSession, payload: InvitationAccept, now: datetime, client_ip: str | None
) -> User:
    from crm_service.auth.service import add_user

    invitation = await session.scalar(
        select(UserInvitation).where(UserInvitation.token_hash == token_digest(payload.token))
    )
    if invitation is None or status_of(invitation, now) != "pending":
        raise InvitationInvalid("The invitation link is unknown, used or expired.")
    if await session.scalar(select(User.id).where(User.email == invitation.email)) is not None:
        # The invitation stays pending: its organization learns nothing from this.
        raise AddressRegistered(
            "This address already has a crm-service account, and an address belongs to one "
            "organization. Ask the person who invited you to invite another address."
        )
    try:
        async with session.begin_nested():
            user = await add_user(
                session=session,
                organization_id=invitation.organization_id,
                payload=UserCreate(
                    email=invitation.email,
                    password=payload.password,
                    full_name=payload.full_name or invitation.full_name,
                    profile_id=invitation.profile_id,
                    role_id=invitation.role_id,
                ),
            )
    except IntegrityError:  # the address got an account a moment ago
        raise AddressRegistered(
            "This address already has a crm-service account, and an address belongs to one "
            "organization."
        ) from None
    invitation.accepted_at = now
    invitation.user_id = user.id
    actor = Actor.user(invitation.organization_id, user.id, client_ip)
    # The account is the inviter's doing (they chose its profile and role); accepting it is
    # the person's.
    inviter = (
        Actor.user(invitation.organization_id, invitation.invited_by, None)
        if invitation.invited_by is not None
        else actor
    )
    audit(
        session,
        inviter,
        AuditAction.USER_CREATED,
        target_type="user",
        target_id=user.id,
        fields=["email", "profile_id"]
        + (["full_name"] if user.full_name else [])
        + (["role_id"] if user.role_id else []),
    )
    audit(
        session,
        actor,
        AuditAction.USER_INVITATION_ACCEPTED,
        target_type="invitation",
        target_id=invitation.id,
    )
    await session.flush()
    return user
