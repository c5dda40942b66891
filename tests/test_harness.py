"""The test harness tells a developer why PostgreSQL tests did not run: the real cause."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_ADMIN_URL, TestDatabases

OUTCOMES = (pytest.skip.Exception, pytest.fail.Exception)  # skipped locally, failed in CI


async def reason_for(admin_url: str, tmp_path: Path) -> str:
    with pytest.raises(OUTCOMES) as outcome:
        await TestDatabases(tmp_path, admin_url=admin_url).new("postgresql")
    return str(outcome.value)


async def test_no_server_is_named_as_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    reason = await reason_for(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test", tmp_path)

    assert f"PostgreSQL at 127.0.0.1:{port}/test not usable: connection refused" in reason


@pytest.mark.postgres
async def test_a_missing_database_is_named(tmp_path: Path, databases: TestDatabases) -> None:
    await databases.new("postgresql")  # the server is there (else this test is skipped too)
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/crm_no_such_database"

    reason = await reason_for(url, tmp_path)

    assert 'database "crm_no_such_database" does not exist' in reason
