"""Delegated administration: the rules that keep a user with some administration rights from
giving themselves, or anyone, more than they hold.

- Nobody grants, directly or through a user they create or edit, a right, a module operation
  or `view_sensitive` they do not hold; the Administrator profile (and `is_admin`) is given
  only by an Administrator.
- Nobody manages a user who holds more than they do (an Administrator is managed only by an
  Administrator), and nobody edits the profile they hold.
- Roles: outside the Administrator profile, a user places others only in their own role or
  below it, and edits only the roles below their own; a user with no role places nobody.
- Groups: outside the Administrator profile, a user changes only the groups they belong to
  (records shared with a group are what membership gives).
- Sharing defaults: opening them up needs `view_all_records`, which is what they give.
- The last active Administrator of an organization is never demoted or disabled (409).

Every refusal is a 403 whose audit event is committed alone: the request's other changes are
rolled back first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access import repository
from crm_service.audit.actions import AuditAction, Outcome
from crm_service.audit.service import record as audit
from crm_service.errors import Conflict, Forbidden
from crm_service.security.permissions import Permissions, Right
from crm_service.security.principal import Principal


class DelegationRefused(Forbidden):
    slug, title = "delegation-refused", "Beyond your own rights"


def _refuse(
    principal: Principal,
    detail: str,
    *,
    reason: str,
    target_type: str,
    target_id: uuid.UUID | None,
    beyond: Iterable[str] = (),
) -> DelegationRefused:
    error = DelegationRefused(detail)
    names = sorted(beyond)

    def keep(session: AsyncSession) -> None:
        audit(
            session,
            principal,
            AuditAction.DELEGATION_REFUSED,
            target_type=target_type,
            target_id=target_id,
            fields=names,
            outcome=Outcome.DENIED,
            reason=reason,
        )

    error.after_rollback = keep
    return error


def is_administrator(principal: Principal) -> bool:
    return principal.permissions is not None and principal.permissions.administrator


def _holder(principal: Principal) -> Permissions:
    # Partner clients carry no profile: they administer nothing.
    return principal.permissions or Permissions()


def check_grant(
    principal: Principal,
    granted: Permissions,
    *,
    reason: str,
    target_type: str,
    target_id: uuid.UUID | None,
) -> None:
    """Refuse when `granted` holds anything the caller does not."""
    beyond = granted.beyond(_holder(principal))
    if beyond:
        raise _refuse(
            principal,
            "You can only give what your own profile holds; see the audit log for what was "
            "beyond it.",
            reason=reason,
            target_type=target_type,
            target_id=target_id,
            beyond=beyond,
        )


def check_manages(principal: Principal, held: Permissions, *, user_id: uuid.UUID) -> None:
    """A user is managed (edited, disabled, signed out) only by someone covering their
    profile: an Administrator only by an Administrator."""
    check_grant(principal, held, reason="target_holds_more", target_type="user", target_id=user_id)


def check_not_own_profile(principal: Principal, profile_id: uuid.UUID) -> None:
    if principal.profile_id == profile_id:
        raise _refuse(
            principal,
            "Nobody changes the profile they hold; ask another administrator.",
            reason="own_profile",
            target_type="profile",
            target_id=profile_id,
        )


def descendants(parents: dict[uuid.UUID, uuid.UUID | None], role_id: uuid.UUID) -> set[uuid.UUID]:
    """The roles below `role_id` (not itself)."""
    children: dict[uuid.UUID, list[uuid.UUID]] = {}
    for child, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(child)
    found: set[uuid.UUID] = set()
    stack = list(children.get(role_id, []))
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(children.get(current, []))
    return found


async def _roles_below(
    session: AsyncSession, principal: Principal
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """(roles the caller may place people in, roles the caller may edit)."""
    if principal.role_id is None:
        return set(), set()
    parents = await repository.RoleRepository(session, principal.organization_id).parents()
    below = descendants(parents, principal.role_id)
    return below | {principal.role_id}, below


async def check_role_placement(
    session: AsyncSession,
    principal: Principal,
    *,
    new_role_id: uuid.UUID | None,
    current_role_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
) -> None:
    """Placing a user in `new_role_id` (from `current_role_id`): only within the caller's own
    role and below, and never moving someone who sits above or beside the caller."""
    if is_administrator(principal):
        return
    placeable, _ = await _roles_below(session, principal)
    for role_id in (new_role_id, current_role_id):
        if role_id is not None and role_id not in placeable:
            raise _refuse(
                principal,
                "You can place people only in your own role or the roles below it.",
                reason="role_above_own",
                target_type="user",
                target_id=user_id,
            )


async def check_role_change(
    session: AsyncSession,
    principal: Principal,
    *,
    role_id: uuid.UUID | None,
    new_parent_id: uuid.UUID | None,
    parent_changes: bool,
) -> None:
    """Creating (`role_id` None), editing or deleting a role: only below the caller's own, and
    never hung above it."""
    if is_administrator(principal):
        return
    placeable, editable = await _roles_below(session, principal)
    if role_id is not None and role_id not in editable:
        raise _refuse(
            principal,
            "You can change only the roles below your own.",
            reason="role_not_below_own",
            target_type="role",
            target_id=role_id,
        )
    if parent_changes and (new_parent_id is None or new_parent_id not in placeable):
        raise _refuse(
            principal,
            "A role you manage must report to your own role or one below it.",
            reason="role_above_own",
            target_type="role",
            target_id=role_id,
        )


def check_group_change(
    principal: Principal, *, group_id: uuid.UUID | None, members: Iterable[uuid.UUID]
) -> None:
    """Outside the Administrator profile: only groups one belongs to, and a new group only
    with oneself in it (so nobody opens to others what is shared with a group they lack).
    `members` are the group's members now, or those a new group is created with."""
    if is_administrator(principal) or principal.user_id in set(members):
        return
    raise _refuse(
        principal,
        "You can change only the groups you belong to; a group you create must include you.",
        reason="not_a_member",
        target_type="group",
        target_id=group_id,
    )


def check_sharing_opened(principal: Principal, opened: list[str]) -> None:
    """Opening a module's sharing default shows its records to everyone: it takes
    `view_all_records`, which is what that amounts to."""
    if opened and not principal.has_right(Right.VIEW_ALL_RECORDS):
        raise _refuse(
            principal,
            "Opening sharing defaults needs the right view_all_records.",
            reason="sharing_opened",
            target_type="organization",
            target_id=principal.organization_id,
            beyond=opened,
        )


async def keep_an_administrator(
    session: AsyncSession, principal: Principal, *, user_id: uuid.UUID
) -> None:
    """Refuse (409) to demote or disable the organization's last active Administrator. The
    active Administrators are locked while counted, so two demotions cannot both pass."""
    remaining = await repository.lock_active_administrators(session, principal.organization_id)
    if set(remaining) <= {user_id}:
        raise Conflict(
            "This is the organization's last active Administrator; make someone else an "
            "Administrator first."
        )
