"""mail templates: an organization's own version of a kind of mail in a language

mail_templates: subject, text and html parts (jinja2 source written by an administrator,
checked when stored, rendered in a sandbox); one row per organization, kind and language.
Without a row the bundled templates are used.

Revision ID: 20261203_mail_templates
Revises: 20261203_partner_disclosures
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261203_mail_templates"
down_revision = "20261203_partner_disclosures"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mail_templates",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("updated_by_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mail_templates"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_mail_templates_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["users.id"],
            name="fk_mail_templates_updated_by_id_users",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint(
            "organization_id",
            "kind",
            "language",
            name="uq_mail_templates_organization_id_kind_language",
        ),
    )
    op.create_index("ix_mail_templates_organization_id", "mail_templates", ["organization_id"])


def downgrade() -> None:
    op.drop_table("mail_templates")
