"""access control: profiles, roles, groups, sharing defaults, record shares; users get a
profile (Administrator or Standard, by is_admin) and an optional role

Revision ID: 20261123_access_control
Revises: 20261123_audit_log
Create Date: 2026-11-23
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "20261123_access_control"
down_revision = "20261123_audit_log"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
MODULES = ("accounts", "contacts", "leads")
# The built-in profiles as they were when this migration was written.
BUILTIN = {
    "administrator": (
        "Administrator",
        "Everything: every record, sensitive values, exports and administration.",
        {m: ["create", "delete", "export", "read", "update"] for m in MODULES},
        True,
        ["manage_access", "manage_settings", "manage_users", "view_all_records", "view_audit"],
    ),
    "standard": (
        "Standard",
        "Create, read, update and delete records as sharing allows; no export, no sensitive "
        "values, no administration.",
        {m: ["create", "delete", "read", "update"] for m in MODULES},
        False,
        [],
    ),
}


def _tenant(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=f"fk_{table}_organization_id_organizations",
            ondelete="CASCADE",
        ),
    ]


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "profiles",
        *_tenant("profiles"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("builtin", sa.String(16), nullable=True),
        sa.Column("module_permissions", sa.Text(), nullable=False),
        sa.Column("view_sensitive", sa.Boolean(), nullable=False),
        sa.Column("rights", sa.Text(), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("organization_id", "name", name="uq_profiles_organization_id_name"),
    )
    op.create_index("ix_profiles_organization_id", "profiles", ["organization_id"])

    op.create_table(
        "roles",
        *_tenant("roles"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("ip_allowlist", sa.Text(), nullable=True),
        *_timestamps(),
        sa.UniqueConstraint("organization_id", "name", name="uq_roles_organization_id_name"),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["roles.id"], name="fk_roles_parent_id_roles", ondelete="RESTRICT"
        ),
    )
    op.create_index("ix_roles_organization_id", "roles", ["organization_id"])
    op.create_index("ix_roles_parent_id", "roles", ["parent_id"])

    op.create_table(
        "user_groups",
        *_tenant("user_groups"),
        sa.Column("name", sa.String(100), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("organization_id", "name", name="uq_user_groups_organization_id_name"),
    )
    op.create_index("ix_user_groups_organization_id", "user_groups", ["organization_id"])

    op.create_table(
        "group_members",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "user_id", name="pk_group_members"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_group_members_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["user_groups.id"], name="fk_group_members_group_id_user_groups", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_group_members_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_group_members_organization_id", "group_members", ["organization_id"])
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])

    op.create_table(
        "sharing_defaults",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("module", sa.String(16), nullable=False),
        sa.Column("access", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "module", name="pk_sharing_defaults"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_sharing_defaults_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "record_shares",
        *_tenant("record_shares"),
        sa.Column("module", sa.String(16), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("access", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.UniqueConstraint(
            "module", "record_id", "group_id", name="uq_record_shares_module_record_id_group_id"
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["user_groups.id"], name="fk_record_shares_group_id_user_groups", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name="fk_record_shares_created_by_id_users", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_record_shares_organization_id", "record_shares", ["organization_id"])
    op.create_index("ix_record_shares_record_id", "record_shares", ["record_id"])
    op.create_index("ix_record_shares_group_id", "record_shares", ["group_id"])

    # Every organization gets the two built-in profiles; users get one by is_admin.
    bind = op.get_bind()
    profiles = sa.table(
        "profiles",
        sa.column("id", sa.Uuid()),
        sa.column("organization_id", sa.Uuid()),
        sa.column("name", sa.String()),
        sa.column("description", sa.String()),
        sa.column("builtin", sa.String()),
        sa.column("module_permissions", sa.Text()),
        sa.column("view_sensitive", sa.Boolean()),
        sa.column("rights", sa.Text()),
        sa.column("created_at", TZ),
        sa.column("updated_at", TZ),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("profile_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("role_id", sa.Uuid(), nullable=True))
    users = sa.table(
        "users",
        sa.column("organization_id", sa.Uuid()),
        sa.column("is_admin", sa.Boolean()),
        sa.column("profile_id", sa.Uuid()),
    )
    now = datetime.now(UTC)
    for (organization_id,) in bind.execute(sa.text("SELECT id FROM organizations")).all():
        organization_id = organization_id if isinstance(organization_id, uuid.UUID) else uuid.UUID(str(organization_id))
        ids = {}
        for builtin, (name, description, modules, view_sensitive, rights) in BUILTIN.items():
            ids[builtin] = uuid.uuid4()
            bind.execute(
                profiles.insert().values(
                    id=ids[builtin],
                    organization_id=organization_id,
                    name=name,
                    description=description,
                    builtin=builtin,
                    module_permissions=json.dumps(modules),
                    view_sensitive=view_sensitive,
                    rights=json.dumps(rights),
                    created_at=now,
                    updated_at=now,
                )
            )
        for is_admin, builtin in ((True, "administrator"), (False, "standard")):
            bind.execute(
                users.update()
                .where(users.c.organization_id == organization_id, users.c.is_admin == is_admin)
                .values(profile_id=ids[builtin])
            )
    with op.batch_alter_table("users") as batch:
        batch.alter_column("profile_id", existing_type=sa.Uuid(), nullable=False)
        batch.create_foreign_key(
            "fk_users_profile_id_profiles", "profiles", ["profile_id"], ["id"], ondelete="RESTRICT"
        )
        batch.create_foreign_key(
            "fk_users_role_id_roles", "roles", ["role_id"], ["id"], ondelete="RESTRICT"
        )
        batch.create_index("ix_users_profile_id", ["profile_id"])
        batch.create_index("ix_users_role_id", ["role_id"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_role_id")
        batch.drop_index("ix_users_profile_id")
        batch.drop_constraint("fk_users_role_id_roles", type_="foreignkey")
        batch.drop_constraint("fk_users_profile_id_profiles", type_="foreignkey")
        batch.drop_column("role_id")
        batch.drop_column("profile_id")
    op.drop_table("record_shares")
    op.drop_table("sharing_defaults")
    op.drop_table("group_members")
    op.drop_table("user_groups")
    op.drop_table("roles")
    op.drop_table("profiles")
