"""oauth clients: partner clients, their access tokens and used client-assertion ids

Revision ID: 20261202_oauth_clients
Revises: 20261202_roles_ip_allowlist
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_oauth_clients"
down_revision = "20261202_mail_outbox"
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
        "oauth_clients",
        *_tenant("oauth_clients"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("ip_allowlist", sa.Text(), nullable=True),
        sa.Column("rate_limits", sa.Text(), nullable=True),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("previous_secret_hash", sa.String(64), nullable=True),
        sa.Column("previous_secret_expires_at", TZ, nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("secret_hash", name="uq_oauth_clients_secret_hash"),
    )
    op.create_index("ix_oauth_clients_organization_id", "oauth_clients", ["organization_id"])

    op.create_table(
        "oauth_tokens",
        *_tenant("oauth_tokens"),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("issued_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_oauth_tokens_token_hash"),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["oauth_clients.id"],
            name="fk_oauth_tokens_client_id_oauth_clients",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_oauth_tokens_organization_id", "oauth_tokens", ["organization_id"])
    op.create_index("ix_oauth_tokens_client_id", "oauth_tokens", ["client_id"])
    op.create_index("ix_oauth_tokens_expires_at", "oauth_tokens", ["expires_at"])

    op.create_table(
        "oauth_used_assertions",
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("jti_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti_hash", name="pk_oauth_used_assertions"),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["oauth_clients.id"],
            name="fk_oauth_used_assertions_client_id_oauth_clients",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_oauth_used_assertions_expires_at", "oauth_used_assertions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oauth_used_assertions_expires_at", table_name="oauth_used_assertions")
    op.drop_table("oauth_used_assertions")
    op.drop_index("ix_oauth_tokens_expires_at", table_name="oauth_tokens")
    op.drop_index("ix_oauth_tokens_client_id", table_name="oauth_tokens")
    op.drop_index("ix_oauth_tokens_organization_id", table_name="oauth_tokens")
    op.drop_table("oauth_tokens")
    op.drop_index("ix_oauth_clients_organization_id", table_name="oauth_clients")
    op.drop_table("oauth_clients")
