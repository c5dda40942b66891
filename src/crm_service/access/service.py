"""Access-control rules: built-in profiles, profiles, roles, groups, sharing defaults, and the
visibility of a module's records for one caller."""

from __future__ import annotations

import json
import uuid
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access import delegation, repository
from crm_service.access.models import Group, Profile, Role
from crm_service.access.schemas import (
    GroupCreate,
    GroupUpdate,
    ProfileCreate,
    ProfileUpdate,
    RoleCreate,
    RoleUpdate,
    SharingDefaults,
)
from crm_service.access.visibility import DEFAULT_LEVEL, SharingLevel, Visibility
from crm_service.audit.actions import AuditAction
from crm_service.audit.service import record as audit
from crm_service.auth.models import User
from crm_service.auth.repository import UserRepository
from crm_service.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from crm_service.kit.modules import Module
from crm_service.security.ip_allowlist import is_allowed, parse_networks
from crm_service.security.permissions import BUILTIN, BuiltinProfile, Permissions, Right
from crm_service.security.principal import Principal


def _invalid(field: str, rule: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[FieldProblem(field=field, rule=rule, message=message)])


# -- profiles -------------------------------------------------------------------------------


def permissions_of(profile: Any) -> Permissions:
    """What a profile (its stored columns) grants."""
    return _permissions(
        profile.module_permissions, profile.view_sensitive, profile.rights, profile.builtin
    )


@lru_cache(maxsize=1024)
def _permissions(
    module_permissions: str | None, view_sensitive: bool, rights: str | None, builtin: str | None
) -> Permissions:
    # A pure function of the stored values (every request parses its profile's), so kept by
    # them: a changed profile has other values and is parsed anew on its next request.
    return Permissions(
        modules=MappingProxyType(Permissions.parse_modules(module_permissions or "")),
        view_sensitive=view_sensitive,
        rights=frozenset(Right(name) for name in json.loads(rights or "[]")),
        administrator=builtin == BuiltinProfile.ADMINISTRATOR.value,
    )


def _write_permissions(profile: Profile, permissions: Permissions) -> None:
    profile.module_permissions = permissions.modules_json()
    profile.view_sensitive = permissions.view_sensitive
    profile.rights = json.dumps(sorted(permissions.rights))


async def ensure_builtin_profiles(
    session: AsyncSession, organization_id: uuid.UUID
) -> dict[BuiltinProfile, Profile]:
    """The Administrator and Standard profiles every organization has."""
    profiles = repository.ProfileRepository(session, organization_id)
    found: dict[BuiltinProfile, Profile] = {}
    for builtin, (name, description, permissions) in BUILTIN.items():
        profile = await profiles.builtin(builtin.value)
        if profile is None:
            profile = Profile(
                id=uuid.uuid4(),
                organization_id=organization_id,
                name=name,
                description=description,
                builtin=builtin.value,
            )
            _write_permissions(profile, permissions)
            await profiles.add(profile)
        found[builtin] = profile
    return found


async def list_profiles(*, session: AsyncSession, principal: Principal) -> list[Profile]:
    return await repository.ProfileRepository(session, principal.organization_id).list()


async def get_profile(
    *, session: AsyncSession, principal: Principal, profile_id: uuid.UUID
) -> Profile:
    profile = await repository.ProfileRepository(session, principal.organization_id).get(profile_id)
    if profile is None:
        raise NotFound("No such profile.")
    return profile


async def create_profile(
    *, session: AsyncSession, principal: Principal, payload: ProfileCreate
) -> Profile:
    profiles = repository.ProfileRepository(session, principal.organization_id)
    if await profiles.name_taken(payload.name):
        raise Conflict("A profile with this name exists.")
    granted = payload.permissions()
    delegation.check_grant(
        principal, granted, reason="grant_beyond_own", target_type="profile", target_id=None
    )
    profile = Profile(
        id=uuid.uuid4(),
        organization_id=principal.organization_id,
        name=payload.name,
        description=payload.description,
    )
    _write_permissions(profile, granted)
    await profiles.add(profile)
    audit(
        session, principal, AuditAction.PROFILE_CREATED, target_type="profile", target_id=profile.id
    )
    return profile


