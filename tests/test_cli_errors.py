"""What an operator sees when a command cannot do its job: one line on stderr saying what is
wrong and what to do, a documented exit code, and a traceback only when asked for."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TestDatabases
from tests.test_cli import MASTER_KEY, PASSWORD, bootstrap, free_port, run

# The exit codes the README documents.
FAILED, USAGE, CONFIG, UNAVAILABLE, NOT_MIGRATED = 1, 2, 3, 4, 5


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with `code`, printing one line (no traceback) and no output."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


def test_migrate_with_the_database_unreachable_says_so(tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql+asyncpg://crm:s3cret-pw@127.0.0.1:{port}/crm"

    line = one_line(run(tmp_path, "migrate", CRM_DATABASE_URL=url), UNAVAILABLE)

    assert f"127.0.0.1:{port}" in line
    assert "connection refused" in line
    assert "CRM_DATABASE_URL" in line
    assert "s3cret-pw" not in line


@pytest.mark.postgres
async def test_migrate_names_a_database_that_does_not_exist(
    tmp_path: Path, databases: TestDatabases
) -> None:
    existing = await databases.new("postgresql")
    missing = existing.rsplit("/", 1)[0] + "/crm_no_such_database"

    line = one_line(run(tmp_path, "migrate", CRM_DATABASE_URL=missing), UNAVAILABLE)

    assert 'database "crm_no_such_database" does not exist' in line


@pytest.mark.postgres
async def test_bootstrap_before_migrate_on_postgresql_says_run_migrate(
    tmp_path: Path, databases: TestDatabases
) -> None:
    url = await databases.new("postgresql")

    result = bootstrap(
        tmp_path, CRM_DATABASE_URL=url, CRM_MASTER_KEY=MASTER_KEY, CRM_BOOTSTRAP_PASSWORD=PASSWORD
    )

    assert "run `crm-service migrate` first" in one_line(result, NOT_MIGRATED)


def test_a_command_on_an_unmigrated_sqlite_database_says_run_migrate(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"

    result = run(tmp_path, "audit", "verify", CRM_DATABASE_URL=url, CRM_MASTER_KEY=MASTER_KEY)

    assert "run `crm-service migrate` first" in one_line(result, NOT_MIGRATED)


def test_debug_shows_the_traceback_as_well(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://crm@127.0.0.1:{closed_port()}/crm"

    for result in (
        run(tmp_path, "--debug", "migrate", CRM_DATABASE_URL=url),
        run(tmp_path, "migrate", CRM_DATABASE_URL=url, CRM_LOG_LEVEL="DEBUG"),
    ):
        assert result.returncode == UNAVAILABLE
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("crm-service: cannot use")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("mk-0000000000000000 " + MASTER_KEY + "\n", "line 1: the id is not this key's"),
        ("# a comment\n\nnot-base64!\n", "line 3: not base64"),
        ("# only a comment\n", "holds no key"),
    ],
)
def test_a_malformed_master_key_file_is_named_with_its_line(
    tmp_path: Path, content: str, problem: str
) -> None:
    keyring = tmp_path / "master.keys"
    keyring.write_text(content)

    for command in (("keys", "status"), ("serve", "--port", str(free_port()))):
        result = run(tmp_path, *command, CRM_MASTER_KEY_FILE=str(keyring))
        line = one_line(result, CONFIG)
        assert str(keyring) in line and problem in line
    assert MASTER_KEY not in result.stderr


def test_serve_on_a_port_already_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        line = one_line(run(tmp_path, "serve", "--port", str(port)), UNAVAILABLE)

    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert "--port" in line
    assert not (tmp_path / "var").exists()  # nothing was migrated or generated


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_serve_refuses_a_port_out_of_range(tmp_path: Path, port: str) -> None:
    line = one_line(run(tmp_path, "serve", "--port", port), USAGE)

    assert line.startswith("crm-service serve: Invalid value for '--port'")
    assert not (tmp_path / "var").exists()


def test_production_names_every_missing_setting_at_once(tmp_path: Path) -> None:
    line = one_line(run(tmp_path, "migrate", CRM_ENV="production"), CONFIG)

    for setting in ("CRM_MASTER_KEY", "CRM_DATABASE_URL", "CRM_PUBLIC_BASE_URL"):
        assert setting in line


def test_version(tmp_path: Path) -> None:
    result = run(tmp_path, "--version")

    assert result.returncode == 0
    assert result.stdout.strip() == "crm-service 0.1.0"
