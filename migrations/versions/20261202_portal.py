"""privacy portal: one-time sign-in codes and portal sessions

portal_sign_ins: a code mailed to an email address (named by its blind index), kept as an
HMAC under the browser's sign-in token; single use, ten minutes, five attempts.
portal_sessions: a signed-in visit, the cookie's token kept as its SHA-256, the address
sealed under the organization's key.

Revision ID: 20261202_portal
Revises: 20261202_privacy_requests
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_portal"
down_revision = "20261202_privacy_requests"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _organization(table: str) -> list[sa.SchemaItem]:
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
        "portal_sign_ins",
        *_organization("portal_sign_ins"),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("email_bidx", sa.String(64), nullable=False),
        sa.Column("code_mac", sa.String(64), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_portal_sign_ins_token_hash"),
    )
    op.create_index("ix_portal_sign_ins_organization_id", "portal_sign_ins", ["organization_id"])
    op.create_index(
        "ix_portal_sign_ins_expires", "portal_sign_ins", ["organization_id", "expires_at"]
    )
    op.create_table(
        "portal_sessions",
        *_organization("portal_sessions"),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("email_bidx", sa.String(64), nullable=False),
        sa.Column("email_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_portal_sessions_token_hash"),
    )
    op.create_index("ix_portal_sessions_organization_id", "portal_sessions", ["organization_id"])
    op.create_index(
        "ix_portal_sessions_expires", "portal_sessions", ["organization_id", "expires_at"]
    )


def downgrade() -> None:
    op.drop_table("portal_sessions")
    op.drop_table("portal_sign_ins")
