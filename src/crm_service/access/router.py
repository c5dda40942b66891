"""HTTP for access control: /v1/profiles, /v1/roles, /v1/groups, /v1/settings/sharing."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Response, status

from crm_service.access import service
from crm_service.access.schemas import (
    GroupCreate,
    GroupList,
    GroupRead,
    GroupUpdate,
    ProfileCreate,
    ProfileList,
    ProfileRead,
    ProfileUpdate,
    RoleCreate,
    RoleList,
    RoleRead,
    RoleUpdate,
    SharingDefaults,
)
from crm_service.db.session import CRMRouter, DbSession
from crm_service.errors import problem_responses
from crm_service.security.permissions import Right
from crm_service.security.principal import Principal, require_right

router = CRMRouter(prefix="/v1", tags=["access"])
AccessAdmin = Annotated[Principal, Depends(require_right(Right.MANAGE_ACCESS))]
NO_CONTENT = status.HTTP_204_NO_CONTENT


def _group(found: tuple) -> GroupRead:
    group, members = found
    return GroupRead(id=group.id, name=group.name, member_ids=members)


@router.get(
    "/profiles",
    operation_id="listProfiles",
    summary="Profiles (permission sets)",
    response_model=ProfileList,
    responses=problem_responses(401, 403),
)
async def list_profiles(principal: AccessAdmin, session: DbSession) -> ProfileList:
    """Every profile of the organization, built-in ones included. Needs the right
    `manage_access`."""
    profiles = await service.list_profiles(session=session, principal=principal)
    return ProfileList(data=[ProfileRead.model_validate(p) for p in profiles])


@router.post(
    "/profiles",
    operation_id="createProfile",
    summary="Create a profile",
    status_code=status.HTTP_201_CREATED,
    response_model=ProfileRead,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_profile(
    payload: ProfileCreate, principal: AccessAdmin, session: DbSession, response: Response
) -> ProfileRead:
    """A new permission set: operations per module, `view_sensitive` and administration rights.
    Names are unique in the organization (409).
    """
    profile = await service.create_profile(session=session, principal=principal, payload=payload)
    response.headers["Location"] = f"/v1/profiles/{profile.id}"
    return ProfileRead.model_validate(profile)


@router.get(
    "/profiles/{profile_id}",
    operation_id="getProfile",
    summary="Get a profile",
    response_model=ProfileRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_profile(
    profile_id: uuid.UUID, principal: AccessAdmin, session: DbSession
) -> ProfileRead:
    """One profile of the organization; 404 for another organization's."""
    return ProfileRead.model_validate(
        await service.get_profile(session=session, principal=principal, profile_id=profile_id)
    )


