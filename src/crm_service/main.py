"""create_app(): lifespan, middleware order, routers and error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from redis.asyncio import Redis

from crm_service import __version__, models  # noqa: F401 - registers every table
from crm_service.access.router import router as access_router
from crm_service.audit.router import router as audit_router
from crm_service.auth.router import router as auth_router
from crm_service.auth.sso_router import router as sso_router
from crm_service.auth.throttle import SignInThrottle
from crm_service.backups.forget_log import ForgetLog
from crm_service.clock import Clock
from crm_service.config import Settings, get_settings
from crm_service.consent.public_router import router as consent_public_router
from crm_service.consent.router import router as consent_router
from crm_service.crypto.master import key_provider_from_settings
from crm_service.crypto.service import session_info
from crm_service.db.engine import make_engine, make_sessionmaker
from crm_service.db.migrations import ensure_sqlite_directory, head_revision
from crm_service.errors import install_error_handlers
from crm_service.health.router import router as health_router
from crm_service.http_methods import AllowedMethodsMiddleware
from crm_service.integrations.router import router as webhooks_router
from crm_service.log import RequestContextMiddleware, configure_logging_for
from crm_service.mail.router import router as mail_templates_router
from crm_service.metrics import forget_this_process, watch_pool
from crm_service.oauth.errors import install_oauth_errors
from crm_service.oauth.router import router as oauth_router
from crm_service.openapi import install_openapi
from crm_service.orgs.router import router as settings_router
from crm_service.portal.router import router as portal_router
from crm_service.privacy.package_router import router as privacy_package_router
from crm_service.privacy.router import router as privacy_router
from crm_service.records.accounts.router import router as accounts_router
from crm_service.records.contacts.router import router as contacts_router
from crm_service.records.leads.router import router as leads_router
from crm_service.records.recycle_bin import router as recycle_bin_router
from crm_service.security.body_limit import BodySizeLimitMiddleware
from crm_service.security.client_ip import ClientAddressMiddleware
from crm_service.security.cors import CorsMiddleware
from crm_service.security.headers import SecurityHeadersMiddleware
from crm_service.security.principal import PUBLIC_PATHS
from crm_service.security.ratelimit import (
    MemoryCounter,
    RateLimited,
    RateLimiter,
    RateLimitMiddleware,
    RedisCounter,
    epoch_clock,
    render_rate_limited,
)

logger = structlog.get_logger("crm_service")

DESCRIPTION = """\
A security- and privacy-first CRM backend: leads, contacts and accounts.

Authenticate with `POST /v1/auth/login` and send `Authorization: Bearer <access_token>`.
Errors are RFC 9457 `application/problem+json`. Lists page with `limit` and the opaque
`next_cursor`. Single-record responses carry an `ETag`; send it back as `If-Match` on
`PATCH`/`DELETE` to avoid overwriting someone else's change (412 when it changed).
Every response carries `X-Request-ID`; a method a path does not support answers 405 with
`Allow` (see `components.responses.MethodNotAllowed`).
"""

TAGS = [
    {"name": "operations", "description": "Liveness, readiness and metrics for operators."},
    {"name": "auth", "description": "Sign-in, two-factor, single sign-on, sessions and users."},
    {"name": "leads", "description": "Prospects, until they are converted into contacts."},
    {"name": "contacts", "description": "People the organization deals with."},
    {"name": "accounts", "description": "Companies and other organizations."},
    {"name": "recycle bin", "description": "Deleted records, until restored or purged."},
    {
        "name": "settings",
        "description": "Organization settings: fields, IP allowlist, two-factor, single sign-on.",
    },
    {"name": "access", "description": "Profiles, roles, groups and sharing."},
    {"name": "audit", "description": "The tamper-evident audit log."},
    {"name": "privacy", "description": "Privacy requests, erasure, the blocklist."},
    {
        "name": "partner access",
        "description": "OAuth 2.0 client credentials for partner systems: clients, tokens, "
        "revocation and introspection.",
    },
    {"name": "webhooks", "description": "Signed deliveries of record changes to other systems."},
    {"name": "consent", "description": "Consent purposes, ledgers, receipts and requests."},
    {"name": "webforms", "description": "Web forms with double opt-in."},
    {
        "name": "public pages",
        "description": "Pages for the people in the CRM: web forms, double opt-in, consent.",
    },
    {
        "name": "privacy portal",
        "description": "The data subject's own pages: sign in with a mailed code, see and "
        "download their data, manage consent, make requests.",
    },
]
# The document is served by each deployment itself, so its one server is the one serving it.
SERVERS = [
    {
        "url": "/",
        "description": "The deployment serving this document: production, staging or a "
        "local embedded instance.",
        "x-internal": False,
    }
]
CONTACT = {"name": "crm-service maintainers"}


# Mounted as they are (no extra prefix), so each route's path is its public path.
ROUTERS = (
    health_router,
    auth_router,
    sso_router,
    leads_router,
    contacts_router,
    accounts_router,
    recycle_bin_router,
    settings_router,
    mail_templates_router,
    access_router,
    audit_router,
    privacy_router,
    privacy_package_router,
    oauth_router,
    webhooks_router,
    consent_router,
    consent_public_router,
    portal_router,
)


def _start_worker(app: FastAPI, settings: Settings) -> asyncio.Task[None]:
    from crm_service.jobs.worker import JOBS, run_due_jobs

    async def loop() -> None:
        logger.info("embedded_worker_started", jobs=[job.name for job in JOBS])
        while True:
            try:
                await run_due_jobs(app.state.sessionmaker, settings, app.state.clock.now())
            except Exception as exc:  # noqa: BLE001 - the API keeps serving; the log says why
                logger.error("embedded_worker_failed", error_type=type(exc).__name__)
            await asyncio.sleep(settings.worker_interval_seconds)

    return asyncio.create_task(loop(), name="crm-embedded-worker")


async def _stop_worker(task: asyncio.Task[None]) -> None:
    """Cancel the loop between (or in) jobs: a message cut off mid-send stays claimed until
    its lease ends and is then sent again; nothing else is left half done (each job's
    transaction rolls back)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_served_app() -> FastAPI:
    """The app `crm-service serve` runs: in embedded mode (SQLite) it also runs the worker's
    jobs in-process (queued mail, purges), unless CRM_EMBEDDED_WORKER=false."""
    settings = get_settings()
    return create_app(
        settings, run_worker=settings.is_embedded and settings.embedded_worker, served=True
    )


