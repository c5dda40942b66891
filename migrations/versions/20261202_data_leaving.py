"""data that leaves the service: compliance settings per organization

`compliance_settings` holds, per organization, the classifications each leaving channel
(api, export, integrations) withholds, as JSON; no row withholds nothing.

Revision ID: 20261202_data_leaving
Revises: 20261202_roles_ip_allowlist
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_data_leaving"
down_revision = "20261202_roles_ip_allowlist"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "compliance_settings",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("withhold", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name="pk_compliance_settings"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_compliance_settings_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("compliance_settings")
