"""The `crm-service` command: serve, migrate, bootstrap, openapi."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from crm_service.config import Settings, SettingsError, get_settings

app = typer.Typer(
    name="crm-service",
    help="A security- and privacy-first CRM backend.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main() -> None:
    """Commands log to stderr, so stdout carries only their output (JSON for bootstrap)."""
    from crm_service.log import configure_logging

    configure_logging("INFO", json=False, stream=sys.stderr)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"crm-service: {message}", err=True)
    return typer.Exit(code=1)


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    except ValidationError as exc:
        # Name the setting and the rule, never the value (it may be a secret).
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first.get("loc") and not message.startswith("CRM_"):
            message = f"CRM_{str(first['loc'][0]).upper()}: {message}"
        raise _fail(message) from None


def _database(settings: Settings) -> tuple[Any, Any]:
    """An engine and a sessionmaker whose sessions can seal and reveal records."""
    from crm_service import models  # noqa: F401 - registers every table
    from crm_service.crypto.master import key_provider_from_settings
    from crm_service.crypto.service import session_info
    from crm_service.db.engine import make_engine, make_sessionmaker

    engine = make_engine(settings.database_url)
    provider = key_provider_from_settings(settings)
    info = session_info(provider, phone_region=settings.default_phone_region)
    return engine, make_sessionmaker(engine, info=info)


async def _migrate(settings: Settings) -> None:
    from crm_service.db.engine import make_engine
    from crm_service.db.migrations import (
        applies,
        current_revision,
        ensure_sqlite_directory,
        upgrade,
    )

    ensure_sqlite_directory(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            before = await current_revision(connection)
        await upgrade(engine)
    finally:
        await engine.dispose()
    if before is not None and applies(AUDIT_LOG_REVISION, since=before):
        await _start_audit_logs(settings)


# The migration that introduced the audit log: organizations older than it start theirs when
# the database is upgraded across it (once; later, a missing log is a break).
AUDIT_LOG_REVISION = "20261123_audit_log"


async def _start_audit_logs(settings: Settings) -> None:
    from crm_service.audit.service import start_logs
    from crm_service.db.session import commit

    engine, sessionmaker = _database(settings)
    try:
        async with sessionmaker() as session:
            await start_logs(session)
            await commit(session)
    finally:
        await engine.dispose()


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the newest migration."""
    settings = _settings()
    asyncio.run(_migrate(settings))
    typer.echo("database is at the newest migration", err=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the HTTP API (embedded mode migrates first)."""
    import uvicorn

    settings = _settings()
    if settings.is_embedded:
        asyncio.run(_migrate(settings))
    uvicorn.run(
        "crm_service.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Client addresses are resolved in the app from CRM_TRUSTED_PROXIES.
        proxy_headers=False,
        access_log=False,
        log_config=None,
        server_header=False,
    )


def _read_password(settings: Settings) -> str:
    if settings.bootstrap_password is not None:
        return settings.bootstrap_password.get_secret_value()
    if sys.stdin.isatty():
        return getpass.getpass("Administrator password: ")
    return sys.stdin.readline().rstrip("\r\n")


async def _bootstrap(settings: Settings, org_name: str, admin_email: str, password: str) -> dict:
    from crm_service.db.session import commit
    from crm_service.orgs.service import bootstrap_organization

    engine, sessionmaker = _database(settings)
    try:
        async with sessionmaker() as session:
            result = await bootstrap_organization(
                session=session, org_name=org_name, admin_email=admin_email, password=password
            )
            await commit(session)
            return {"org_id": str(result.organization.id), "user_id": str(result.admin.id)}
    finally:
        await engine.dispose()


@app.command()
def bootstrap(
    org_name: Annotated[str, typer.Option("--org-name", help="Name of the new organization.")],
    admin_email: Annotated[str, typer.Option("--admin-email", help="Its first administrator.")],
) -> None:
    """Create an organization and its administrator; prints {"org_id", "user_id"}.

    The password comes from CRM_BOOTSTRAP_PASSWORD, or else from standard input.
    """
    from crm_service.auth.schemas import UserCreate
    from crm_service.errors import CRMError

    settings = _settings()
    password = _read_password(settings)
    org_name = org_name.strip()
    if not org_name or len(org_name) > 200:
        raise _fail("--org-name must be 1 to 200 characters")
    try:
        UserCreate(email=admin_email, password=password)
    except ValidationError as exc:
        problems = "; ".join(f"{err['loc'][0]}: {err['msg']}" for err in exc.errors())
        raise _fail(problems.replace("password:", "password (CRM_BOOTSTRAP_PASSWORD):")) from None
    if settings.is_embedded:
        asyncio.run(_migrate(settings))
    try:
        created = asyncio.run(_bootstrap(settings, org_name, admin_email, password))
    except CRMError as exc:
        raise _fail(f"{exc.detail} Nothing was created.") from None
    typer.echo(json.dumps(created))


@app.command()
def openapi(
    out: Annotated[Path, typer.Option(help="Where to write the spec.")] = Path(
        "openapi/openapi.json"
    ),
) -> None:
    """Write the OpenAPI document the app serves."""
    from crm_service.main import create_app

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_openapi(create_app(_settings())) + "\n")
    typer.echo(f"wrote {out}", err=True)


def render_openapi(application: object) -> str:
    return json.dumps(application.openapi(), indent=2, sort_keys=False)  # type: ignore[attr-defined]


keys = typer.Typer(help="Data keys and master keys: rotate, re-seal, status.", no_args_is_help=True)
app.add_typer(keys, name="keys")


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_stderr_console(),
    )


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


async def _reseal_all(sessionmaker: Any, org_ids: list[Any], *, stale_keys_only: bool) -> int:
    from crm_service.jobs.resealing import count_to_reseal, reseal_records
    from crm_service.records.models import Module

    total = 0
    with _progress() as progress:
        for org_id in org_ids:
            for module in Module:
                async with sessionmaker() as session:
                    todo = await count_to_reseal(
                        session, org_id, module, stale_keys_only=stale_keys_only
                    )
                if not todo:
                    continue
                task = progress.add_task(f"{module.value} of {org_id}", total=todo)
                total += await reseal_records(
                    sessionmaker,
                    organization_id=org_id,
                    module=module,
                    stale_keys_only=stale_keys_only,
                    on_batch=lambda n, task=task: progress.advance(task, n),
                )
    return total


async def _org_ids(sessionmaker: Any, only: str | None) -> list[Any]:
    import uuid

    from crm_service.jobs.rotation import organization_ids

    async with sessionmaker() as session:
        ids = await organization_ids(session)
    if only is None:
        return ids
    try:
        wanted = uuid.UUID(only)
    except ValueError:
        raise _fail("--org must be an organization id (a UUID)") from None
    if wanted not in ids:
        raise _fail("no such organization")
    return [wanted]


@keys.command("rotate")
def keys_rotate(
    master: Annotated[
        bool, typer.Option("--master", help="Rotate the master key and re-wrap every data key.")
    ] = False,
    org: Annotated[str | None, typer.Option(help="Only this organization (data keys).")] = None,
) -> None:
    """Rotate keys. Data keys: a new generation seals new writes at once, then every record
    under an older one is re-sealed. --master: a new master key joins the keyring file and
    every data key is re-wrapped. Safe to interrupt and run again; the service keeps serving.
    """
    settings = _settings()

    async def run() -> str:
        from crm_service.db.session import commit
        from crm_service.jobs.rotation import (
            begin_data_key_rotation,
            count_to_rewrap,
            rewrap_data_keys,
        )

        engine, sessionmaker = _database(settings)
        provider = sessionmaker.kw["info"]["key_provider"]
        try:
            if master:
                new_id = provider.add_generated_key()
                async with sessionmaker() as session:
                    todo = await count_to_rewrap(session, provider)
                with _progress() as progress:
                    task = progress.add_task("re-wrapping data keys", total=todo)
                    done = await rewrap_data_keys(
                        sessionmaker, provider, on_batch=lambda n: progress.advance(task, n)
                    )
                return (
                    f"master key {new_id} is active; {done} data keys re-wrapped. Older master "
                    "keys in the keyring file can be removed once every instance has reloaded."
                )
            org_ids = await _org_ids(sessionmaker, org)
            generations = {}
            for org_id in org_ids:
                async with sessionmaker() as session:
                    generations[org_id] = await begin_data_key_rotation(session, org_id)
                    await commit(session)
            done = await _reseal_all(sessionmaker, org_ids, stale_keys_only=True)
            return f"key generation raised for {len(org_ids)} organization(s); {done} records re-sealed"
        finally:
            await engine.dispose()

    try:
        typer.echo(asyncio.run(run()), err=True)
    except SettingsError as exc:
        raise _fail(str(exc)) from None


@keys.command("reseal")
def keys_reseal(
    org: Annotated[str | None, typer.Option(help="Only this organization.")] = None,
    stale_only: Annotated[
        bool, typer.Option("--stale-only", help="Only records under an older key generation.")
    ] = False,
) -> None:
    """Re-seal stored values under the current classification and newest keys (finishes a
    reclassification or rotation that was interrupted)."""
    settings = _settings()

    async def run() -> int:
        engine, sessionmaker = _database(settings)
        try:
            return await _reseal_all(
                sessionmaker, await _org_ids(sessionmaker, org), stale_keys_only=stale_only
            )
        finally:
            await engine.dispose()

    typer.echo(f"{asyncio.run(run())} records re-sealed", err=True)


@keys.command("status")
def keys_status() -> None:
    """Print, as JSON, each organization's key generation and its data keys by state."""
    settings = _settings()

    async def run() -> dict[str, Any]:
        from sqlalchemy import func, select

        from crm_service.crypto.models import DataKeyRecord
        from crm_service.orgs.models import Organization

        engine, sessionmaker = _database(settings)
        provider = sessionmaker.kw["info"]["key_provider"]
        try:
            async with sessionmaker() as session:
                orgs = (await session.execute(select(Organization.id, Organization.key_generation))).all()
                counts = (
                    await session.execute(
                        select(
                            DataKeyRecord.organization_id,
                            DataKeyRecord.status,
                            DataKeyRecord.master_key_id,
                            func.count(),
                        ).group_by(
                            DataKeyRecord.organization_id,
                            DataKeyRecord.status,
                            DataKeyRecord.master_key_id,
                        )
                    )
                ).all()
        finally:
            await engine.dispose()
        report: dict[str, Any] = {"active_master_key": provider.active_key_id, "organizations": {}}
        for org_id, generation in orgs:
            report["organizations"][str(org_id)] = {"key_generation": generation, "data_keys": []}
        for org_id, status, master_id, count in counts:
            report["organizations"][str(org_id)]["data_keys"].append(
                {"status": status, "master_key_id": master_id, "count": count}
            )
        return report

    typer.echo(json.dumps(asyncio.run(run()), indent=2))


@app.command()
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Run the jobs that are due, then exit (for cron).")
    ] = False,
) -> None:
    """Run periodic jobs: purge the recycle bin and expired audit events. Any number of
    workers may run; on PostgreSQL no job's work is done twice."""
    settings = _settings()

    async def run() -> dict[str, int] | None:
        from crm_service.clock import Clock
        from crm_service.jobs.worker import run_due_jobs, run_forever

        if settings.is_embedded:
            await _migrate(settings)
        engine, sessionmaker = _database(settings)
        try:
            if once:
                return await run_due_jobs(sessionmaker, settings, Clock().now())
            await run_forever(sessionmaker, settings, Clock().now)
            return None
        finally:
            await engine.dispose()

    try:
        done = asyncio.run(run())
    except KeyboardInterrupt:
        return
    if done is not None:
        typer.echo(json.dumps(done))


audit = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit, name="audit")


@audit.command("verify")
def audit_verify(
    org: Annotated[str | None, typer.Option(help="Only this organization.")] = None,
) -> None:
    """Walk every audit chain and check each event's MAC and place. Exits 1 naming the first
    bad event of each broken chain (edited, deleted, inserted or reordered events)."""
    settings = _settings()

    async def run() -> Any:
        from crm_service.audit.service import Verification, verify_organization

        engine, sessionmaker = _database(settings)
        try:
            result = Verification()
            for org_id in await _org_ids(sessionmaker, org):
                async with sessionmaker() as session:
                    await verify_organization(session, org_id, result)
            return result
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    for chain_break in result.breaks:
        typer.echo(f"BROKEN {chain_break.describe()}")
    summary = f"{result.events} audit events in {result.chains} chains"
    if not result.intact:
        typer.echo(f"{summary}: {len(result.breaks)} chain(s) broken", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"{summary}: intact")


if __name__ == "__main__":
    app()
