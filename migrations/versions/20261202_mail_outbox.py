"""mail outbox: one row per message, its recipient and content sealed, its delivery state
(status, attempts, next attempt, lease) in the open for the dispatcher and operators

Revision ID: 20261202_mail_outbox
Revises: 20261202_roles_ip_allowlist
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_mail_outbox"
down_revision = "20261202_roles_ip_allowlist"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("content_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("lease_until", TZ, nullable=True),
        sa.Column("sent_at", TZ, nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mail_outbox"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_mail_outbox_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'cancelled')",
            name="ck_mail_outbox_status",
        ),
    )
    op.create_index("ix_mail_outbox_organization_id", "mail_outbox", ["organization_id"])
    op.create_index("ix_mail_outbox_due", "mail_outbox", ["status", "next_attempt_at"])
    op.create_index("ix_mail_outbox_subject", "mail_outbox", ["organization_id", "subject_id"])


def downgrade() -> None:
    op.drop_table("mail_outbox")