async def update_profile(
    *, session: AsyncSession, principal: Principal, profile_id: uuid.UUID, payload: ProfileUpdate
) -> Profile:
    profile = await get_profile(session=session, principal=principal, profile_id=profile_id)
    if profile.builtin == BuiltinProfile.ADMINISTRATOR.value:
        # Someone must always be able to administer the organization.
        raise Conflict("The Administrator profile cannot be changed.")
    changes = payload.model_dump(exclude_unset=True)
    if "name" in changes and await repository.ProfileRepository(
        session, principal.organization_id
    ).name_taken(payload.name or "", except_id=profile.id):
        raise Conflict("A profile with this name exists.")
    current = permissions_of(profile)
    merged = payload.merged_with(current)
    delegation.check_not_own_profile(principal, profile.id)
    # Both sides: nobody widens a profile past their own, nor edits one that holds more.
    for permissions in (current, merged):
        delegation.check_grant(
            principal,
            permissions,
            reason="grant_beyond_own",
            target_type="profile",
            target_id=profile.id,
        )
    for name in ("name", "description"):
        if name in changes:
            setattr(profile, name, changes[name])
    _write_permissions(profile, merged)
    await session.flush()
    audit(
        session,
        principal,
        AuditAction.PROFILE_UPDATED,
        target_type="profile",
        target_id=profile.id,
        fields=changes,
    )
    return profile


async def delete_profile(
    *, session: AsyncSession, principal: Principal, profile_id: uuid.UUID
) -> None:
    profile = await get_profile(session=session, principal=principal, profile_id=profile_id)
    if profile.builtin is not None:
        raise Conflict("Built-in profiles cannot be deleted.")
    delegation.check_grant(
        principal,
        permissions_of(profile),
        reason="grant_beyond_own",
        target_type="profile",
        target_id=profile.id,
    )
    profiles = repository.ProfileRepository(session, principal.organization_id)
    if await profiles.holders(profile.id):
        raise Conflict("Users hold this profile; give them another one first.")
    await profiles.delete(profile)
    audit(
        session, principal, AuditAction.PROFILE_DELETED, target_type="profile", target_id=profile_id
    )


async def assign_profile(
    session: AsyncSession, user: User, profile_id: uuid.UUID, *, field: str = "body.profile_id"
) -> None:
    """Give `user` a profile of their organization; `is_admin` follows the profile."""
    profile = await repository.ProfileRepository(session, user.organization_id).get(profile_id)
    if profile is None:
        raise _invalid(field, "not_found", "no such profile")
    user.profile_id = profile.id
    user.is_admin = profile.builtin == BuiltinProfile.ADMINISTRATOR.value


async def permissions_of_profile_id(
    session: AsyncSession, organization_id: uuid.UUID, profile_id: uuid.UUID
) -> Permissions | None:
    """What the organization's profile `profile_id` grants; None when it has no such profile."""
    profile = await repository.ProfileRepository(session, organization_id).get(profile_id)
    return None if profile is None else permissions_of(profile)


async def get_profile_of(session: AsyncSession, user: User) -> Profile:
    profile = await repository.ProfileRepository(session, user.organization_id).get(user.profile_id)
    if profile is None:  # the foreign key forbids it
        raise RuntimeError("a user without a profile")
    return profile


async def builtin_profile_id(
    session: AsyncSession, organization_id: uuid.UUID, builtin: BuiltinProfile
) -> uuid.UUID:
    return (await ensure_builtin_profiles(session, organization_id))[builtin].id


# -- roles ----------------------------------------------------------------------------------


async def list_roles(*, session: AsyncSession, principal: Principal) -> list[Role]:
    return await repository.RoleRepository(session, principal.organization_id).list()


async def get_role(*, session: AsyncSession, principal: Principal, role_id: uuid.UUID) -> Role:
    role = await repository.RoleRepository(session, principal.organization_id).get(role_id)
    if role is None:
        raise NotFound("No such role.")
    return role


async def _check_parent(
    roles: repository.RoleRepository, role_id: uuid.UUID | None, parent_id: uuid.UUID | None
) -> None:
    if parent_id is None:
        return
    parents = await roles.parents()
    if parent_id not in parents:
        raise _invalid("body.parent_id", "not_found", "no such role")
    # Walk up from the new parent: meeting the role itself would close a cycle.
    seen: set[uuid.UUID] = set()
    current: uuid.UUID | None = parent_id
    while current is not None and current not in seen:
        if current == role_id:
            raise _invalid(
                "body.parent_id", "cycle", "a role cannot report to itself or below itself"
            )
        seen.add(current)
        current = parents.get(current)


