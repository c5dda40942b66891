"""SQL of access control: profiles, roles, groups, members, sharing defaults, record shares."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    String,
    cast,
    delete,
    func,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.access.models import (
    Group,
    GroupMember,
    Profile,
    RecordShare,
    Role,
    SharingDefault,
)
from crm_service.auth.models import User
from crm_service.db.repository import ModelT, OrganizationRepository


class NamedRepository(OrganizationRepository[ModelT]):
    """Profiles, roles and groups: listed by name; names unique per organization, any case."""

    async def list(self) -> list[ModelT]:
        result = await self.session.execute(self.scoped().order_by(self.model.name))
        return list(result.scalars())

    async def name_taken(self, name: str, *, except_id: uuid.UUID | None = None) -> bool:
        statement = self.scoped().where(func.lower(self.model.name) == name.lower())
        if except_id is not None:
            statement = statement.where(self.model.id != except_id)
        return (await self.session.execute(statement.limit(1))).first() is not None


class ProfileRepository(NamedRepository[Profile]):
    model = Profile

    async def builtin(self, name: str) -> Profile | None:
        result = await self.session.execute(self.scoped().where(Profile.builtin == name))
        return result.scalar_one_or_none()

    async def holders(self, profile_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(func.count()).where(
                User.organization_id == self.organization_id, User.profile_id == profile_id
            )
        )
        return int(result.scalar_one())


class RoleRepository(NamedRepository[Role]):
    model = Role

    async def parents(self) -> dict[uuid.UUID, uuid.UUID | None]:
        result = await self.session.execute(
            select(Role.id, Role.parent_id).where(Role.organization_id == self.organization_id)
        )
        return {key: value for key, value in result.all()}

    async def users_in(self, role_ids: set[uuid.UUID]) -> set[uuid.UUID]:
        if not role_ids:
            return set()
        result = await self.session.execute(
            select(User.id).where(
                User.organization_id == self.organization_id, User.role_id.in_(role_ids)
            )
        )
        return set(result.scalars())

    async def in_use(self, role_id: uuid.UUID) -> bool:
        users = await self.users_in({role_id})
        children = await self.session.execute(
            self.scoped().where(Role.parent_id == role_id).limit(1)
        )
        return bool(users) or children.first() is not None


class GroupRepository(NamedRepository[Group]):
    model = Group

    async def members(self, group_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
        found: dict[uuid.UUID, list[uuid.UUID]] = {group_id: [] for group_id in group_ids}
        if not group_ids:
            return found
        result = await self.session.execute(
            select(GroupMember.group_id, GroupMember.user_id)
            .where(
                GroupMember.organization_id == self.organization_id,
                GroupMember.group_id.in_(group_ids),
            )
            .order_by(GroupMember.user_id)
        )
        for group_id, user_id in result.all():
            found[group_id].append(user_id)
        return found

    async def set_members(self, group_id: uuid.UUID, user_ids: list[uuid.UUID]) -> None:
        await self.session.execute(
            delete(GroupMember).where(
                GroupMember.organization_id == self.organization_id,
                GroupMember.group_id == group_id,
            )
        )
        self.session.add_all(
            GroupMember(organization_id=self.organization_id, group_id=group_id, user_id=user_id)
            for user_id in user_ids
        )
        await self.session.flush()

    async def groups_of(self, user_id: uuid.UUID) -> set[uuid.UUID]:
        result = await self.session.execute(
            select(GroupMember.group_id).where(
                GroupMember.organization_id == self.organization_id,
                GroupMember.user_id == user_id,
            )
        )
        return set(result.scalars())


async def lock_active_administrators(
    session: AsyncSession, organization_id: uuid.UUID
) -> list[uuid.UUID]:
    """The organization's active Administrators, locked until the transaction ends: the
    last-Administrator rule counts them under that lock.

    A no-op UPDATE takes the lock on both databases (SQLite has no FOR UPDATE and starts its
    write transaction only at the first write); a concurrent demotion waits for it, and the
    count that follows sees what committed before.
    """
    administrators = (
        User.organization_id == organization_id,
        User.is_admin.is_(True),
        User.is_active.is_(True),
    )
    await session.execute(
        update(User)
        .where(*administrators)
        .values(is_admin=User.is_admin, updated_at=User.updated_at)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(select(User.id).where(*administrators).order_by(User.id))
    return list(result.scalars())


@dataclass(frozen=True)
class VisibilityInputs:
    """What a signed-in user's visibility of records is made of, read in one statement: the
    organization's sharing defaults, the user's groups and (when asked) the role tree."""

    defaults: dict[str, str]
    groups: set[uuid.UUID]
    parents: dict[uuid.UUID, uuid.UUID | None]


async def visibility_inputs(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID, *, roles: bool
) -> VisibilityInputs:
    """The sharing defaults, the user's group ids and, with `roles`, every role's parent: one
    round trip where three separate reads were."""
    parts: list[Any] = [
        select(
            literal_column("'default'").label("kind"),
            SharingDefault.module.label("a"),
            SharingDefault.access.label("b"),
        ).where(SharingDefault.organization_id == organization_id),
        select(
            literal_column("'group'"), cast(GroupMember.group_id, String), cast(null(), String)
        ).where(GroupMember.organization_id == organization_id, GroupMember.user_id == user_id),
    ]
    if roles:
        parts.append(
            select(
                literal_column("'role'"), cast(Role.id, String), cast(Role.parent_id, String)
            ).where(Role.organization_id == organization_id)
        )
    defaults: dict[str, str] = {}
    groups: set[uuid.UUID] = set()
    parents: dict[uuid.UUID, uuid.UUID | None] = {}
    for kind, a, b in (await session.execute(union_all(*parts))).all():
        if kind == "default":
            defaults[a] = b
        elif kind == "group":
            groups.add(uuid.UUID(a))
        else:
            parents[uuid.UUID(a)] = None if b is None else uuid.UUID(b)
    return VisibilityInputs(defaults, groups, parents)


async def sharing_defaults(session: AsyncSession, organization_id: uuid.UUID) -> dict[str, str]:
    result = await session.execute(
        select(SharingDefault.module, SharingDefault.access).where(
            SharingDefault.organization_id == organization_id
        )
    )
    return {key: value for key, value in result.all()}


async def set_sharing_default(
    session: AsyncSession, organization_id: uuid.UUID, module: str, access: str
) -> None:
    row = await session.get(SharingDefault, (organization_id, module))
    if row is None:
        session.add(SharingDefault(organization_id=organization_id, module=module, access=access))
    else:
        row.access = access
    await session.flush()


class RecordShareRepository(OrganizationRepository[RecordShare]):
    model = RecordShare

    async def of_record(self, module: str, record_id: uuid.UUID) -> list[RecordShare]:
        result = await self.session.execute(
            self.scoped()
            .where(RecordShare.module == module, RecordShare.record_id == record_id)
            .order_by(RecordShare.created_at, RecordShare.id)
        )
        return list(result.scalars())

    async def find(
        self, module: str, record_id: uuid.UUID, group_id: uuid.UUID
    ) -> RecordShare | None:
        result = await self.session.execute(
            self.scoped().where(
                RecordShare.module == module,
                RecordShare.record_id == record_id,
                RecordShare.group_id == group_id,
            )
        )
        return result.scalar_one_or_none()

    async def delete_for_record(self, module: str, record_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(RecordShare).where(
                RecordShare.organization_id == self.organization_id,
                RecordShare.module == module,
                RecordShare.record_id == record_id,
            )
        )
