"""erasure receipts and the blocklist of erased subjects' emails and phone numbers

Neither table holds a value of personal data: receipts name records by id and what was erased
by count; blocklist entries hold one blind-index HMAC each. The downgrade drops both (the
blocklist with them: erased identifiers may then be entered again).

Revision ID: 20261202_erasure
Revises: 20261202_roles_ip_allowlist
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_erasure"
down_revision = "20261202_roles_ip_allowlist"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _organization_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["organization_id"],
        ["organizations.id"],
        name=f"fk_{table}_organization_id_organizations",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "erasure_receipts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("erased_at", TZ, nullable=False),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("erased", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("reapplied_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_erasure_receipts"),
        _organization_fk("erasure_receipts"),
    )
    op.create_index("ix_erasure_receipts_organization_id", "erasure_receipts", ["organization_id"])
    op.create_index(
        "ix_erasure_receipts_subject", "erasure_receipts", ["organization_id", "subject_id"]
    )
    op.create_table(
        "blocklist_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("hmac", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("receipt_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_blocklist_entries"),
        sa.UniqueConstraint(
            "organization_id", "kind", "hmac", name="uq_blocklist_entries_organization_id_kind_hmac"
        ),
        _organization_fk("blocklist_entries"),
    )
    op.create_index(
        "ix_blocklist_entries_organization_id", "blocklist_entries", ["organization_id"]
    )


def downgrade() -> None:
    op.drop_table("blocklist_entries")
    op.drop_table("erasure_receipts")