async def create_role(*, session: AsyncSession, principal: Principal, payload: RoleCreate) -> Role:
    roles = repository.RoleRepository(session, principal.organization_id)
    if await roles.name_taken(payload.name):
        raise Conflict("A role with this name exists.")
    await _check_parent(roles, None, payload.parent_id)
    await delegation.check_role_change(
        session, principal, role_id=None, new_parent_id=payload.parent_id, parent_changes=True
    )
    role = Role(
        id=uuid.uuid4(),
        organization_id=principal.organization_id,
        name=payload.name,
        parent_id=payload.parent_id,
        ip_allowlist=_normalized_allowlist(payload.ip_allowlist),
    )
    await roles.add(role)
    audit(session, principal, AuditAction.ROLE_CREATED, target_type="role", target_id=role.id)
    return role


async def update_role(
    *, session: AsyncSession, principal: Principal, role_id: uuid.UUID, payload: RoleUpdate
) -> Role:
    role = await get_role(session=session, principal=principal, role_id=role_id)
    roles = repository.RoleRepository(session, principal.organization_id)
    changes = payload.model_dump(exclude_unset=True)
    if "name" in changes and await roles.name_taken(changes["name"], except_id=role.id):
        raise Conflict("A role with this name exists.")
    if "parent_id" in changes:
        await _check_parent(roles, role.id, changes["parent_id"])
    await delegation.check_role_change(
        session,
        principal,
        role_id=role.id,
        new_parent_id=changes.get("parent_id"),
        parent_changes="parent_id" in changes,
    )
    confirmed = changes.pop("confirm_self_lockout", False)
    if "ip_allowlist" in changes:
        changes["ip_allowlist"] = _normalized_allowlist(changes["ip_allowlist"])
        if (
            changes["ip_allowlist"] is not None
            and principal.role_id == role.id
            and not confirmed
            and not is_allowed(parse_networks(changes["ip_allowlist"].split()), principal.client_ip)
        ):
            raise Conflict(
                "This list would lock you out: your address is not in it. Add it, or send "
                "`confirm_self_lockout: true` to save anyway."
            )
    for name, value in changes.items():
        setattr(role, name, value)
    await session.flush()
    audit(
        session,
        principal,
        AuditAction.ROLE_UPDATED,
        target_type="role",
        target_id=role.id,
        fields=changes,
    )
    return role


def _normalized_allowlist(cidrs: list[str] | None) -> str | None:
    if cidrs is None:
        return None
    return "\n".join(str(network) for network in parse_networks(cidrs, field="body.ip_allowlist"))


async def delete_role(*, session: AsyncSession, principal: Principal, role_id: uuid.UUID) -> None:
    role = await get_role(session=session, principal=principal, role_id=role_id)
    roles = repository.RoleRepository(session, principal.organization_id)
    await delegation.check_role_change(
        session, principal, role_id=role.id, new_parent_id=None, parent_changes=False
    )
    if await roles.in_use(role.id):
        raise Conflict("Users or roles still report to this role; move them first.")
    await roles.delete(role)
    audit(session, principal, AuditAction.ROLE_DELETED, target_type="role", target_id=role_id)


async def check_role(
    session: AsyncSession, organization_id: uuid.UUID, role_id: uuid.UUID | None
) -> None:
    if (
        role_id is not None
        and await repository.RoleRepository(session, organization_id).get(role_id) is None
    ):
        raise _invalid("body.role_id", "not_found", "no such role")


# -- groups ---------------------------------------------------------------------------------


async def list_groups(
    *, session: AsyncSession, principal: Principal
) -> list[tuple[Group, list[uuid.UUID]]]:
    groups = repository.GroupRepository(session, principal.organization_id)
    found = await groups.list()
    members = await groups.members([group.id for group in found])
    return [(group, members[group.id]) for group in found]


async def get_group(
    *, session: AsyncSession, principal: Principal, group_id: uuid.UUID
) -> tuple[Group, list[uuid.UUID]]:
    groups = repository.GroupRepository(session, principal.organization_id)
    group = await groups.get(group_id)
    if group is None:
        raise NotFound("No such group.")
    return group, (await groups.members([group.id]))[group.id]


