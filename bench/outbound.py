"""`make bench-outbound`: data that leaves the service, measured on PostgreSQL.

    .venv/bin/python -m bench.outbound [--contacts 100000] [--events 2000] [--format csv]

- Export: seeds `--contacts` contacts through the service's storage layer (sealed and
  blind-indexed, each its own data subject, as bench/run.py does), starts `crm-service serve`
  (one worker) and downloads `GET /v1/contacts/export` as the administrator, counting rows as
  they stream. Reports contacts/s and the server's peak resident memory (VmHWM).
- Webhooks: queues `--events` contact events for one endpoint through the outbox and lets the
  delivery job send them to a receiver on loopback (another process), reporting deliveries/s.

Writes bench/results/outbound.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.run import (
    CRM_SERVICE,
    DEFAULT_POSTGRES_URL,
    PASSWORD,
    POSTGRES_URL_VARIABLE,
    ROOT,
    Databases,
    analyze,
    seed_contacts,
)

RESULTS = ROOT / "bench" / "results"


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@contextmanager
def serving(env: dict[str, str], workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`crm-service serve` (one worker) on a free loopback port, once it answers; its base URL
    and process. Stopped on the way out."""
    port = free_port()
    server = subprocess.Popen(
        [CRM_SERVICE, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def receiver(port: int) -> None:
    """A minimal receiver that answers 204 to everything (its own process)."""
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def env_for(database_url: str, master_key: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    return dict(
        inherited,
        CRM_ENV="development",
        CRM_DATABASE_URL=database_url,
        CRM_MASTER_KEY=master_key,
        CRM_BOOTSTRAP_PASSWORD=PASSWORD,
    )


def export_scenario(
    database_url: str, master_key: str, workdir: Path, contacts: int, fmt: str
) -> dict[str, Any]:
    env = env_for(database_url, master_key)
    created = json.loads(
        subprocess.run(
            [CRM_SERVICE, "bootstrap", "--org-name", "Bench", "--admin-email", "a@example.com"],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    org_id, user_id = uuid.UUID(created["org_id"]), uuid.UUID(created["user_id"])
    started = time.perf_counter()
    asyncio.run(seed_contacts(database_url, master_key, org_id, user_id, contacts))
    asyncio.run(analyze(database_url))
    print(f"seeded {contacts} contacts in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    with serving(env, workdir) as (base, server):
        token = httpx.post(
            f"{base}/v1/auth/login", json={"email": "a@example.com", "password": PASSWORD}
        ).json()["access_token"]
        rss_before = peak_rss_mb(server.pid)
        rows = -1 if fmt == "csv" else 0  # the CSV header
        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        with httpx.stream(
            "GET",
            f"{base}/v1/contacts/export?format={fmt}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=None,
        ) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                rows += chunk.count(b"\n")
        seconds = time.perf_counter() - started
        server_cpu = cpu_seconds(server.pid) - cpu_before
        return {
            "format": fmt,
            "contacts": contacts,
            "rows": rows,
            "seconds": round(seconds, 2),
            "contacts_per_second": round(rows / seconds),
            # The server's own CPU per exported contact: what the rate costs it.
            "server_cpu_us_per_contact": round(server_cpu / max(rows, 1) * 1e6, 1),
            "server_peak_rss_mb_before": round(rss_before, 1),
            "server_peak_rss_mb": round(peak_rss_mb(server.pid), 1),
        }


async def webhook_scenario(database_url: str, master_key: str, events: int) -> dict[str, Any]:
    from crm_service import models  # noqa: F401 - registers every table
    from crm_service.config import Settings
    from crm_service.crypto.master import key_provider_from_settings
    from crm_service.crypto.service import session_info
    from crm_service.db.engine import make_engine, make_sessionmaker
    from crm_service.db.session import commit
    from crm_service.integrations.delivery import deliver_due
    from crm_service.integrations.schemas import WebhookCreate
    from crm_service.integrations.webhooks import create_endpoint
    from crm_service.orgs.service import bootstrap_organization
    from crm_service.records.contacts.schemas import ContactCreate
    from crm_service.records.contacts.service import contacts
    from crm_service.security.principal import Principal
    from crm_service.security.scopes import ALL_SCOPES

    port = free_port()
    process = multiprocessing.Process(target=receiver, args=(port,), daemon=True)
    process.start()
    settings = Settings(
        database_url=database_url, master_key=master_key, webhook_allow_private_targets=True
    )
    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(
        engine, info=session_info(key_provider_from_settings(settings), phone_region=None)
    )
    try:
        async with sessionmaker() as session:
            created = await bootstrap_organization(
                session=session, org_name="Hooks", admin_email="h@example.com", password=PASSWORD
            )
            await commit(session)
        principal = Principal(
            organization_id=created.organization.id,
            user_id=created.admin.id,
            scopes=ALL_SCOPES,
        )
        async with sessionmaker() as session:
            await create_endpoint(
                session=session,
                principal=principal,
                payload=WebhookCreate(
                    url=f"http://127.0.0.1:{port}/hook", events=["contact.created"]
                ),
                settings=settings,
            )
            await commit(session)
        # Each change through the records service, which writes the outbox.
        for start in range(0, events, 200):
            async with sessionmaker() as session:
                for index in range(start, min(start + 200, events)):
                    await contacts.create(
                        session=session,
                        principal=principal,
                        payload=ContactCreate(last_name="Hook", email=f"hook{index}@example.com"),
                    )
                await commit(session)
        await asyncio.sleep(1)  # the receiver is up
        now = datetime.now(UTC) + timedelta(seconds=1)
        started = time.perf_counter()
        cpu_started = time.process_time()
        sent = 0
        while True:
            done = await deliver_due(sessionmaker, settings, now, limit=200)
            if not done:
                break
            sent += done
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        return {
            "events": events,
            # The delivering process's CPU per delivery (the receiver is another process).
            "cpu_ms_per_delivery": round(cpu / max(sent, 1) * 1000, 2),
            "delivered": sent,
            "seconds": round(seconds, 2),
            "deliveries_per_second": round(sent / seconds, 1),
        }
    finally:
        await engine.dispose()
        process.terminate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--format", choices=["csv", "ndjson"], default="csv")
    parser.add_argument("--only", choices=["export", "webhooks"], default=None)
    args = parser.parse_args(argv)
    admin_url = os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL)
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-outbound-"))
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    databases = Databases(admin_url, workdir)
    report: dict[str, Any] = {"measured_at": datetime.now(UTC).isoformat()}
    try:
        if args.only in (None, "export"):
            url = databases.create("export")
            subprocess.run([CRM_SERVICE, "migrate"], env=env_for(url, master_key), check=True)
            report["export"] = export_scenario(url, master_key, workdir, args.contacts, args.format)
        if args.only in (None, "webhooks"):
            url = databases.create("webhooks")
            subprocess.run([CRM_SERVICE, "migrate"], env=env_for(url, master_key), check=True)
            report["webhooks"] = asyncio.run(webhook_scenario(url, master_key, args.events))
    finally:
        databases.drop_all()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "outbound.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
