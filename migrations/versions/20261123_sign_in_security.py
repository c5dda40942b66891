"""sign-in security: TOTP credentials, recovery codes, MFA challenges, throttling,
mandatory two-factor, IP allowlists

Revision ID: 20261123_sign_in_security
Revises: 20261123_sqlite_planner_stats
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261123_sign_in_security"
down_revision = "20261123_sqlite_planner_stats"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _owned_by_user(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=f"fk_{table}_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
        ),
    ]


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("mfa_failed_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("mfa_locked_until", TZ, nullable=True))
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(
            sa.Column("mfa_required", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    op.create_table(
        "totp_credentials",
        *_owned_by_user("totp_credentials"),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("confirmed_at", TZ, nullable=True),
        sa.Column("last_used_step", sa.Integer(), nullable=True),
        sa.UniqueConstraint("user_id", name="uq_totp_credentials_user_id"),
    )
    op.create_index("ix_totp_credentials_organization_id", "totp_credentials", ["organization_id"])

    op.create_table(
        "recovery_codes",
        *_owned_by_user("recovery_codes"),
        sa.Column("lookup", sa.String(8), nullable=False),
        sa.Column("code_hash", sa.String(255), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
    )
    op.create_index("ix_recovery_codes_organization_id", "recovery_codes", ["organization_id"])
    op.create_index("ix_recovery_codes_user_id", "recovery_codes", ["user_id"])

    op.create_table(
        "mfa_challenges",
        *_owned_by_user("mfa_challenges"),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_mfa_challenges_token_hash"),
    )
    op.create_index("ix_mfa_challenges_organization_id", "mfa_challenges", ["organization_id"])
    op.create_index("ix_mfa_challenges_user_id", "mfa_challenges", ["user_id"])

    op.create_table(
        "ip_allowlists",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("cidrs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name="pk_ip_allowlists"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_ip_allowlists_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("ip_allowlists")
    op.drop_table("mfa_challenges")
    op.drop_table("recovery_codes")
    op.drop_table("totp_credentials")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("mfa_required")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("mfa_locked_until")
        batch.drop_column("mfa_failed_count")
