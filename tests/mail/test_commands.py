"""The operator's view of mail: `crm-service outbox list|show`, `worker --once`, and
`crm-service serve` on the embedded default sending queued mail from its in-process loop."""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from crm_service.crypto.master import key_provider_from_settings
from crm_service.crypto.service import session_info
from crm_service.db.engine import make_engine, make_sessionmaker
from crm_service.db.session import commit
from crm_service.mail.outbox import enqueue
from tests.conftest import make_settings
from tests.mail.conftest import SmtpServer
from tests.test_cli import CRM_SERVICE, MASTER_KEY, PASSWORD, bootstrap, clean_env, free_port, run

SERVE_TIMEOUT = 30


def _embedded(tmp_path: Path, **settings: str) -> dict[str, str]:
    database = tmp_path / "var" / "crm.db"
    return {
        "CRM_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "CRM_MASTER_KEY": MASTER_KEY,
        **settings,
    }


def _org(tmp_path: Path, **settings: str) -> uuid.UUID:
    created = bootstrap(tmp_path, stdin=PASSWORD + "\n", **settings)
    assert created.returncode == 0, created.stderr
    return uuid.UUID(json.loads(created.stdout)["org_id"])


async def _queue(tmp_path: Path, org_id: uuid.UUID, to: str, tag: str, **options: Any) -> uuid.UUID:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'var' / 'crm.db'}", master_key=MASTER_KEY
    )
    engine = make_engine(settings.database_url)
    info = session_info(key_provider_from_settings(settings), phone_region=None)
    try:
        async with make_sessionmaker(engine, info=info)() as session:
            message_id = await enqueue(
                session,
                organization_id=org_id,
                to=to,
                template="user_invitation",
                context={
                    "organization_name": f"Org {tag}",
                    "accept_url": f"https://crm.example.com/accept/{tag}",
                    "valid_hours": 72,
                },
                **options,
            )
            await commit(session)
    finally:
        await engine.dispose()
    return message_id


async def test_outbox_list_shows_queued_mail_without_recipient_or_content(tmp_path: Path) -> None:
    env = _embedded(tmp_path)
    org_id = _org(tmp_path, **env)
    tag = secrets.token_hex(5)
    to = f"listed.{tag}@example.com"
    org_mail = await _queue(tmp_path, org_id, to, tag)
    subject_mail = await _queue(tmp_path, org_id, to, tag, subject_id=uuid.uuid4())

    listed = run(tmp_path, "outbox", "list", **env)
    assert listed.returncode == 0, listed.stderr
    for message_id in (org_mail, subject_mail):
        [line] = [line for line in listed.stdout.splitlines() if str(message_id) in line]
        assert "user_invitation" in line and "queued" in line
    assert tag not in listed.stdout + listed.stderr
    assert "2 queued" in listed.stderr
    assert "CRM_SMTP_URL is not set" in listed.stderr

    as_json = run(tmp_path, "outbox", "list", "--json", "--status", "queued", **env)
    assert as_json.returncode == 0, as_json.stderr
    entries = {entry["id"]: entry for entry in map(json.loads, as_json.stdout.splitlines())}
    assert entries[str(subject_mail)]["sealed_under"] == "subject"
    entry = entries[str(org_mail)]
    assert entry["sealed_under"] == "organization"
    assert (entry["template"], entry["language"], entry["status"], entry["attempts"]) == (
        "user_invitation",
        "en",
        "queued",
        0,
    )
    assert entry["organization_id"] == str(org_id)
    assert entry["created_at"] and entry["next_attempt_at"]
    assert tag not in as_json.stdout

    wrong = run(tmp_path, "outbox", "list", "--status", "lost", **env)
    assert wrong.returncode == 2 and "--status must be one of" in wrong.stderr

    # Opening one message shows it, and the organization's audit log says so.
    shown = run(tmp_path, "outbox", "show", str(org_mail), **env)
    assert shown.returncode == 0, shown.stderr
    assert f"To: {to}" in shown.stdout
    assert f"https://crm.example.com/accept/{tag}" in shown.stdout
    with sqlite3.connect(tmp_path / "var" / "crm.db") as connection:
        revealed = connection.execute(
            "SELECT count(*) FROM audit_events WHERE action = 'mail.revealed'"
        ).fetchone()[0]
    assert revealed == 1
    missing = run(tmp_path, "outbox", "show", str(uuid.uuid4()), **env)
    assert missing.returncode == 1 and "no such message" in missing.stderr


async def test_worker_once_sends_queued_mail(tmp_path: Path, smtp_server: SmtpServer) -> None:
    env = _embedded(tmp_path, CRM_SMTP_URL=smtp_server.url)
    org_id = _org(tmp_path, **env)
    to = f"once.{secrets.token_hex(5)}@example.com"
    await _queue(tmp_path, org_id, to, "once")
    done = run(tmp_path, "worker", "--once", **env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["send_mail"] == 1
    assert len(smtp_server.inbox.to(to)) == 1
    listed = run(tmp_path, "outbox", "list", "--json", **env)
    [entry] = map(json.loads, listed.stdout.splitlines())
    assert (entry["status"], entry["attempts"]) == ("sent", 1)


async def test_serve_on_the_embedded_default_sends_queued_mail_in_process(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    env = _embedded(tmp_path, CRM_SMTP_URL=smtp_server.url, CRM_WORKER_INTERVAL_SECONDS="0.5")
    org_id = _org(tmp_path, **env)
    to = f"served.{secrets.token_hex(5)}@example.com"
    await _queue(tmp_path, org_id, to, "served")
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(CRM_SERVICE), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + SERVE_TIMEOUT
            while not smtp_server.inbox.to(to):
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "no mail from serve in time"
                time.sleep(0.2)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert 'crm_mail_messages_total{outcome="sent"} 1.0' in metrics
        finally:
            process.terminate()
            try:
                code = process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
    # Stopped cleanly: the loop was cancelled with the app's shutdown (uvicorn exits by the
    # signal it got, after a complete shutdown).
    text = log_path.read_text()
    assert code in (0, -15), text
    assert "Application shutdown complete" in text
    assert "embedded_worker_started" in text
    assert "Traceback" not in text
    assert len(smtp_server.inbox.to(to)) == 1


def test_test_apps_and_production_serve_run_no_loop_unless_asked(tmp_path: Path) -> None:
    from crm_service.main import create_app

    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))

    async def tasks_while_running() -> set[str]:
        import asyncio

        from asgi_lifespan import LifespanManager

        async with LifespanManager(app):
            await asyncio.sleep(0)
            return {task.get_name() for task in asyncio.all_tasks()}

    import asyncio

    assert "crm-embedded-worker" not in asyncio.run(tasks_while_running())
