"""/metrics of `serve --workers N` counts every worker's requests, whichever worker answers
the scrape; `worker --metrics-port` serves the periodic jobs' metrics."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.test_cli import CRM_SERVICE, clean_env, free_port

START_TIMEOUT = 60  # two workers import the app on a shared, busy machine
MAX_REQUESTS = 400


@contextmanager
def running(cwd: Path, *args: str) -> Iterator[Path]:
    """`crm-service ARGS` in the background, its log (stdout and stderr) in a file."""
    log_path = cwd / "process.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(CRM_SERVICE), *args], cwd=cwd, env=clean_env(), stdout=log, stderr=log
        )
        try:
            yield log_path
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in time:\n{log_path.read_text()[-3000:]}")


def answering_pids(log_path: Path, route: str) -> set[int]:
    pids = set()
    for line in log_path.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "request" and event.get("route") == route:
                pids.add(event["pid"])
    return pids


def sample(metrics: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(name + (f"{{{wanted}}}" if labels else "")) + r" ([0-9.e+]+)$"
    found = re.search(pattern, metrics, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_metrics_of_two_workers_count_every_request(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(tmp_path, "serve", "--port", str(port), "--workers", "2") as log_path:
        wait_for(f"{base}/readyz", log_path)
        sent = 0
        # A new connection per request, so the kernel hands them to either worker.
        while len(answering_pids(log_path, "/healthz")) < 2 and sent < MAX_REQUESTS:
            assert httpx.get(f"{base}/healthz", headers={"Connection": "close"}).status_code == 200
            sent += 1
        assert len(answering_pids(log_path, "/healthz")) == 2, f"one worker took all {sent}"

        deadline = time.monotonic() + 10
        while True:  # a worker counts a request just after answering it
            metrics = httpx.get(f"{base}/metrics").text
            counted = sample(
                metrics, "crm_http_requests_total", method="GET", route="/healthz", status="200"
            )
            # The in-process worker loop may hold a connection for a job at the scrape.
            idle = sample(metrics, "crm_db_pool_connections_in_use") == 0
            if (counted == sent and idle) or time.monotonic() > deadline:
                break
            time.sleep(0.2)

    assert counted == sent
    assert (
        sample(metrics, "crm_http_request_duration_seconds_count", method="GET", route="/healthz")
        == sent
    )
    assert sample(metrics, "crm_db_pool_connections_in_use") == 0
    assert (sample(metrics, "crm_db_pool_connections_open") or 0) >= 1  # /readyz connected


def test_the_worker_serves_its_job_metrics(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with running(tmp_path, "worker", "--metrics-port", str(port)) as log_path:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                metrics = httpx.get(url, timeout=2).text
            except httpx.TransportError:
                metrics = ""
            runs = sample(metrics, "crm_worker_job_runs_total", job="purge_audit_log")
            if runs or time.monotonic() > deadline:
                break
            time.sleep(0.3)

    assert runs == 1, log_path.read_text()[-3000:]
    for job in ("purge_recycle_bin", "purge_audit_log"):
        assert sample(metrics, "crm_worker_job_failures_total", job=job) == 0
        last_success = sample(metrics, "crm_worker_job_last_success_timestamp_seconds", job=job)
        assert last_success is not None and abs(last_success - time.time()) < 120
