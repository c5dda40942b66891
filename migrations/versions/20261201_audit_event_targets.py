"""audit event targets: an event about several records lists their ids

One `record.sensitive_revealed` event per response, not one per record shown: a list page
names the records whose sensitive values it showed in `target_ids` (a JSON array of ids).
Existing events get none, and their MACs stay valid (the MAC covers target_ids only when set).

Downgrading is refused once an event carries target ids: its MAC covers them, so dropping the
column would leave those events unverifiable by `crm-service audit verify`, which is to say
it would look exactly like tampering. Restore a backup taken before this revision instead.

Revision ID: 20261201_audit_event_targets
Revises: 20261201_sign_in_throttle
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261201_audit_event_targets"
down_revision = "20261201_sign_in_throttle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column without a default: an ALTER TABLE on both databases, no rebuild, so
    # the audit log is not copied.
    op.add_column("audit_events", sa.Column("target_ids", sa.Text(), nullable=True))


def downgrade() -> None:
    listed = op.get_bind().execute(
        sa.text("SELECT count(*) FROM audit_events WHERE target_ids IS NOT NULL")
    )
    if listed.scalar_one():
        raise RuntimeError(
            "audit events list target ids that their MACs cover; dropping the column would "
            "break `audit verify`. Restore a backup taken before 20261201_audit_event_targets."
        )
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("target_ids")
