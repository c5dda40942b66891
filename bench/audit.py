"""Cost of the audit log: create-contact throughput with auditing on versus off, same run.

    .venv/bin/python bench/audit.py [--database-url URL] [--writers 16] [--seconds 5]

Concurrent API clients create contacts through the HTTP app for a fixed time. "Off" is the
same process with the audit writer replaced by one that drops the events (a benchmark-only
switch; the product has none), so the ratio isolates chaining and inserting the events.
On PostgreSQL it also runs with every event on one chain, to show what spreading an
organization's writers over several chains buys. Rounds alternate on/off to share the
machine's noise; medians are reported. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from crm_service.audit import service as audit_service
from crm_service.config import Settings
from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.db.session import commit
from crm_service.main import create_app
from crm_service.orgs.service import bootstrap_organization

PASSWORD = "benchmark password 123"
REAL_WRITER = audit_service.write_pending
REAL_CHAINS = audit_service.CHAINS


async def _dropping_writer(session: Any) -> None:
    audit_service.discard_pending(session)


def configure(mode: str) -> None:
    audit_service.write_pending = _dropping_writer if mode == "off" else REAL_WRITER
    audit_service.CHAINS = 1 if mode == "one_chain" else REAL_CHAINS


async def throughput(
    client: httpx.AsyncClient, headers: dict[str, str], writers: int, seconds: float
) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def writer(index: int) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            body = {
                "first_name": "Bench",
                "last_name": f"Writer {index}",
                "email": f"w{index}.{n}.{secrets.token_hex(3)}@example.com",
                "national_id": "QQ123456C",
            }
            response = await client.post("/v1/contacts", json=body, headers=headers)
            assert response.status_code == 201, response.text
            n += 1
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    return done / (time.perf_counter() - started)


async def main(
    database_url: str | None, writers: int, seconds: float, rounds: int
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-audit-"))
    url = database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    settings = Settings(
        database_url=url,
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        log_level="WARNING",
    )
    app = create_app(settings)
    modes = ["on", "off"] + (["one_chain"] if url.startswith("postgresql") else [])
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            email = f"admin-{secrets.token_hex(3)}@example.com"
            async with app.state.sessionmaker() as session:
                await bootstrap_organization(
                    session=session, org_name="bench", admin_email=email, password=PASSWORD
                )
                await commit(session)
            login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            await throughput(client, headers, writers, 1.0)  # warm-up
            for _ in range(rounds):
                for mode in modes:
                    configure(mode)
                    samples[mode].append(await throughput(client, headers, writers, seconds))
            configure("on")
    report: dict[str, Any] = {
        "database": url.split(":")[0],
        "writers": writers,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "creates_per_second": {mode: round(statistics.median(s), 1) for mode, s in samples.items()},
    }
    median = report["creates_per_second"]
    report["ratio_on_to_off"] = round(median["on"] / median["off"], 3)
    if "one_chain" in median:
        report["ratio_eight_chains_to_one"] = round(median["on"] / median["one_chain"], 3)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        json.dumps(
            asyncio.run(main(args.database_url, args.writers, args.seconds, args.rounds)), indent=2
        )
    )
