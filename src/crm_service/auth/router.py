"""HTTP for sign-in, sign-out, the current user and user administration."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request, Response, status

from crm_service.auth import invitations, mfa, service
from crm_service.auth.models import User, UserInvitation
from crm_service.auth.schemas import (
    InvitationAccept,
    InvitationList,
    InvitationRead,
    LoginRequest,
    MfaEnrolmentStart,
    MfaRequired,
    MfaStatus,
    MfaVerify,
    PasswordChange,
    PasswordConfirm,
    RecoveryCodes,
    SessionList,
    SessionRead,
    TokenResponse,
    TotpConfirm,
    TotpEnrolment,
    UserInvite,
    UserList,
    UserRead,
    UserUpdate,
)
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.security.permissions import Right
from crm_service.security.principal import (
    Principal,
    SignedInUser,
    require_right,
)

router = CRMRouter(prefix="/v1", tags=["auth"])
Admin = Annotated[Principal, Depends(require_right(Right.MANAGE_USERS))]


@router.post(
    "/auth/login",
    operation_id="login",
    summary="Sign in with email and password",
    response_model=TokenResponse | MfaRequired,
    responses=problem_responses(401, 403, 422, 429),
)
async def login(
    payload: LoginRequest, session: DbSession, request: Request
) -> TokenResponse | MfaRequired:
    """Answers a bearer token, or `mfa_required` with an `mfa_token` when a second factor is owed.
    A wrong email or password answers 401 alike; an address outside the IP allowlist 403.
    """
    return await service.login(
        session=session,
        payload=payload,
        settings=request.app.state.settings,
        now=request.app.state.clock.now(),
        client_ip=request.client.host if request.client else None,
        throttle=request.app.state.sign_in_throttle,
    )


@router.post(
    "/auth/mfa",
    operation_id="verifySecondFactor",
    summary="Second sign-in step: the mfa_token and a TOTP or recovery code",
    response_model=TokenResponse,
    responses=problem_responses(401, 403, 422),
)
async def verify_second_factor(
    payload: MfaVerify, session: DbSession, request: Request
) -> TokenResponse:
    """The second sign-in step: the `mfa_token` from `login` and a TOTP or recovery code. Answers
    the bearer token; a wrong code 401.
    """
    return await service.complete_second_step(
        session=session,
        payload=payload,
        settings=request.app.state.settings,
        now=request.app.state.clock.now(),
        client_ip=request.client.host if request.client else None,
    )


@router.post(
    "/auth/mfa/enrolment",
    operation_id="startRequiredEnrolment",
    summary="Enrol an authenticator during sign-in, when the organization requires one",
    response_model=TotpEnrolment,
    responses=problem_responses(401, 409, 422),
)
async def start_required_enrolment(
    payload: MfaEnrolmentStart, session: DbSession, request: Request
) -> TotpEnrolment:
    """When the organization requires two-factor and the user has none: the TOTP secret to enrol,
    authenticated by the `mfa_token`. Confirm by sending the first code to `POST /v1/auth/mfa`.
    """
    now = request.app.state.clock.now()
    _, user = await mfa.challenge_user(session=session, mfa_token=payload.mfa_token, now=now)
    enrolment = await mfa.begin_enrolment(session=session, user=user, now=now)
    return TotpEnrolment(**vars(enrolment))


@router.post(
    "/auth/logout",
    operation_id="logout",
    summary="End the current session; its token stops working at once",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401),
)
async def logout(principal: SignedInUser, session: DbSession) -> Response:
    """Ends the session whose token made this request."""
    await service.logout(session=session, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/me",
    operation_id="getCurrentUser",
    summary="The signed-in user",
    response_model=UserRead,
    responses=problem_responses(401),
)
async def get_me(principal: SignedInUser, session: DbSession) -> UserRead:
    """The user the token belongs to."""
    return UserRead.model_validate(await _me(session, principal))


@router.get(
    "/me/mfa",
    operation_id="getMyTwoFactor",
    summary="Whether two-factor is on, and how many recovery codes are left",
    response_model=MfaStatus,
    responses=problem_responses(401),
)
async def get_my_two_factor(principal: SignedInUser, session: DbSession) -> MfaStatus:
    """Your own two-factor state; never the secret."""
    user = await _me(session, principal)
    enabled, left = await mfa.status(session=session, user=user)
    return MfaStatus(totp_enabled=enabled, recovery_codes_left=left)


@router.post(
    "/me/mfa/totp",
    operation_id="startTotpEnrolment",
    summary="Start TOTP enrolment: the secret, its otpauth:// URI and a QR code",
    response_model=TotpEnrolment,
    responses=problem_responses(401, 409),
)
async def start_totp_enrolment(
    principal: SignedInUser, session: DbSession, request: Request
) -> TotpEnrolment:
    """Starts (or restarts) TOTP enrolment for your account; two-factor is on only once a code
    confirms it. 409 when it is already on.
    """
    user = await _me(session, principal)
    enrolment = await mfa.begin_enrolment(
        session=session, user=user, now=request.app.state.clock.now()
    )
    return TotpEnrolment(**vars(enrolment))


@router.post(
    "/me/mfa/totp/confirm",
    operation_id="confirmTotpEnrolment",
    summary="Confirm enrolment with a first code; returns the recovery codes once",
    response_model=RecoveryCodes,
    responses=problem_responses(401, 404, 422),
)
async def confirm_totp_enrolment(
    payload: TotpConfirm, principal: SignedInUser, session: DbSession, request: Request
) -> RecoveryCodes:
    """A first code from the authenticator switches two-factor on and answers the recovery codes,
    shown this once.
    """
    user = await _me(session, principal)
    codes = await mfa.confirm_enrolment(
        session=session,
        user=user,
        code=payload.code,
        now=request.app.state.clock.now(),
        client_ip=principal.client_ip,
    )
    return RecoveryCodes(recovery_codes=codes)


@router.post(
    "/me/mfa/totp/disable",
    operation_id="disableTotp",
    summary="Turn two-factor off (password needed); ends your other sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def disable_totp(
    payload: PasswordConfirm, principal: SignedInUser, session: DbSession, request: Request
) -> Response:
    """Needs your password. Your other sessions end."""
    user = await _me(session, principal)
    await mfa.disable(
        session=session,
        user=user,
        password=payload.password,
        keep_session=principal.session_id,
        now=request.app.state.clock.now(),
        client_ip=principal.client_ip,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/me/mfa/recovery-codes",
    operation_id="replaceRecoveryCodes",
    summary="Replace your recovery codes (password needed); the old ones stop working",
    response_model=RecoveryCodes,
    responses=problem_responses(401, 403, 404, 422),
)
async def replace_recovery_codes(
    payload: PasswordConfirm, principal: SignedInUser, session: DbSession, request: Request
) -> RecoveryCodes:
    """Needs your password; the new codes are shown this once."""
    user = await _me(session, principal)
    codes = await mfa.new_recovery_codes(
        session=session,
        user=user,
        password=payload.password,
        now=request.app.state.clock.now(),
        client_ip=principal.client_ip,
    )
    return RecoveryCodes(recovery_codes=codes)


@router.get(
    "/me/sessions",
    operation_id="listMySessions",
    summary="Your signed-in sessions",
    response_model=SessionList,
    responses=problem_responses(401),
)
async def list_my_sessions(
    principal: SignedInUser, session: DbSession, request: Request
) -> SessionList:
    """Every unexpired session of yours, marking the one this request used."""
    sessions = await service.list_my_sessions(
        session=session, principal=principal, now=request.app.state.clock.now()
    )
    return SessionList(
        data=[
            SessionRead(
                id=item.id,
                created_at=item.created_at,
                last_used_at=item.last_used_at,
                expires_at=item.expires_at,
                current=current,
            )
            for item, current in sessions
        ]
    )


@router.delete(
    "/me/sessions/{session_id}",
    operation_id="endMySession",
    summary="End one of your sessions; its token stops working at once",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404, 422),
)
async def end_my_session(
    session_id: uuid.UUID, principal: SignedInUser, session: DbSession, request: Request
) -> Response:
    """Ends one of your sessions; another user's answers 404."""
    await service.end_my_session(
        session=session,
        principal=principal,
        session_id=session_id,
        now=request.app.state.clock.now(),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/me/password",
    operation_id="changeMyPassword",
    summary="Change your password (the current one needed); ends your other sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 422),
)
async def change_my_password(
    payload: PasswordChange, principal: SignedInUser, session: DbSession, request: Request
) -> Response:
    """Needs the current password; the new one must be 12 to 128 characters. Your other sessions
    end.
    """
    await service.change_password(
        session=session, principal=principal, payload=payload, now=request.app.state.clock.now()
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _me(session: DbSession, principal: Principal) -> User:
    """The signed-in user (routes using this take `SignedInUser`, so `user_id` is set)."""
    return await service.get_user(
        session=session, principal=principal, user_id=principal.signed_in_user_id
    )


@router.post(
    "/users",
    operation_id="createUser",
    summary="Invite a user to the caller's organization",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InvitationRead,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_user(
    payload: UserInvite, principal: Admin, session: DbSession, request: Request, response: Response
) -> InvitationRead:
    """Mails an invitation to the address; the user exists once the person accepts it by
    choosing a password (`POST /v1/auth/invitations/accept`). The answer is the same whether
    or not the address has an account in another organization; an address already in your
    organization answers 409. Inviting an address again replaces its earlier link. The profile
    is the one given, or Administrator or Standard by `is_admin`. Needs the right
    `manage_users`.
    """
    now = request.app.state.clock.now()
    invitation = await invitations.invite_user(
        session=session,
        principal=principal,
        payload=payload,
        settings=request.app.state.settings,
        now=now,
    )
    response.headers["Location"] = f"/v1/users/invitations/{invitation.id}"
    return _invitation_read(invitation, now)


def _invitation_read(invitation: UserInvitation, now: datetime) -> InvitationRead:
    return InvitationRead(
        id=invitation.id,
        organization_id=invitation.organization_id,
        email=invitation.email,
        full_name=invitation.full_name,
        profile_id=invitation.profile_id,
        role_id=invitation.role_id,
        status=invitations.status_of(invitation, now),
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
    )


@router.get(
    "/users/invitations",
    operation_id="listInvitations",
    summary="Invitations of the caller's organization",
    response_model=InvitationList,
    responses=problem_responses(401, 403),
)
async def list_invitations(
    principal: Admin, session: DbSession, request: Request
) -> InvitationList:
    """Every invitation, pending, accepted or expired. Needs the right `manage_users`."""
    now = request.app.state.clock.now()
    found = await invitations.list_invitations(session, principal.organization_id)
    return InvitationList(data=[_invitation_read(invitation, now) for invitation in found])


@router.post(
    "/auth/invitations/accept",
    operation_id="acceptInvitation",
    summary="Accept an invitation by choosing a password",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problem_responses(404, 409, 422),
)
async def accept_invitation(
    payload: InvitationAccept, session: DbSession, request: Request, response: Response
) -> UserRead:
    """Creates the invited user with the chosen password; then sign in as usual. The token is
    the one of the mailed link. An unknown, used or expired token answers 404; an address
    that already has an account (in any organization) 409 `address-registered`.
    """
    user = await invitations.accept_invitation(
        session=session,
        payload=payload,
        now=request.app.state.clock.now(),
        client_ip=request.client.host if request.client else None,
    )
    response.headers["Location"] = f"/v1/users/{user.id}"
    return UserRead.model_validate(user)


@router.get(
    "/users",
    operation_id="listUsers",
    summary="Users of the caller's organization",
    response_model=UserList,
    responses=problem_responses(401, 403),
)
async def list_users(principal: Admin, session: DbSession) -> UserList:
    """Every user of your organization. Needs the right `manage_users`."""
    users = await service.list_users(session=session, principal=principal)
    return UserList(data=[UserRead.model_validate(user) for user in users])


@router.get(
    "/users/{user_id}",
    operation_id="getUser",
    summary="One user of the caller's organization",
    response_model=UserRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_user(user_id: uuid.UUID, principal: Admin, session: DbSession) -> UserRead:
    """One user of your organization; 404 for anyone else."""
    user = await service.get_user(session=session, principal=principal, user_id=user_id)
    return UserRead.model_validate(user)


@router.patch(
    "/users/{user_id}",
    operation_id="updateUser",
    summary="Change a user; disabling ends all of their sessions at once",
    response_model=UserRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_user(
    user_id: uuid.UUID, payload: UserUpdate, principal: Admin, session: DbSession, request: Request
) -> UserRead:
    """Change the fields given. Disabling a user ends their sessions at once; you cannot disable
    yourself or change your own profile or role (409).
    """
    user = await service.update_user(
        session=session,
        principal=principal,
        user_id=user_id,
        payload=payload,
        now=request.app.state.clock.now(),
    )
    return UserRead.model_validate(user)


@router.delete(
    "/users/{user_id}/sessions",
    operation_id="endUserSessions",
    summary="End every session of a user of your organization",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def end_user_sessions(
    user_id: uuid.UUID, principal: Admin, session: DbSession, request: Request
) -> Response:
    """Signs a user out everywhere, e.g. after a lost device. Needs the right `manage_users`."""
    await service.end_user_sessions(
        session=session, principal=principal, user_id=user_id, now=request.app.state.clock.now()
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/users/{user_id}/unlock",
    operation_id="unlockUserSignIn",
    summary="Lift the password sign-in locks that failed attempts put on a user",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def unlock_user_sign_in(user_id: uuid.UUID, principal: Admin, session: DbSession) -> Response:
    """After 100 consecutive failed passwords an account accepts none until this; it also
    lifts the shorter lock-outs of single addresses."""
    await service.unlock_sign_in(session=session, principal=principal, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