def create_app(
    settings: Settings | None = None, *, run_worker: bool = False, served: bool = False
) -> FastAPI:
    """The app. `run_worker` starts the worker loop as a background task for the app's
    lifetime (only `serve` in embedded mode asks for it). `served`: the app is the process's
    one app (`serve`), so what start-up built is set aside from the garbage collector."""
    settings = settings or get_settings()
    configure_logging_for(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ensure_sqlite_directory(settings.database_url)
        engine = make_engine(settings.database_url, defer_begin=True)
        watch_pool(engine)
        app.state.engine = engine
        app.state.key_provider = key_provider_from_settings(settings)
        info = session_info(app.state.key_provider, phone_region=settings.default_phone_region)
        info["forget_log"] = ForgetLog(settings.forget_log_path, app.state.key_provider)
        app.state.sessionmaker = make_sessionmaker(engine, info=info)
        app.state.sign_in_throttle = SignInThrottle(
            app.state.sessionmaker, address_failures=settings.sign_in_address_failures
        )
        app.state.head_revision = head_revision()
        app.state.redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        app.state.rate_limiter = RateLimiter(
            RedisCounter(app.state.redis)
            if app.state.redis is not None
            else MemoryCounter(epoch_clock(app.state)),
            lease_seconds=settings.rate_limit_slot_lease_seconds,
        )
        logger.info("started", env=settings.env.value, database=engine.dialect.name)
        worker = _start_worker(app, settings) if run_worker else None
        if served:
            # Every module, route and schema built at start-up lives as long as the process;
            # frozen, a full collection no longer walks them (an export's batches make
            # enough objects to set off several a second).
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if worker is not None:
                await _stop_worker(worker)
            if app.state.redis is not None:
                await app.state.redis.aclose()
            await engine.dispose()
            forget_this_process(settings.metrics_multiprocess_directory)

    app = FastAPI(
        title="crm-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        openapi_tags=TAGS,
        servers=SERVERS,
        contact=CONTACT,
    )
    app.state.settings = settings
    app.state.clock = Clock()
    install_error_handlers(app)
    install_oauth_errors(app)
    app.add_exception_handler(RateLimited, render_rate_limited)
    for router in ROUTERS:
        app.include_router(router)
    install_openapi(app, public_paths=PUBLIC_PATHS, routers=ROUTERS)

    # Added innermost first. A request passes: security headers (on every response, the
    # last-resort 500 included), CORS (likewise, so a browser can read errors), the request
    # context (id, logs, metrics, last-resort 500), client-address resolution, the body
    # limit, the method checks, then routing.
    app.add_middleware(AllowedMethodsMiddleware, router=app.router)
    app.add_middleware(
        RateLimitMiddleware, limiter=lambda: getattr(app.state, "rate_limiter", None)
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(ClientAddressMiddleware, trusted_proxies=settings.trusted_proxies)
    app.add_middleware(RequestContextMiddleware)
    if settings.cors_origins:
        app.add_middleware(CorsMiddleware, origins=settings.cors_origins)
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.serves_https)
    return app
