"""roles ip_allowlist: add the column to databases upgraded before it was written into the
shipped access-control migration

The per-role IP allowlist was added by editing 20261123_access_control after that revision
had shipped, so a database upgraded to it earlier has no `roles.ip_allowlist`. This adds it
where it is missing and does nothing elsewhere. Editing a shipped migration is now caught by
tests/test_migrations.py (migrations/SHIPPED).

Revision ID: 20261202_roles_ip_allowlist
Revises: 20261201_processing_locks
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_roles_ip_allowlist"
down_revision = "20261201_processing_locks"
branch_labels = None
depends_on = None


def _has_column() -> bool:
    columns = sa.inspect(op.get_bind()).get_columns("roles")
    return any(column["name"] == "ip_allowlist" for column in columns)


def upgrade() -> None:
    if not _has_column():
        op.add_column("roles", sa.Column("ip_allowlist", sa.Text(), nullable=True))


def downgrade() -> None:
    # The column belongs to 20261123_access_control as it stands now; it stays.
    pass
