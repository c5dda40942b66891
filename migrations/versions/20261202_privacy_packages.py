"""privacy packages: access and portability packages waiting to be downloaded

One row per data subject of a package, the subject's part sealed under their own data key.
`request_id` names the privacy request without a foreign key. The downgrade drops the table
(waiting packages with it: they can be built again).

Revision ID: 20261202_privacy_packages
Revises: 20261202_consent
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_privacy_packages"
down_revision = "20261202_consent"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "privacy_package_parts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("content_sealed", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_package_parts"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_privacy_package_parts_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "organization_id",
            "request_id",
            "subject_id",
            name="uq_privacy_package_parts_organization_id_request_id_subject_id",
        ),
    )
    op.create_index(
        "ix_privacy_package_parts_organization_id", "privacy_package_parts", ["organization_id"]
    )
    op.create_index(
        "ix_privacy_package_parts_subject",
        "privacy_package_parts",
        ["organization_id", "subject_id"],
    )
    op.create_index(
        "ix_privacy_package_parts_expires_at", "privacy_package_parts", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_table("privacy_package_parts")
