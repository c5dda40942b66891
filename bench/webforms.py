"""`make bench-webforms`: public web-form submissions per second, on PostgreSQL.

    .venv/bin/python -m bench.webforms [--submissions 2000] [--concurrency 16]

Starts `crm-service serve` (one worker) behind a trusted proxy address, creates a purpose and
two forms through the API (one with double opt-in, one without), then posts `--submissions`
form-encoded submissions to each `POST /forms/{id}` from as many concurrent visitors, each
with its own address (X-Forwarded-For) and email, so that every submission stays under the
throttle's per-address and per-email limits. The per-form minute limit is raised for the run
(it is a flood guard set per deployment; at its default of 600 a minute one form takes at
most 10 submissions a second however fast the service is).

- double opt-in: each submission is sealed, stored and a confirmation mail is written to the
  outbox in the same transaction (the mail is not sent: no SMTP server is configured);
- without double opt-in: each submission creates a lead (sealed, blind-indexed, history,
  audit) with its consent events at once.

Reports submissions/s, p50/p99 latency and the answers seen, and what the run left in the
database (submissions, leads, mail in the outbox). Writes
bench/results/webforms.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ipaddress
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.outbound import env_for, serving
from bench.run import (
    CRM_SERVICE,
    DEFAULT_POSTGRES_URL,
    PASSWORD,
    POSTGRES_URL_VARIABLE,
    ROOT,
    Databases,
)

RESULTS = ROOT / "bench" / "results"
ADMIN_EMAIL = "forms@example.com"


def visitor_address(index: int) -> str:
    """A distinct public-looking address per visitor (TEST-NET-2 and onwards)."""
    return str(ipaddress.IPv4Address("198.51.0.0") + index)


async def submit_all(
    base: str, form_id: str, submissions: int, concurrency: int, tag: str
) -> dict[str, Any]:
    latencies: list[float] = []
    answers: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(submissions):
        queue.put_nowait(index)

    async def visitor(client: httpx.AsyncClient) -> None:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = {
                "first_name": "Ada",
                "last_name": f"Visitor{index}",
                "email": f"{tag}{index}@example.com",
                "company": "Analytical Engines",
                "purposes": "newsletter",
            }
            started = time.perf_counter()
            response = await client.post(
                f"/forms/{form_id}",
                data=body,
                headers={"X-Forwarded-For": visitor_address(index)},
            )
            latencies.append(time.perf_counter() - started)
            answers[response.status_code] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(visitor(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "submissions": submissions,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "submissions_per_second": round(answers[202] / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "answers": {str(code): count for code, count in sorted(answers.items())},
    }


def create_forms(base: str) -> tuple[dict[str, str], str]:
    token = httpx.post(
        f"{base}/v1/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    purpose = {
        "key": "newsletter",
        "name": "Newsletter",
        "description": "A monthly newsletter about our products.",
        "notice_version": "2026-12",
        "notice_url": "https://example.com/privacy",
    }
    httpx.post(f"{base}/v1/consent/purposes", json=purpose, headers=headers).raise_for_status()
    forms = {}
    for name, double_opt_in in (("double_opt_in", True), ("direct", False)):
        response = httpx.post(
            f"{base}/v1/webforms",
            json={
                "name": f"Bench {name}",
                "module": "leads",
                "fields": [
                    {"name": "first_name"},
                    {"name": "last_name", "required": True},
                    {"name": "email", "required": True},
                    {"name": "company"},
                ],
                "purposes": ["newsletter"],
                "double_opt_in": double_opt_in,
                "redirect_url": "https://example.com/thanks",
            },
            headers=headers,
        )
        response.raise_for_status()
        forms[name] = response.json()["id"]
    return forms, token


def stored_counts(database_url: str) -> dict[str, int]:
    """What the run left in the database: submissions, leads, and mail in the outbox."""
    import asyncpg

    async def count() -> dict[str, int]:
        connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return {
                "submissions": await connection.fetchval(
                    "SELECT count(*) FROM webform_submissions"
                ),
                "leads": await connection.fetchval("SELECT count(*) FROM leads"),
                "outbox_mail": await connection.fetchval("SELECT count(*) FROM mail_outbox"),
            }
        finally:
            await connection.close()

    return asyncio.run(count())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    admin_url = os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL)
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-webforms-"))
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    databases = Databases(admin_url, workdir)
    report: dict[str, Any] = {"measured_at": datetime.now(UTC).isoformat()}
    try:
        url = databases.create("webforms")
        env = dict(
            env_for(url, master_key),
            CRM_TRUSTED_PROXIES="127.0.0.1/32",
            CRM_WEBFORM_FORM_MINUTE_LIMIT=str(args.submissions * 10),
            CRM_EMBEDDED_WORKER="false",
        )
        subprocess.run(
            [CRM_SERVICE, "migrate"], env=env, cwd=workdir, check=True, capture_output=True
        )
        subprocess.run(
            [CRM_SERVICE, "bootstrap", "--org-name", "Forms", "--admin-email", ADMIN_EMAIL],
            env=env,
            cwd=workdir,
            check=True,
            capture_output=True,
        )
        with serving(env, workdir) as (base, _):
            forms, _ = create_forms(base)
            for name, form_id in forms.items():
                report[name] = asyncio.run(
                    submit_all(base, form_id, args.submissions, args.concurrency, tag=name)
                )
        report["stored"] = stored_counts(url)
    finally:
        databases.drop_all()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "webforms.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
