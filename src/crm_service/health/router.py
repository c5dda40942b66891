"""HTTP for operators: liveness, readiness and Prometheus metrics. Public, value-free."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from crm_service.db.session import CRMRouter
from crm_service.health.service import last_backup, readiness
from crm_service.kit.schemas import INT64_MAX, text, whole_number
from crm_service.metrics import observe_backup, render_metrics

router = CRMRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessChecks(BaseModel):
    database: text(32)
    redis: text(32)
    migrations: text(32)


class BackupStatus(BaseModel):
    last_success_at: datetime
    size_bytes: whole_number(le=INT64_MAX)


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: ReadinessChecks
    # A detail, present once a scheduled backup succeeded: the last one.
    backup: BackupStatus | None = None


@router.get("/healthz", operation_id="getHealth", summary="Liveness: the process answers")
async def healthz() -> Health:
    """Answers 200 while the process serves requests; checks nothing else."""
    return Health()


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="Readiness: database reachable, migrations at head, Redis when configured",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is not ready"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers, migrations are at head and Redis (when configured) answers;
    503 with each check's state otherwise.
    """
    state = request.app.state
    checks = await readiness(
        engine=state.engine, head_revision=state.head_revision, redis=state.redis
    )
    ready = all(value in ("ok", "not_configured") for value in checks.values())
    backup = await last_backup(state.engine) if checks["database"] == "ok" else None
    body = Readiness(
        status="ok" if ready else "unavailable",
        checks=ReadinessChecks(**checks),
        backup=BackupStatus(**backup) if backup is not None else None,
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=200 if ready else 503
    )


@router.get(
    "/metrics",
    operation_id="getMetrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition: request counts and latencies by route template, never by
    value."""
    settings = request.app.state.settings
    # The worker may run elsewhere: the last backup comes from the job's shared row.
    backup = await last_backup(request.app.state.engine)
    if backup is not None:
        observe_backup(
            succeeded_at=backup["last_success_at"].timestamp(), size=backup["size_bytes"]
        )
    body, content_type = render_metrics(settings.metrics_multiprocess_directory)
    return Response(body, media_type=content_type)
