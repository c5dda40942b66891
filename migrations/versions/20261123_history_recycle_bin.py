"""record history, the recycle bin (deleted_at on records) and the worker's jobs

Revision ID: 20261123_history_recycle_bin
Revises: 20261123_access_control
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261123_history_recycle_bin"
down_revision = "20261123_access_control"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
RECORD_TABLES = ("leads", "contacts", "accounts")
# Planner statistics, as in 20261123_sqlite_planner_stats: SQLite rebuilds a table to add a
# column, which drops its indexes' statistics, so they are seeded again.
ROWS, PER_ORGANIZATION = 1_000_000, 10_000
PER_VALUE = {"owner_id": 1_000, "account_id": 10, "data_key_id": 1}


def _stat(columns: list[str]) -> str:
    first = PER_ORGANIZATION if columns[0] == "organization_id" else PER_VALUE.get(columns[0], 1)
    # Almost every record is live (deleted_at NULL): that column narrows nothing.
    rest = [first if column == "deleted_at" else 1 for column in columns[1:]]
    return " ".join(str(n) for n in (ROWS, first, *rest))


def _seed_planner_stats() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    op.execute("ANALYZE sqlite_schema")
    for table in RECORD_TABLES:
        indexes = bind.execute(
            sa.text("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = :t"),
            {"t": table},
        ).scalars()
        for index in [name for name in indexes if not name.startswith("sqlite_")]:
            columns = [row[2] for row in bind.execute(sa.text(f"PRAGMA index_info('{index}')"))]
            bind.execute(
                sa.text("DELETE FROM sqlite_stat1 WHERE tbl = :t AND idx = :i"),
                {"t": table, "i": index},
            )
            bind.execute(
                sa.text("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (:t, :i, :s)"),
                {"t": table, "i": index, "s": _stat(columns)},
            )


def upgrade() -> None:
    op.create_table(
        "record_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("module", sa.String(16), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("changes_sealed", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_record_history"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_record_history_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_record_history_organization_id", "record_history", ["organization_id"])
    op.create_index(
        "ix_record_history_record",
        "record_history",
        ["organization_id", "module", "record_id", "occurred_at"],
    )
    for table in RECORD_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("deleted_at", TZ, nullable=True))
            batch.add_column(sa.Column("deleted_by_id", sa.Uuid(), nullable=True))
            batch.create_foreign_key(
                f"fk_{table}_deleted_by_id_users", "users", ["deleted_by_id"], ["id"], ondelete="SET NULL"
            )
            batch.create_index(f"ix_{table}_org_deleted", ["organization_id", "deleted_at"])
    _seed_planner_stats()
    op.create_table(
        "worker_jobs",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("last_started_at", TZ, nullable=True),
        sa.Column("last_finished_at", TZ, nullable=True),
        sa.Column("last_result", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_worker_jobs"),
    )


def downgrade() -> None:
    op.drop_table("worker_jobs")
    for table in RECORD_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_org_deleted")
            batch.drop_constraint(f"fk_{table}_deleted_by_id_users", type_="foreignkey")
            batch.drop_column("deleted_by_id")
            batch.drop_column("deleted_at")
    _seed_planner_stats()
    op.drop_index("ix_record_history_record", table_name="record_history")
    op.drop_index("ix_record_history_organization_id", table_name="record_history")
    op.drop_table("record_history")
