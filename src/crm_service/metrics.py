"""Prometheus metrics. Labels are method, route template, status and job name: never values.

With `serve --workers N` every worker process writes its samples to files in one directory
(prometheus-client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR, set up by `serve`), and
`/metrics` adds them up, so any worker answers for all of them: request counts and latencies
summed, pool gauges summed over the live workers, job timestamps the latest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

REQUESTS = Counter(
    "crm_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
LATENCY = Histogram(
    "crm_http_request_duration_seconds",
    "Time to handle an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
POOL_OPEN = Gauge(
    "crm_db_pool_connections_open",
    "Database connections the pool holds open (in use or idle)",
    multiprocess_mode="livesum",
)
POOL_IN_USE = Gauge(
    "crm_db_pool_connections_in_use",
    "Database connections checked out of the pool by a request or job",
    multiprocess_mode="livesum",
)
JOB_RUNS = Counter("crm_worker_job_runs_total", "Runs of a periodic job", ["job"])
JOB_FAILURES = Counter(
    "crm_worker_job_failures_total", "Runs of a periodic job that failed", ["job"]
)
JOB_LAST_SUCCESS = Gauge(
    "crm_worker_job_last_success_timestamp_seconds",
    "When a periodic job last finished without error (Unix time)",
    ["job"],
    multiprocess_mode="max",
)
MAIL_MESSAGES = Counter(
    "crm_mail_messages_total",
    "Outbox mail by the outcome of a delivery attempt: sent, retried, failed, cancelled",
    ["outcome"],
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def declare_jobs(jobs: list[str]) -> None:
    """Show every job's counters from the start, at 0, so a rate or an alert sees them."""
    for job in jobs:
        JOB_RUNS.labels(job)
        JOB_FAILURES.labels(job)


def observe_job(job: str, *, succeeded_at: float | None) -> None:
    """One run of `job`: `succeeded_at` is its finishing time, or None when it failed."""
    JOB_RUNS.labels(job).inc()
    if succeeded_at is None:
        JOB_FAILURES.labels(job).inc()
    else:
        JOB_LAST_SUCCESS.labels(job).set(succeeded_at)


def observe_mail(outcome: str) -> None:
    MAIL_MESSAGES.labels(outcome).inc()


def watch_pool(engine: AsyncEngine) -> None:
    """Keep the pool gauges current from the pool's own events."""
    pool = engine.sync_engine.pool

    def opened(*_: Any) -> None:
        POOL_OPEN.inc()

    def closed(*_: Any) -> None:
        POOL_OPEN.dec()

    def checked_out(*_: Any) -> None:
        POOL_IN_USE.inc()

    def checked_in(*_: Any) -> None:
        POOL_IN_USE.dec()

    event.listen(pool, "connect", opened)
    event.listen(pool, "close", closed)
    event.listen(pool, "close_detached", closed)
    event.listen(pool, "checkout", checked_out)
    event.listen(pool, "checkin", checked_in)


def render_metrics(multiprocess_directory: Path | None) -> tuple[bytes, str]:
    """The exposition: this process's registry, or every worker's samples when serving
    several (`multiprocess_directory`)."""
    if multiprocess_directory is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiprocess_directory))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def forget_this_process(multiprocess_directory: Path | None) -> None:
    """A worker that stops takes its live gauges (pool connections) out of the sum."""
    if multiprocess_directory is not None:
        mark_process_dead(os.getpid(), str(multiprocess_directory))
