"""sign-in throttle: counters of failed password sign-ins per address, per account and address,
and per account

Revision ID: 20261201_sign_in_throttle
Revises: 20261123_history_recycle_bin
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261201_sign_in_throttle"
down_revision = "20261123_history_recycle_bin"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sign_in_attempts",
        sa.Column("key", sa.String(120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", TZ, nullable=True),
        sa.Column("locked_until", TZ, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_sign_in_attempts"),
    )
    op.create_index("ix_sign_in_attempts_updated_at", "sign_in_attempts", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_sign_in_attempts_updated_at", table_name="sign_in_attempts")
    op.drop_table("sign_in_attempts")
