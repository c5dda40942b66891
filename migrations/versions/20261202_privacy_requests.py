"""privacy requests: data-subject requests with their legal clocks, one sealed copy of what
each says per data subject; consent purposes say whether they are direct marketing (an
objection withdraws those); webhook events may carry a body of ids of their own (the
`privacy.*` events telling recipients of a rectification, erasure or restriction)

Revision ID: 20261202_privacy_requests
Revises: 20261202_privacy_packages
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_privacy_requests"
down_revision = "20261202_privacy_packages"
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
        "privacy_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("email_bidx", sa.String(64), nullable=True),
        sa.Column("module", sa.String(16), nullable=True),
        sa.Column("record_id", sa.Uuid(), nullable=True),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("original_due_at", TZ, nullable=False),
        sa.Column("due_at", TZ, nullable=False),
        sa.Column("extended_months", sa.Integer(), nullable=False),
        sa.Column("extended_at", TZ, nullable=True),
        sa.Column("filed_at", TZ, nullable=False),
        sa.Column("filed_by_type", sa.String(16), nullable=False),
        sa.Column("filed_by_id", sa.Uuid(), nullable=True),
        sa.Column("verified_at", TZ, nullable=True),
        sa.Column("verified_by", sa.String(16), nullable=True),
        sa.Column("verified_by_id", sa.Uuid(), nullable=True),
        sa.Column("completed_at", TZ, nullable=True),
        sa.Column("rejected_at", TZ, nullable=True),
        sa.Column("closed_by_type", sa.String(16), nullable=True),
        sa.Column("closed_by_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("recipients", sa.Text(), nullable=True),
        sa.Column("notices", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_requests"),
        _organization_fk("privacy_requests"),
    )
    op.create_index("ix_privacy_requests_organization_id", "privacy_requests", ["organization_id"])
    op.create_index(
        "ix_privacy_requests_due", "privacy_requests", ["organization_id", "status", "due_at"]
    )
    op.create_index(
        "ix_privacy_requests_email", "privacy_requests", ["organization_id", "email_bidx"]
    )
    op.create_table(
        "privacy_request_subjects",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "subject_id", name="pk_privacy_request_subjects"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["privacy_requests.id"],
            name="fk_privacy_request_subjects_request_id_privacy_requests",
            ondelete="CASCADE",
        ),
        _organization_fk("privacy_request_subjects"),
    )
    op.create_index(
        "ix_privacy_request_subjects_organization_id",
        "privacy_request_subjects",
        ["organization_id"],
    )
    op.create_index(
        "ix_privacy_request_subjects_subject",
        "privacy_request_subjects",
        ["organization_id", "subject_id"],
    )
    # Existing purposes are not marketing until an administrator says so.
    with op.batch_alter_table("consent_purposes") as batch:
        batch.add_column(
            sa.Column("marketing", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(sa.Column("data", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("data")
    with op.batch_alter_table("consent_purposes") as batch:
        batch.drop_column("marketing")
    op.drop_table("privacy_request_subjects")
    op.drop_table("privacy_requests")
