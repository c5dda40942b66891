"""One log format per run, chosen for where the logs go: JSON for pipes and files, console
lines on a developer's terminal, colour codes only on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import httpx

from tests.test_cli import CRM_SERVICE, clean_env, free_port, run
from tests.test_metrics_workers import running, wait_for

ESCAPE = "\x1b["


def log_lines(stderr: str) -> list[str]:
    """stderr without the command's own closing message (not a log line)."""
    return [line for line in stderr.splitlines() if line and not line.startswith("database is")]


def test_piped_logs_are_json_without_colour(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate")

    assert result.returncode == 0, result.stderr
    lines = log_lines(result.stderr)
    assert lines, result.stderr
    for line in lines:
        assert json.loads(line)["level"] in {"debug", "info", "warning"}
    assert ESCAPE not in result.stderr


def test_console_lines_when_asked_stay_uncoloured_in_a_pipe(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", CRM_LOG_JSON="false")

    assert result.returncode == 0, result.stderr
    lines = log_lines(result.stderr)
    assert lines and not any(line.startswith("{") for line in lines), result.stderr
    assert ESCAPE not in result.stderr


def test_a_terminal_in_development_gets_console_lines(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [str(CRM_SERVICE), "migrate"],
            cwd=tmp_path,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            timeout=60,
        )
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: everything was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)

    assert done.returncode == 0
    text = seen.decode(errors="replace")
    assert "Running upgrade" in text
    assert not any(line.startswith("{") for line in text.splitlines())


def test_a_served_run_logs_in_one_format(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    with running(tmp_path, "serve", "--port", base.rsplit(":", 1)[1]) as log_path:
        wait_for(f"{base}/healthz", log_path)
        httpx.get(f"{base}/v1/me")

    lines = [line for line in log_path.read_text().splitlines() if line]
    events = [json.loads(line) for line in lines]  # the CLI's, uvicorn's and the app's alike
    assert {"started", "request", "Application startup complete."} <= {e["event"] for e in events}