async def _check_members(
    session: AsyncSession, organization_id: uuid.UUID, user_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    known = {user.id for user in await UserRepository(session, organization_id).list()}
    if not set(user_ids) <= known:
        raise _invalid(
            "body.member_ids", "not_found", "names a user this organization does not have"
        )
    return sorted(set(user_ids))


async def create_group(
    *, session: AsyncSession, principal: Principal, payload: GroupCreate
) -> tuple[Group, list[uuid.UUID]]:
    groups = repository.GroupRepository(session, principal.organization_id)
    if await groups.name_taken(payload.name):
        raise Conflict("A group with this name exists.")
    members = await _check_members(session, principal.organization_id, payload.member_ids)
    delegation.check_group_change(principal, group_id=None, members=members)
    group = Group(id=uuid.uuid4(), organization_id=principal.organization_id, name=payload.name)
    await groups.add(group)
    await groups.set_members(group.id, members)
    audit(
        session,
        principal,
        AuditAction.GROUP_CREATED,
        target_type="group",
        target_id=group.id,
        fields=["name", "member_ids"],
    )
    return group, members


async def update_group(
    *, session: AsyncSession, principal: Principal, group_id: uuid.UUID, payload: GroupUpdate
) -> tuple[Group, list[uuid.UUID]]:
    group, members = await get_group(session=session, principal=principal, group_id=group_id)
    delegation.check_group_change(principal, group_id=group.id, members=members)
    groups = repository.GroupRepository(session, principal.organization_id)
    changes = payload.model_dump(exclude_unset=True)
    if "name" in changes:
        if await groups.name_taken(changes["name"], except_id=group.id):
            raise Conflict("A group with this name exists.")
        group.name = changes["name"]
    if "member_ids" in changes:
        members = await _check_members(session, principal.organization_id, changes["member_ids"])
        await groups.set_members(group.id, members)
    await session.flush()
    audit(
        session,
        principal,
        AuditAction.GROUP_UPDATED,
        target_type="group",
        target_id=group.id,
        fields=changes,
    )
    return group, members


async def delete_group(*, session: AsyncSession, principal: Principal, group_id: uuid.UUID) -> None:
    group, members = await get_group(session=session, principal=principal, group_id=group_id)
    delegation.check_group_change(principal, group_id=group.id, members=members)
    await repository.GroupRepository(session, principal.organization_id).delete(group)
    audit(session, principal, AuditAction.GROUP_DELETED, target_type="group", target_id=group_id)


# -- sharing --------------------------------------------------------------------------------

_OPENNESS = {SharingLevel.PRIVATE: 0, SharingLevel.READ_ONLY: 1, SharingLevel.READ_WRITE: 2}


async def get_sharing(*, session: AsyncSession, principal: Principal) -> SharingDefaults:
    stored = await repository.sharing_defaults(session, principal.organization_id)
    return SharingDefaults(
        **{
            module.value: SharingLevel(stored.get(module.value, DEFAULT_LEVEL.value))
            for module in Module
        }
    )


async def set_sharing(
    *, session: AsyncSession, principal: Principal, payload: SharingDefaults
) -> SharingDefaults:
    before = await get_sharing(session=session, principal=principal)
    changed, opened = [], []
    for module in Module:
        level: SharingLevel = getattr(payload, module.value)
        was: SharingLevel = getattr(before, module.value)
        if was is not level:
            changed.append(module.value)
        if _OPENNESS[level] > _OPENNESS[was]:
            opened.append(module.value)
    delegation.check_sharing_opened(principal, opened)
    for module in Module:
        level = getattr(payload, module.value)
        await repository.set_sharing_default(
            session, principal.organization_id, module.value, level.value
        )
    if changed:
        audit(
            session,
            principal,
            AuditAction.SHARING_CHANGED,
            target_type="organization",
            target_id=principal.organization_id,
            fields=changed,
        )
    return await get_sharing(session=session, principal=principal)


async def visibility_for(
    session: AsyncSession, principal: Principal, module: Module
) -> Visibility | None:
    """What the caller may see of `module`; None when nothing limits them (a partner client,
    whose scopes decide). Cached for the request's session."""
    if principal.permissions is None or principal.user_id is None:
        return None
    cache: dict[Any, Visibility] = session.info.setdefault("visibility", {})
    key = (principal.user_id, module)
    if key in cache:
        return cache[key]
    organization_id = principal.organization_id
    if principal.has_right(Right.VIEW_ALL_RECORDS):
        # Nothing limits them; no need to read roles, groups or defaults.
        visibility = Visibility(module, SharingLevel.READ_WRITE, True, frozenset(), frozenset())
        cache[key] = visibility
        return visibility
    inputs = await repository.visibility_inputs(
        session, organization_id, principal.user_id, roles=principal.role_id is not None
    )
    level = SharingLevel(inputs.defaults.get(module.value, DEFAULT_LEVEL.value))
    owner_ids = {principal.user_id}
    if principal.role_id is not None:
        below = delegation.descendants(inputs.parents, principal.role_id)
        owner_ids |= await repository.RoleRepository(session, organization_id).users_in(below)
    groups = inputs.groups
    visibility = Visibility(
        module=module,
        level=level,
        sees_all=principal.has_right(Right.VIEW_ALL_RECORDS),
        owner_ids=frozenset(owner_ids),
        group_ids=frozenset(groups),
    )
    cache[key] = visibility
    return visibility
