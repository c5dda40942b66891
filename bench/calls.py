"""`make bench-calls`: what each request of the request-path benchmark costs, counted, not timed.

    .venv/bin/python -m bench.calls [--requests 30] [--contacts 200] [--only get,post,...]

Wall-clock figures move with whatever else the machine runs; these do not. The harness sets
up the same organizations, users and records as `make bench` (bench/run.py, on PostgreSQL
through CRM_BENCH_POSTGRES_URL), then serves the app in this process and sends each
scenario's request `--requests` times one at a time, counting per request:

- database round trips and SQL statements (the counters of bench/probe.py);
- Python function calls made while the app handles the request (cProfile), a figure that
  follows CPU work closely and repeats exactly from run to run.

The export scenario downloads `GET /v1/contacts/export` (CSV) once over the seeded contacts
and reports round trips and calls per exported contact. Writes bench/results/calls.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import probe
from bench.run import POST_BODY, RESULTS, SCENARIOS, Bench, parse_args

SCENARIO_NAMES = ("get", "get_sensitive", "get_standard", "partner_get", "list", "post", "export")


class Profiled:
    """An ASGI wrapper that profiles the app only while it handles a request."""

    def __init__(self, app: Any, profile_dir: Path | None) -> None:
        self.app = app
        self.profile: cProfile.Profile | None = None
        self.profile_dir = profile_dir

    def dump(self, name: str) -> None:
        """Keep the profile for pstats or snakeviz, when asked to (`--profile-dir`)."""
        if self.profile_dir is not None and self.profile is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            self.profile.dump_stats(self.profile_dir / f"{name}.prof")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        profile = self.profile
        if profile is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        profile.enable()
        try:
            await self.app(scope, receive, send)
        finally:
            profile.disable()


def counted() -> dict[str, Any]:
    return {
        "round_trips": sum(probe.round_trips.values()),
        "statements": probe.statements,
        "round_trips_by_kind": dict(probe.round_trips),
        "simple_queries": dict(probe.simple_queries),
        "statements_by_kind": dict(probe.statement_kinds),
    }


def per(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, Any]:
    """What happened between two counts, per request."""
    figures: dict[str, Any] = {}
    for key, value in after.items():
        if isinstance(value, dict):
            figures[key] = {
                kind: (count - before[key].get(kind, 0)) / n
                for kind, count in sorted(value.items())
                if count != before[key].get(kind, 0)
            }
        else:
            figures[key] = (value - before[key]) / n
    return figures


async def measure(
    client: httpx.AsyncClient,
    wrapper: Profiled,
    name: str,
    request: tuple[str, str, str, str | None],
    n: int,
) -> dict[str, Any]:
    method, path, token, body = request
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    expected = 201 if method == "POST" else 200

    async def send(number: int) -> None:
        content = None if body is None else body.replace("@N@", f"calls{number}")
        response = await client.request(method, path, headers=headers, content=content)
        if response.status_code != expected:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")

    for number in range(5):  # warm: statement caches, the key cache, prepared statements
        await send(number)
    before = counted()
    for number in range(n):
        await send(100 + number)
    figures = per(before, counted(), n)
    wrapper.profile = cProfile.Profile()
    for number in range(n):
        await send(1000 + number)
    figures["python_calls"] = pstats.Stats(wrapper.profile).total_calls / n
    wrapper.dump(name)
    wrapper.profile = None
    return figures


async def measure_export(
    client: httpx.AsyncClient, wrapper: Profiled, token: str, contacts: int
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}

    async def download() -> int:
        response = await client.get("/v1/contacts/export?format=csv", headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"export: {response.status_code} {response.text[:300]}")
        return response.content.count(b"\n") - 1

    await download()  # warm: the data keys' unwrapped material is cached from here on
    started = time.perf_counter()
    await download()
    seconds = time.perf_counter() - started
    before = counted()
    wrapper.profile = cProfile.Profile()
    rows = await download()
    calls = pstats.Stats(wrapper.profile).total_calls
    wrapper.dump("export")
    wrapper.profile = None
    figures = per(before, counted(), 1)
    figures.update(
        rows=rows,
        python_calls_per_contact=calls / max(rows, 1),
        # In-process, unprofiled, keys cached: a wall-clock figure, as noisy as the machine.
        contacts_per_second_in_process=round(rows / seconds),
    )
    return figures


async def run_in_process(
    database_url: str, master_key: str, identities: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    from asgi_lifespan import LifespanManager

    from crm_service.config import Settings
    from crm_service.main import create_app

    app = create_app(
        Settings(database_url=database_url, master_key=master_key, log_level="WARNING")
    )
    wrapper = Profiled(app, args.profile_dir)
    admin = identities["admin"]
    requests = {
        "get": ("GET", f"/v1/contacts/{identities['plain']}", admin, None),
        "get_sensitive": ("GET", f"/v1/contacts/{identities['sensitive']}", admin, None),
        "get_standard": (
            "GET",
            f"/v1/contacts/{identities['standard_record']}",
            identities["standard"],
            None,
        ),
        "partner_get": ("GET", f"/v1/contacts/{identities['plain']}", identities["partner"], None),
        "list": ("GET", "/v1/contacts?limit=50", admin, None),
        "post": ("POST", "/v1/contacts", identities["writer"], POST_BODY),
    }
    results: dict[str, Any] = {}
    async with LifespanManager(wrapper) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for name in args.scenarios:
                if name == "export":
                    results[name] = await measure_export(client, wrapper, admin, args.contacts)
                else:
                    results[name] = await measure(
                        client, wrapper, name, requests[name], args.requests
                    )
                figures = results[name]
                calls = figures.get("python_calls", figures.get("python_calls_per_contact"))
                print(
                    f"{name:<14} round trips {figures['round_trips']:6.1f}  "
                    f"statements {figures['statements']:6.1f}  python calls {calls:9.1f}",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.calls", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="requests counted per scenario")
    parser.add_argument("--contacts", type=int, default=200, help="seeded contacts (min 100)")
    parser.add_argument(
        "--only",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        default=list(SCENARIO_NAMES),
        help=f"comma-separated: {', '.join(SCENARIO_NAMES)}",
    )
    parser.add_argument(
        "--profile-dir", type=Path, default=None, help="keep each scenario's cProfile here"
    )
    own = parser.parse_args(argv)
    unknown = set(own.only) - set(SCENARIO_NAMES)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    own.scenarios = [name for name in SCENARIO_NAMES if name in own.only]
    probe._install_counters()
    bench_args = parse_args(["--contacts", str(own.contacts), "--only", ",".join(SCENARIOS)])
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-calls-"))
    bench = Bench(bench_args, [], workdir)
    started_at = datetime.now(UTC)
    try:
        main_url, identities = bench.set_up_main()
        for server in bench.servers.values():
            server.stop()
        results = asyncio.run(run_in_process(main_url, bench.master_key, identities, own))
    finally:
        bench.tear_down()
        shutil.rmtree(workdir, ignore_errors=True)
    report = {"started_at": started_at.isoformat(timespec="seconds"), "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "calls.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
