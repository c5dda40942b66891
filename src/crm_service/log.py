"""Logs, and the outermost middleware that gives each request an id.

One format per run, on stderr (stdout stays for a command's output): JSON lines, or
human-readable console lines when stderr is a terminal in development (CRM_LOG_JSON forces
either), coloured only on a terminal. Logs name routes by template
(`/v1/contacts/{record_id}`) and never carry a query string, a request body or an exception
message: any of those can hold personal data (rule 4).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import traceback
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_service.config import Environment, Settings
from crm_service.errors import CRMError, render
from crm_service.metrics import observe_request

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
access_logger = structlog.get_logger("crm_service.access")
_QUIET_LOGGERS = ("alembic.runtime.plugins",)
_VALUE_ECHOING_LOGGERS = (
    "aiosqlite",
    "asyncpg",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "httpx",
    "httpcore",
)
error_logger = structlog.get_logger("crm_service.errors")


def _exception_without_message(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Replace exc_info with the exception type and frame locations, dropping its message.

    Driver messages quote the values of the row involved; frames (file, line, function) are
    enough to find a bug without leaking them.
    """
    exc_info = event.pop("exc_info", None)
    if exc_info is None:
        return event
    exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
    if exc is not None:
        event["exception_type"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
        event["frames"] = [
            f"{frame.filename}:{frame.lineno}:{frame.name}"
            for frame in traceback.extract_tb(exc.__traceback__)
        ]
    return event


def configure_logging(
    level: str = "INFO",
    *,
    json: bool | None = None,
    development: bool = True,
) -> None:
    """Route every logger (ours, uvicorn's, libraries') through one handler on stderr.
    `json=None` picks console lines for a developer's terminal, JSON for anything else
    (files, pipes, log collectors)."""
    stream = sys.stderr
    on_terminal = bool(getattr(stream, "isatty", lambda: False)())
    if json is None:
        json = not (development and on_terminal)
    process_id = os.getpid()  # each worker configures its own logging, after it started

    def add_process_id(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        event["pid"] = process_id  # which of `serve --workers N` processes wrote the line
        return event

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_process_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _exception_without_message,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=on_terminal)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library loggers that print bound SQL parameters or full URLs stay at WARNING whatever
    # CRM_LOG_LEVEL says: at DEBUG/INFO they would write personal data.
    for name in (*_VALUE_ECHOING_LOGGERS, *_QUIET_LOGGERS):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Uvicorn's access log prints the raw path and query string; ours names the route instead.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def configure_logging_for(settings: Settings) -> None:
    """Logging as CRM_LOG_LEVEL and CRM_LOG_JSON say, then the warnings settings left."""
    configure_logging(
        settings.log_level,
        json=settings.log_json,
        development=settings.env is Environment.DEVELOPMENT,
    )
    settings.report_unknown_variables()


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContextMiddleware:
    """Request id in and out, one access-log line and metrics per request, and a problem+json
    500 for anything unhandled (logged without its message, never re-raised to the server)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            error_logger.error("unhandled_error", exc_info=exc)
            if not response_started:
                await render(scope.get("path"), CRMError())(scope, receive, send_with_id)
        finally:
            duration = time.perf_counter() - started
            route = route_template(scope)
            observe_request(scope["method"], route, status, duration)
            access_logger.info(
                "request",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(duration * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()
