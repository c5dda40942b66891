"""subject processing locks: a data subject locked (consent request unanswered) or restricted
(GDPR Art. 18), which every change of their leads and contacts checks

Keyed by organization, subject and kind: a subject can be locked and restricted at once, each
set and lifted by its own feature. No foreign key to the consent or privacy request that set
it (`request_id`): those tables come with their features. Nothing sets a lock yet, so the
downgrade drops no one's state.

Revision ID: 20261201_processing_locks
Revises: 20261201_audit_event_targets
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261201_processing_locks"
down_revision = "20261201_audit_event_targets"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subject_processing_locks",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("since", TZ, nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint(
            "organization_id", "subject_id", "kind", name="pk_subject_processing_locks"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_subject_processing_locks_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "kind IN ('locked', 'restricted')", name="ck_subject_processing_locks_kind"
        ),
    )


def downgrade() -> None:
    op.drop_table("subject_processing_locks")
