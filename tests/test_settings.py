"""Settings that cannot be mistyped silently: unknown CRM_ variables, log levels, paths."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import run
from tests.test_cli_errors import CONFIG, one_line


def test_an_unknown_variable_warns_naming_the_closest_setting(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", CRM_DATABSE_URL="sqlite+aiosqlite:///./var/other.db")

    assert result.returncode == 0, result.stderr
    warnings = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if line.startswith("{") and '"unknown_setting"' in line
    ]
    assert len(warnings) == 1, result.stderr
    assert warnings[0]["level"] == "warning"
    assert warnings[0]["problem"] == (
        "CRM_DATABSE_URL is not a setting (did you mean CRM_DATABASE_URL?)"
    )
    assert not (tmp_path / "var" / "other.db").exists()


def test_an_unknown_variable_is_an_error_in_production(tmp_path: Path) -> None:
    line = one_line(
        run(
            tmp_path,
            "migrate",
            CRM_ENV="production",
            CRM_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
            CRM_MASTER_KEY="MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            CRM_PUBLIC_BASE_URL="https://crm.example.com",
            CRM_REDIS_ULR="redis://127.0.0.1:6379/0",
        ),
        CONFIG,
    )

    assert "CRM_REDIS_ULR is not a setting (did you mean CRM_REDIS_URL?)" in line
    assert not (tmp_path / "crm.db").exists()


def test_the_log_level_must_be_a_real_level(tmp_path: Path) -> None:
    line = one_line(run(tmp_path, "migrate", CRM_LOG_LEVEL="verbose"), CONFIG)

    assert line == (
        "crm-service: CRM_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )


def test_a_sqlite_file_in_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    url = f"sqlite+aiosqlite:///{missing / 'crm.db'}"

    line = one_line(run(tmp_path, "migrate", CRM_DATABASE_URL=url), CONFIG)

    assert f"the directory {missing} does not exist" in line
    assert not missing.exists()


def test_the_embedded_directory_is_created(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", CRM_DATABASE_URL="sqlite+aiosqlite:///./var/data/crm.db")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "data" / "crm.db").is_file()