@router.patch(
    "/profiles/{profile_id}",
    operation_id="updateProfile",
    summary="Change a profile (not the built-in Administrator)",
    response_model=ProfileRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_profile(
    profile_id: uuid.UUID, payload: ProfileUpdate, principal: AccessAdmin, session: DbSession
) -> ProfileRead:
    """Change the fields given; the built-in Administrator profile cannot be changed (409). Takes
    effect on each holder's next request.
    """
    profile = await service.update_profile(
        session=session, principal=principal, profile_id=profile_id, payload=payload
    )
    return ProfileRead.model_validate(profile)


@router.delete(
    "/profiles/{profile_id}",
    operation_id="deleteProfile",
    summary="Delete a profile no user holds",
    status_code=NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_profile(
    profile_id: uuid.UUID, principal: AccessAdmin, session: DbSession
) -> Response:
    """Refused with 409 while any user holds the profile, and for the built-in ones."""
    await service.delete_profile(session=session, principal=principal, profile_id=profile_id)
    return Response(status_code=NO_CONTENT)


@router.get(
    "/roles",
    operation_id="listRoles",
    summary="Roles and whom each reports to",
    response_model=RoleList,
    responses=problem_responses(401, 403),
)
async def list_roles(principal: AccessAdmin, session: DbSession) -> RoleList:
    """Every role with the role it reports to and its own IP allowlist. Needs the right
    `manage_access`.
    """
    return RoleList(
        data=[
            RoleRead.model_validate(r)
            for r in await service.list_roles(session=session, principal=principal)
        ]
    )


@router.post(
    "/roles",
    operation_id="createRole",
    summary="Create a role",
    status_code=status.HTTP_201_CREATED,
    response_model=RoleRead,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_role(
    payload: RoleCreate, principal: AccessAdmin, session: DbSession, response: Response
) -> RoleRead:
    """A new role, optionally under a parent and with an IP allowlist on top of the organization's.
    Names are unique (409).
    """
    role = await service.create_role(session=session, principal=principal, payload=payload)
    response.headers["Location"] = f"/v1/roles/{role.id}"
    return RoleRead.model_validate(role)


@router.get(
    "/roles/{role_id}",
    operation_id="getRole",
    summary="Get a role",
    response_model=RoleRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_role(role_id: uuid.UUID, principal: AccessAdmin, session: DbSession) -> RoleRead:
    """One role of the organization; 404 for another organization's."""
    return RoleRead.model_validate(
        await service.get_role(session=session, principal=principal, role_id=role_id)
    )


@router.patch(
    "/roles/{role_id}",
    operation_id="updateRole",
    summary="Rename a role or move it in the hierarchy",
    response_model=RoleRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_role(
    role_id: uuid.UUID, payload: RoleUpdate, principal: AccessAdmin, session: DbSession
) -> RoleRead:
    """Change the fields given. A parent below the role itself is refused (422); narrowing
    your own role's allowlist to exclude your address needs `confirm_self_lockout` (409).
    """
    return RoleRead.model_validate(
        await service.update_role(
            session=session, principal=principal, role_id=role_id, payload=payload
        )
    )


@router.delete(
    "/roles/{role_id}",
    operation_id="deleteRole",
    summary="Delete a role no user or role reports to",
    status_code=NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_role(role_id: uuid.UUID, principal: AccessAdmin, session: DbSession) -> Response:
    """Refused with 409 while a user holds the role or another role reports to it."""
    await service.delete_role(session=session, principal=principal, role_id=role_id)
    return Response(status_code=NO_CONTENT)


@router.get(
    "/groups",
    operation_id="listGroups",
    summary="Groups and their members",
    response_model=GroupList,
    responses=problem_responses(401, 403),
)
async def list_groups(principal: AccessAdmin, session: DbSession) -> GroupList:
    """Every group with its members. Needs the right `manage_access`."""
    return GroupList(
        data=[_group(g) for g in await service.list_groups(session=session, principal=principal)]
    )


@router.post(
    "/groups",
    operation_id="createGroup",
    summary="Create a group",
    status_code=status.HTTP_201_CREATED,
    response_model=GroupRead,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_group(
    payload: GroupCreate, principal: AccessAdmin, session: DbSession, response: Response
) -> GroupRead:
    """A new group of the organization's users; records can then be shared with it. Names are
    unique (409).
    """
    found = await service.create_group(session=session, principal=principal, payload=payload)
    response.headers["Location"] = f"/v1/groups/{found[0].id}"
    return _group(found)


@router.get(
    "/groups/{group_id}",
    operation_id="getGroup",
    summary="Get a group",
    response_model=GroupRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_group(group_id: uuid.UUID, principal: AccessAdmin, session: DbSession) -> GroupRead:
    """One group and its members; 404 for another organization's."""
    return _group(await service.get_group(session=session, principal=principal, group_id=group_id))


@router.patch(
    "/groups/{group_id}",
    operation_id="updateGroup",
    summary="Rename a group or replace its members",
    response_model=GroupRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_group(
    group_id: uuid.UUID, payload: GroupUpdate, principal: AccessAdmin, session: DbSession
) -> GroupRead:
    """Rename the group or replace its members (the whole list)."""
    return _group(
        await service.update_group(
            session=session, principal=principal, group_id=group_id, payload=payload
        )
    )


@router.delete(
    "/groups/{group_id}",
    operation_id="deleteGroup",
    summary="Delete a group (its record shares go with it)",
    status_code=NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_group(group_id: uuid.UUID, principal: AccessAdmin, session: DbSession) -> Response:
    """The group's record shares end with it; its members keep what else they can see."""
    await service.delete_group(session=session, principal=principal, group_id=group_id)
    return Response(status_code=NO_CONTENT)


@router.get(
    "/settings/sharing",
    operation_id="getSharingDefaults",
    summary="Organization-wide sharing per module",
    response_model=SharingDefaults,
    responses=problem_responses(401, 403),
)
async def get_sharing(principal: AccessAdmin, session: DbSession) -> SharingDefaults:
    """Per module: `private`, `read_only` or `read_write`. Needs the right `manage_access`."""
    return await service.get_sharing(session=session, principal=principal)


@router.put(
    "/settings/sharing",
    operation_id="setSharingDefaults",
    summary="Set organization-wide sharing per module",
    response_model=SharingDefaults,
    responses=problem_responses(401, 403, 422),
)
async def set_sharing(
    payload: SharingDefaults, principal: AccessAdmin, session: DbSession
) -> SharingDefaults:
    """Replace the organization-wide sharing of every module; audited."""
    return await service.set_sharing(session=session, principal=principal, payload=payload)
