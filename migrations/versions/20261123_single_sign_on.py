"""single sign-on: identity providers, linked identities, SSO attempts

Revision ID: 20261123_single_sign_on
Revises: 20261123_sign_in_security
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261123_single_sign_on"
down_revision = "20261123_sign_in_security"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


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


def upgrade() -> None:
    op.create_table(
        "identity_providers",
        *_tenant("identity_providers"),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("client_secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("authorization_endpoint", sa.String(500), nullable=False),
        sa.Column("token_endpoint", sa.String(500), nullable=False),
        sa.Column("jwks_uri", sa.String(500), nullable=False),
        sa.Column("frontend_redirect_url", sa.String(500), nullable=False),
        sa.Column("allow_jit", sa.Boolean(), nullable=False),
        sa.Column("require_sso", sa.Boolean(), nullable=False),
        sa.Column("break_glass_user_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("organization_id", name="uq_identity_providers_organization_id"),
        sa.ForeignKeyConstraint(
            ["break_glass_user_id"],
            ["users.id"],
            name="fk_identity_providers_break_glass_user_id_users",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_identity_providers_organization_id", "identity_providers", ["organization_id"])

    op.create_table(
        "user_identities",
        *_tenant("user_identities"),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("issuer", "subject", name="uq_user_identities_issuer_subject"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_user_identities_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_user_identities_organization_id", "user_identities", ["organization_id"])
    op.create_index("ix_user_identities_user_id", "user_identities", ["user_id"])

    op.create_table(
        "sso_attempts",
        *_tenant("sso_attempts"),
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("completed_at", TZ, nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("handoff_hash", sa.String(64), nullable=True),
        sa.Column("handoff_used_at", TZ, nullable=True),
        sa.UniqueConstraint("state_hash", name="uq_sso_attempts_state_hash"),
        sa.UniqueConstraint("handoff_hash", name="uq_sso_attempts_handoff_hash"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_sso_attempts_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_sso_attempts_organization_id", "sso_attempts", ["organization_id"])


def downgrade() -> None:
    op.drop_table("sso_attempts")
    op.drop_table("user_identities")
    op.drop_table("identity_providers")
