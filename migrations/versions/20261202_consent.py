"""consent: purposes (versioned), the append-only consent ledger, receipt signing keys,
consent requests and their mailed links, web forms (versioned), their submissions awaiting
double opt-in, and the public form throttle's counters

The ledger is append-only in the database too: triggers refuse every UPDATE and DELETE of
`consent_events` on PostgreSQL and SQLite. Erasure needs neither: it destroys the subject's
key, which makes the sealed evidence unreadable, and leaves the value-free events.

Revision ID: 20261202_consent
Revises: 20261202_mail_outbox
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261202_consent"
down_revision = "20261202_data_leaving"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _org(table: str) -> list[object]:
    return [
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=f"fk_{table}_organization_id_organizations",
            ondelete="CASCADE",
        ),
    ]


def _user_fk(table: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["users.id"], name=f"fk_{table}_{column}_users", ondelete="SET NULL"
    )


def upgrade() -> None:
    op.create_table(
        "consent_purposes",
        sa.Column("id", sa.Uuid(), nullable=False),
        *_org("consent_purposes"),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("notice_version", sa.String(64), nullable=False),
        sa.Column("notice_url", sa.String(500), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("superseded_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_consent_purposes"),
        _user_fk("consent_purposes", "created_by_id"),
        sa.UniqueConstraint(
            "organization_id", "key", "version", name="uq_consent_purposes_organization_id_key_version"
        ),
    )
    op.create_index("ix_consent_purposes_organization_id", "consent_purposes", ["organization_id"])

    op.create_table(
        "consent_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        *_org("consent_events"),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("module", sa.String(16), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("purpose_id", sa.Uuid(), nullable=False),
        sa.Column("purpose_key", sa.String(64), nullable=False),
        sa.Column("notice_version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.Column("recorded_by_id", sa.Uuid(), nullable=True),
        sa.Column("recorded_by_client_id", sa.String(64), nullable=True),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("form_id", sa.Uuid(), nullable=True),
        sa.Column("evidence_sealed", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_consent_events"),
        sa.ForeignKeyConstraint(
            ["purpose_id"], ["consent_purposes.id"], name="fk_consent_events_purpose_id_consent_purposes"
        ),
        _user_fk("consent_events", "recorded_by_id"),
    )
    op.create_index("ix_consent_events_organization_id", "consent_events", ["organization_id"])
    op.create_index(
        "ix_consent_events_subject", "consent_events", ["organization_id", "subject_id", "recorded_at"]
    )

    op.create_table(
        "consent_signing_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        *_org("consent_signing_keys"),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("private_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_signing_keys"),
        sa.UniqueConstraint("organization_id", name="uq_consent_signing_keys_organization_id"),
    )

    op.create_table(
        "consent_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        *_org("consent_requests"),
        sa.Column("module", sa.String(16), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("purpose_ids", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("deadline", TZ, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("created_by_client_id", sa.String(64), nullable=True),
        sa.Column("answered_at", TZ, nullable=True),
        sa.Column("no_response_at", TZ, nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("last_reminded_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_consent_requests"),
        _user_fk("consent_requests", "created_by_id"),
    )
    op.create_index("ix_consent_requests_organization_id", "consent_requests", ["organization_id"])
    op.create_index("ix_consent_requests_due", "consent_requests", ["status", "deadline"])
    op.create_index(
        "ix_consent_requests_subject", "consent_requests", ["organization_id", "subject_id"]
    )

    op.create_table(
        "consent_links",
        sa.Column("token_hash", sa.String(64), nullable=False),
        *_org("consent_links"),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_consent_links"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["consent_requests.id"],
            name="fk_consent_links_request_id_consent_requests",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_consent_links_organization_id", "consent_links", ["organization_id"])
    op.create_index("ix_consent_links_request_id", "consent_links", ["request_id"])

    op.create_table(
        "webforms",
        sa.Column("id", sa.Uuid(), nullable=False),
        *_org("webforms"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("module", sa.String(16), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("purposes", sa.Text(), nullable=False),
        sa.Column("double_opt_in", sa.Boolean(), nullable=False),
        sa.Column("redirect_url", sa.String(500), nullable=True),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webforms"),
        _user_fk("webforms", "created_by_id"),
    )
    op.create_index("ix_webforms_organization_id", "webforms", ["organization_id"])

    op.create_table(
        "webform_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        *_org("webform_versions"),
        sa.Column("form_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webform_versions"),
        sa.ForeignKeyConstraint(
            ["form_id"], ["webforms.id"], name="fk_webform_versions_form_id_webforms", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("form_id", "version", name="uq_webform_versions_form_id_version"),
    )
    op.create_index("ix_webform_versions_organization_id", "webform_versions", ["organization_id"])

    op.create_table(
        "webform_submissions",
        sa.Column("id", sa.Uuid(), nullable=False),
        *_org("webform_submissions"),
        sa.Column("form_id", sa.Uuid(), nullable=False),
        sa.Column("form_version", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("email_bidx", sa.String(64), nullable=True),
        sa.Column("data_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("submitted_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("confirmed_at", TZ, nullable=True),
        sa.Column("module", sa.String(16), nullable=True),
        sa.Column("record_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webform_submissions"),
        sa.ForeignKeyConstraint(
            ["form_id"], ["webforms.id"], name="fk_webform_submissions_form_id_webforms", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("token_hash", name="uq_webform_submissions_token_hash"),
    )
    op.create_index(
        "ix_webform_submissions_organization_id", "webform_submissions", ["organization_id"]
    )
    op.create_index(
        "ix_webform_submissions_email", "webform_submissions", ["organization_id", "form_id", "email_bidx"]
    )
    op.create_index("ix_webform_submissions_expires", "webform_submissions", ["expires_at"])

    op.create_table(
        "public_form_counters",
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("window_start", TZ, nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_public_form_counters"),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'consent_events is append-only' USING ERRCODE = 'raise_exception';
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER consent_events_append_only BEFORE UPDATE OR DELETE ON consent_events "
            "FOR EACH ROW EXECUTE FUNCTION consent_events_append_only()"
        )
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER consent_events_no_{operation.lower()} BEFORE {operation} "
                "ON consent_events BEGIN SELECT RAISE(ABORT, 'consent_events is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER consent_events_append_only ON consent_events")
        op.execute("DROP FUNCTION consent_events_append_only()")
    for table in (
        "public_form_counters",
        "webform_submissions",
        "webform_versions",
        "webforms",
        "consent_links",
        "consent_requests",
        "consent_signing_keys",
        "consent_events",
        "consent_purposes",
    ):
        op.drop_table(table)
