"""merge: the privacy portal and privacy packages and requests

The portal and the privacy packages (followed by privacy requests) were built side by side
on 20261202_consent; this joins their heads so the schema has one. Nothing changes in the database. When the migrations are chained one after another
for shipping, this file goes.

Revision ID: 20261202_merge_portal_privacy
Revises: 20261202_portal, 20261202_privacy_requests
Create Date: 2026-12-02
"""

from __future__ import annotations

revision = "20261202_merge_portal_privacy"
down_revision = ("20261202_portal", "20261202_privacy_requests")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
