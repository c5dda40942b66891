"""foundation: organizations, users, sessions, data keys, field classification, leads,
contacts, accounts (classifiable fields stored sealed or plain, with blind indexes), legal basis

Revision ID: 20261123_foundation
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261123_foundation"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _record_columns(table: str) -> list[sa.SchemaItem]:
    """Identity, tenancy, ownership, timestamps and version shared by the record tables."""
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("data_key_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=f"fk_{table}_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=f"fk_{table}_owner_id_users", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=f"fk_{table}_created_by_id_users",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["data_key_id"], ["data_keys.id"], name=f"fk_{table}_data_key_id_data_keys"
        ),
    ]


def _stored_fields(table: str, fields: list[str], indexed: list[str]) -> list[sa.SchemaItem]:
    """Classifiable fields: the stored form (0x00 + text, or 0x01 + sealed) and blind indexes."""
    columns: list[sa.SchemaItem] = [sa.Column(name, sa.LargeBinary(), nullable=True) for name in fields]
    columns += [sa.Column(f"{name}_bidx", sa.String(64), nullable=True) for name in indexed]
    return columns


def _index_blind(table: str, indexed: list[str]) -> None:
    for name in indexed:
        op.create_index(f"ix_{table}_{name}_bidx", table, ["organization_id", f"{name}_bidx"])


PERSON_FIELDS = [
    "first_name",
    "last_name",
    "email",
    "phone",
    "mobile",
    "title",
    "date_of_birth",
    "mailing_street",
    "mailing_city",
    "mailing_state",
    "mailing_postal_code",
    "mailing_country",
    "description",
    "national_id",
    "source_ip",
]
PERSON_INDEXED = ["email", "phone", "mobile"]
ACCOUNT_FIELDS = [
    "name",
    "website",
    "industry",
    "phone",
    "billing_street",
    "billing_city",
    "billing_state",
    "billing_postal_code",
    "billing_country",
    "description",
    "tax_id",
]
ACCOUNT_INDEXED = ["name", "phone"]


def _person_columns(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("source_channel", sa.String(16), nullable=False),
        sa.Column("source_client_id", sa.String(64), nullable=True),
        sa.Column("source_batch_id", sa.Uuid(), nullable=True),
        sa.Column("source_form", sa.String(100), nullable=True),
        sa.Column("legal_basis", sa.String(32), nullable=True),
        sa.Column("legal_basis_set_at", TZ, nullable=True),
        sa.Column("legal_basis_set_by_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["legal_basis_set_by_id"],
            ["users.id"],
            name=f"fk_{table}_legal_basis_set_by_id_users",
            ondelete="SET NULL",
        ),
    ]


def _record_indexes(table: str) -> None:
    op.create_index(f"ix_{table}_organization_id", table, ["organization_id"])
    op.create_index(f"ix_{table}_owner_id", table, ["owner_id"])
    op.create_index(f"ix_{table}_org_created", table, ["organization_id", "created_at", "id"])
    op.create_index(f"ix_{table}_org_updated", table, ["organization_id", "updated_at", "id"])
    op.create_index(f"ix_{table}_data_key_id", table, ["data_key_id"])


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_generation", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_users_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_users_organization_id", "users", ["organization_id"])

    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_used_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("ended_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_auth_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_auth_sessions_token_hash"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_auth_sessions_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_auth_sessions_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_auth_sessions_organization_id", "auth_sessions", ["organization_id"])
    op.create_index("ix_auth_sessions_user_id", "auth_sessions", ["user_id"])

    op.create_table(
        "data_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("master_key_id", sa.String(64), nullable=True),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("retired_at", TZ, nullable=True),
        sa.Column("destroyed_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_data_keys"),
        sa.UniqueConstraint(
            "organization_id",
            "purpose",
            "subject_id",
            "generation",
            name="uq_data_keys_organization_id_purpose_subject_id_generation",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_data_keys_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_data_keys_organization_id", "data_keys", ["organization_id"])
    op.create_index(
        "ix_data_keys_owner", "data_keys", ["organization_id", "purpose", "subject_id", "status"]
    )

    op.create_table(
        "field_classifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("module", sa.String(16), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("classification", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_field_classifications"),
        sa.UniqueConstraint(
            "organization_id",
            "module",
            "field",
            name="uq_field_classifications_organization_id_module_field",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_field_classifications_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_field_classifications_organization_id", "field_classifications", ["organization_id"]
    )

    op.create_table(
        "accounts",
        *_record_columns("accounts"),
        *_stored_fields("accounts", ACCOUNT_FIELDS, ACCOUNT_INDEXED),
    )
    _record_indexes("accounts")
    _index_blind("accounts", ACCOUNT_INDEXED)

    op.create_table(
        "contacts",
        *_record_columns("contacts"),
        *_person_columns("contacts"),
        *_stored_fields("contacts", [*PERSON_FIELDS, "department"], PERSON_INDEXED),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_contacts_account_id_accounts",
            ondelete="SET NULL",
        ),
    )
    _record_indexes("contacts")
    _index_blind("contacts", PERSON_INDEXED)
    op.create_index("ix_contacts_org_subject", "contacts", ["organization_id", "subject_id"])
    op.create_index("ix_contacts_account_id", "contacts", ["account_id"])

    op.create_table(
        "leads",
        *_record_columns("leads"),
        *_person_columns("leads"),
        *_stored_fields("leads", [*PERSON_FIELDS, "company", "website", "industry"], PERSON_INDEXED),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("converted_at", TZ, nullable=True),
        sa.Column("converted_contact_id", sa.Uuid(), nullable=True),
        sa.Column("converted_account_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["converted_contact_id"],
            ["contacts.id"],
            name="fk_leads_converted_contact_id_contacts",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["converted_account_id"],
            ["accounts.id"],
            name="fk_leads_converted_account_id_accounts",
            ondelete="SET NULL",
        ),
    )
    _record_indexes("leads")
    _index_blind("leads", PERSON_INDEXED)
    op.create_index("ix_leads_org_subject", "leads", ["organization_id", "subject_id"])

    op.create_table(
        "legal_basis_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("assessment", sa.Text(), nullable=True),
        sa.Column("set_by_id", sa.Uuid(), nullable=True),
        sa.Column("set_by_client_id", sa.String(64), nullable=True),
        sa.Column("set_at", TZ, nullable=False),
        sa.Column("carried_from_lead_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_legal_basis_entries"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_legal_basis_entries_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_by_id"],
            ["users.id"],
            name="fk_legal_basis_entries_set_by_id_users",
            ondelete="SET NULL",
        ),
    )
    op.create_index(
        "ix_legal_basis_entries_organization_id", "legal_basis_entries", ["organization_id"]
    )
    op.create_index(
        "ix_legal_basis_entries_subject",
        "legal_basis_entries",
        ["organization_id", "subject_type", "subject_id"],
    )


def downgrade() -> None:
    op.drop_table("legal_basis_entries")
    op.drop_table("leads")
    op.drop_table("contacts")
    op.drop_table("accounts")
    op.drop_table("field_classifications")
    op.drop_table("data_keys")
    op.drop_table("auth_sessions")
    op.drop_table("users")
    op.drop_table("organizations")
