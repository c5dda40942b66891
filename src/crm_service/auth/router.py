"""HTTP for sign-in, sign-out, the current user and user administration."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from crm_service.auth import service
from crm_service.auth.schemas import LoginRequest, TokenResponse, UserCreate, UserList, UserRead
from crm_service.db.session import CommitOnSuccessRoute, DbSession
from crm_service.errors import problem_responses
from crm_service.security.principal import CurrentPrincipal, Principal, require
from crm_service.security.scopes import Scope

router = APIRouter(prefix="/v1", tags=["auth"], route_class=CommitOnSuccessRoute)
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]


@router.post(
    "/auth/login",
    operation_id="login",
    summary="Sign in with email and password",
    response_model=TokenResponse,
    responses=problem_responses(401, 422),
)
async def login(payload: LoginRequest, session: DbSession, request: Request) -> TokenResponse:
    return await service.login(session=session, payload=payload, settings=request.app.state.settings)


@router.post(
    "/auth/logout",
    operation_id="logout",
    summary="End the current session; its token stops working at once",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401),
)
async def logout(principal: CurrentPrincipal, session: DbSession) -> Response:
    await service.logout(session=session, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/me",
    operation_id="getCurrentUser",
    summary="The signed-in user",
    response_model=UserRead,
    responses=problem_responses(401),
)
async def get_me(principal: CurrentPrincipal, session: DbSession) -> UserRead:
    assert principal.user_id is not None
    user = await service.get_user(session=session, principal=principal, user_id=principal.user_id)
    return UserRead.model_validate(user)


@router.post(
    "/users",
    operation_id="createUser",
    summary="Create a user in the caller's organization",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_user(
    payload: UserCreate, principal: Admin, session: DbSession, response: Response
) -> UserRead:
    user = await service.create_user(
        session=session, organization_id=principal.organization_id, payload=payload
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
    user = await service.get_user(session=session, principal=principal, user_id=user_id)
    return UserRead.model_validate(user)
