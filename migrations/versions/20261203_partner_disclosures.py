"""partner disclosures: which partner client was shown which data subject's data

partner_disclosures: one row per organization, data subject and OAuth client, from the first
response that carried the subject's data to the client (GDPR Art. 19: the recipients a
rectification, erasure or restriction is told to). Ids and a time only.

Revision ID: 20261203_partner_disclosures
Revises: 20261202_portal
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261203_partner_disclosures"
down_revision = "20261202_portal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partner_disclosures",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("first_disclosed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id", "subject_id", "client_id", name="pk_partner_disclosures"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_partner_disclosures_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("partner_disclosures")
