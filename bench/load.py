"""Load generation and process measurement for the harness.

`wrk` (with bench/load.lua) when it is installed; otherwise an httpx load generator in this
process, which costs more CPU per request than wrk and so caps the fastest targets lower.
Python CPU time of a server is read from /proc (utime + stime of the process and its
children, so `serve --workers N` counts every worker).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

LUA_SCRIPT = Path(__file__).with_name("load.lua")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
UNIQUE = "@N@"


@dataclass(frozen=True)
class Request:
    """What one load run sends, over and over: `UNIQUE` in the body becomes a fresh value."""

    method: str
    url: str
    token: str | None = None
    body: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def content(self, unique: str) -> str | None:
        return None if self.body is None else self.body.replace(UNIQUE, unique)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    request: Request, *, seconds: int, connections: int, threads: int, tag: str
) -> dict[str, Any]:
    env = dict(
        os.environ,
        BENCH_METHOD=request.method,
        BENCH_TOKEN=request.token or "",
        BENCH_BODY=request.body or "",
        BENCH_TAG=tag,
    )
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        request.url,
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            raw = json.loads(line.removeprefix("BENCH_RESULT "))
            return _result(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                failed=raw["errors"]["status"],
                socket_errors=sum(v for k, v in raw["errors"].items() if k != "status"),
                p50_ms=raw["latency_us"]["p50"] / 1000,
                p99_ms=raw["latency_us"]["p99"] / 1000,
            )
    raise RuntimeError(
        f"wrk printed no result (exit {done.returncode}): {done.stderr.strip()[-500:]}"
    )


def run_httpx(request: Request, *, seconds: int, connections: int, tag: str) -> dict[str, Any]:
    return asyncio.run(_httpx_load(request, seconds=seconds, connections=connections, tag=tag))


async def _httpx_load(
    request: Request, *, seconds: int, connections: int, tag: str
) -> dict[str, Any]:
    latencies: list[float] = []
    failed = 0
    socket_errors = 0
    headers = request.headers()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def user(number: int) -> None:
            nonlocal failed, socket_errors
            sent = 0
            while time.perf_counter() < deadline:
                sent += 1
                began = time.perf_counter()
                try:
                    response = await client.request(
                        request.method,
                        request.url,
                        headers=headers,
                        content=request.content(f"{tag}-{number}-{sent}"),
                    )
                except httpx.HTTPError:
                    socket_errors += 1
                    continue
                latencies.append(time.perf_counter() - began)
                if response.status_code >= 400:
                    failed += 1

        await asyncio.gather(*(user(n) for n in range(connections)))
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return _result(
        requests=len(latencies),
        seconds=elapsed,
        failed=failed,
        socket_errors=socket_errors,
        p50_ms=quantiles[49] * 1000,
        p99_ms=quantiles[98] * 1000,
    )


def _result(
    *, requests: int, seconds: float, failed: int, socket_errors: int, p50_ms: float, p99_ms: float
) -> dict[str, Any]:
    return {
        "requests": requests,
        "seconds": round(seconds, 3),
        "rps": requests / seconds if seconds else 0.0,
        "non_2xx": failed,
        "socket_errors": socket_errors,
        "p50_ms": p50_ms,
        "p99_ms": p99_ms,
    }


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in ticks) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def process_tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by `root` and every live descendant."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(stats[pid][1] for pid in tree if pid in stats) / CLOCK_TICKS
