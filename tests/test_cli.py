"""The `crm-service` command as an operator runs it: the installed console script, a fresh
working directory, and only the CRM_ settings each test chooses."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CRM_SERVICE = Path(sys.executable).parent / "crm-service"
PASSWORD = "correct horse battery staple"
MASTER_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # base64 of 32 bytes
COMMAND_TIMEOUT = 60
SERVE_TIMEOUT = 20


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any CRM_ variable, plus `settings`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    env.update(settings)
    return env


def run(
    cwd: Path, *args: str, stdin: str = "", **settings: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CRM_SERVICE), *args],
        cwd=cwd,
        env=clean_env(**settings),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


def bootstrap(
    cwd: Path, email: str = "admin@example.com", *, stdin: str = "", **settings: str
) -> subprocess.CompletedProcess[str]:
    return run(
        cwd, "bootstrap", "--org-name", "Acme", "--admin-email", email, stdin=stdin, **settings
    )


def count_rows(database: Path, table: str) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def schema_revision(database: Path) -> str:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_console_script_is_installed() -> None:
    assert CRM_SERVICE.is_file(), f"{CRM_SERVICE} missing: install the package first"


def test_bootstrap_creates_embedded_database_and_prints_ids(tmp_path: Path) -> None:
    result = bootstrap(tmp_path, CRM_BOOTSTRAP_PASSWORD=PASSWORD)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "crm.db").is_file()
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    created = json.loads(lines[0])
    assert set(created) == {"org_id", "user_id"}
    uuid.UUID(created["org_id"])
    uuid.UUID(created["user_id"])
    assert created["org_id"] != created["user_id"]


def test_bootstrap_refuses_an_existing_admin_and_creates_nothing(tmp_path: Path) -> None:
    first = bootstrap(tmp_path, CRM_BOOTSTRAP_PASSWORD=PASSWORD)
    assert first.returncode == 0, first.stderr

    second = bootstrap(tmp_path, CRM_BOOTSTRAP_PASSWORD=PASSWORD)

    assert second.returncode != 0
    assert second.stdout == ""
    assert "already exists" in second.stderr
    assert "Nothing was created" in second.stderr
    assert "Traceback" not in second.stderr
    database = tmp_path / "var" / "crm.db"
    assert count_rows(database, "organizations") == 1
    assert count_rows(database, "users") == 1


def test_bootstrap_reads_the_password_from_stdin(tmp_path: Path) -> None:
    result = bootstrap(tmp_path, stdin=PASSWORD + "\n")

    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"org_id", "user_id"}


def test_bootstrap_refuses_a_short_password_and_creates_nothing(tmp_path: Path) -> None:
    result = bootstrap(tmp_path, CRM_BOOTSTRAP_PASSWORD="too short")

    assert result.returncode != 0
    assert result.stdout == ""
    assert "password" in result.stderr
    assert "12 characters" in result.stderr
    assert "too short" not in result.stderr  # the value itself is never echoed
    assert not (tmp_path / "var").exists()


def test_bootstrap_refuses_an_empty_stdin(tmp_path: Path) -> None:
    result = bootstrap(tmp_path, stdin="")

    assert result.returncode != 0
    assert result.stdout == ""
    assert "password" in result.stderr
    assert not (tmp_path / "var").exists()


def test_production_serve_without_master_key_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    # A server that started would outlive the timeout and fail the test.
    result = run(tmp_path, "serve", "--port", str(port), CRM_ENV="production")

    assert result.returncode != 0
    assert result.stdout == ""
    reason = result.stderr.strip().splitlines()
    assert len(reason) == 1, result.stderr
    assert "CRM_MASTER_KEY" in reason[0]
    assert not (tmp_path / "var").exists()


def test_production_serve_without_database_url_refuses_to_start(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "serve",
        "--port",
        str(free_port()),
        CRM_ENV="production",
        CRM_MASTER_KEY=MASTER_KEY,
        CRM_PUBLIC_BASE_URL="https://crm.example.com",
    )

    assert result.returncode != 0
    reason = result.stderr.strip().splitlines()
    assert len(reason) == 1, result.stderr
    assert "CRM_DATABASE_URL" in reason[0]
    assert MASTER_KEY not in result.stderr
    assert not (tmp_path / "var").exists()


def test_openapi_writes_the_spec(tmp_path: Path) -> None:
    result = run(tmp_path, "openapi", "--out", "x.json")

    assert result.returncode == 0, result.stderr
    spec = json.loads((tmp_path / "x.json").read_text())
    assert "/v1/contacts" in spec["paths"]
    assert "/v1/leads/{record_id}/convert" in spec["paths"]


def test_migrate_creates_the_schema_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    first = run(tmp_path, "migrate")
    assert first.returncode == 0, first.stderr
    database = tmp_path / "var" / "crm.db"
    revision = schema_revision(database)

    second = run(tmp_path, "migrate")

    assert second.returncode == 0, second.stderr
    assert "newest migration" in second.stderr
    assert schema_revision(database) == revision
    assert count_rows(database, "organizations") == 0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`crm-service serve` on the embedded default in tmp_path; yields its base URL."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [str(CRM_SERVICE), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not answer /healthz in time"
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_serve_answers_health_and_readiness_on_the_embedded_default(
    served: str, tmp_path: Path
) -> None:
    health = httpx.get(f"{served}/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}

    ready = httpx.get(f"{served}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "not_configured", "migrations": "ok"},
    }
    assert (tmp_path / "var" / "crm.db").is_file()


def test_a_newcomer_bootstraps_signs_in_and_files_a_contact(served: str, tmp_path: Path) -> None:
    created = bootstrap(tmp_path, stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr

    with httpx.Client(base_url=served) as http:
        login = http.post(
            "/v1/auth/login", json={"email": "admin@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        me = http.get("/v1/me", headers=headers)
        assert me.json()["id"] == json.loads(created.stdout)["user_id"]

        contact = http.post(
            "/v1/contacts",
            json={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
            headers=headers,
        )
        assert contact.status_code == 201, contact.text
        listed = http.get("/v1/contacts", headers=headers)
        assert [c["id"] for c in listed.json()["data"]] == [contact.json()["id"]]
