"""An organization older than the audit log: upgrading across the migration that introduced
the log starts its chains, so `audit verify` says intact (and a log removed later is still a
break, because the start happens only on that upgrade)."""

from __future__ import annotations

import base64
import secrets
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Uuid, column, table, text

from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from tests.conftest import TestDatabases
from tests.crypto.test_rotation import cli

KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("kind", KINDS)
async def test_upgrading_across_the_audit_log_starts_the_log_of_older_organizations(
    kind: str, databases: TestDatabases, tmp_path: Path
) -> None:
    url = await databases.new(kind)
    engine = make_engine(url)
    org_id = uuid.uuid4()
    try:
        await upgrade(engine, "20261123_single_sign_on")
        organizations = table(
            "organizations",
            column("id", Uuid()),
            column("name"),
            column("key_generation"),
            column("mfa_required"),
        )
        async with engine.begin() as connection:
            await connection.execute(
                organizations.insert().values(
                    id=org_id, name="Older", key_generation=1, mfa_required=False
                )
            )
    finally:
        await engine.dispose()
    settings = {
        "CRM_DATABASE_URL": url,
        "CRM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }

    migrated = cli(tmp_path, "migrate", **settings)
    assert migrated.returncode == 0, migrated.stderr
    verified = cli(tmp_path, "audit", "verify", **settings)
    assert verified.returncode == 0, (verified.stdout, verified.stderr)
    assert verified.stdout.strip() == "1 audit events in 8 chains: intact"

    # Migrating again starts nothing: a log removed from now on stays a break.
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DELETE FROM audit_events"))
            await connection.execute(text("DELETE FROM audit_chains"))
    finally:
        await engine.dispose()
    assert cli(tmp_path, "migrate", **settings).returncode == 0
    broken = cli(tmp_path, "audit", "verify", **settings)
    assert broken.returncode == 1
    assert (
        f"BROKEN organization {org_id}: the organization has no audit log at all" in broken.stdout
    )
