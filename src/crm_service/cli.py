"""The `crm-service` command: serve, migrate, bootstrap, openapi, worker, keys, audit, backup.

Failures an operator can cause or fix (a setting, the database, the port) end in one line on
stderr saying what is wrong and what to do, and a documented exit code (`ExitCode`); the
traceback is shown only with `--debug` or CRM_LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import asyncio
import errno
import getpass
import json
import os
import shutil
import socket
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from crm_service import __version__
from crm_service.config import Settings, SettingsError, get_settings


class ExitCode(IntEnum):
    """The exit status of every command (the README lists them for operators' scripts)."""

    OK = 0
    FAILED = 1  # the command ran and refused or failed: that admin exists, a chain is broken
    USAGE = 2  # a wrong option or argument
    CONFIG = 3  # a setting is missing or wrong, the master-key file included
    UNAVAILABLE = 4  # the database cannot be reached, the port is taken
    NOT_MIGRATED = 5  # the database lacks the schema: run `crm-service migrate`


@dataclass
class _RunOptions:
    debug: bool = False


_run = _RunOptions()

app = typer.Typer(
    name="crm-service",
    help="A security- and privacy-first CRM backend.",
    invoke_without_command=True,
    add_completion=False,
    # Rich's tracebacks print local variables, which can hold passwords and keys.
    pretty_exceptions_enable=False,
)


def _help_without_command(ctx: typer.Context) -> None:
    """A command group run bare prints its help (and exits 0)."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"crm-service {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of a failure.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Commands log to stderr as CRM_LOG_LEVEL and CRM_LOG_JSON say, so stdout carries only
    their output (JSON for bootstrap)."""
    from crm_service.log import configure_logging, configure_logging_for

    _help_without_command(ctx)
    _run.debug = debug
    try:
        settings = get_settings()
    except SettingsError:
        # The command reports the problem; --help and keys init work regardless.
        configure_logging()
        return
    configure_logging_for(settings)


def _fail(message: str, code: ExitCode = ExitCode.FAILED) -> typer.Exit:
    typer.echo(f"crm-service: {message}", err=True)
    return typer.Exit(code=code)


def _database_location() -> str:
    """Where CRM_DATABASE_URL points, without its password."""
    from sqlalchemy import make_url

    try:
        url = make_url(get_settings().database_url)
    except (SettingsError, ValueError):
        return "the database"
    if url.get_backend_name() == "sqlite":
        return f"the SQLite database {url.database}"
    return f"the database {url.database} at {url.host or 'localhost'}:{url.port or 5432}"


def _explain(exc: Exception) -> tuple[str, ExitCode]:
    """One line saying what went wrong and what to do, and the exit code for it."""
    from alembic.util.exc import CommandError

    from crm_service.crypto.master import KeyUnwrapError
    from crm_service.db.diagnosis import missing_table, unreachable_reason

    if isinstance(exc, SettingsError):
        return str(exc), ExitCode.CONFIG
    if isinstance(exc, KeyUnwrapError):
        return (
            f"{exc}: CRM_MASTER_KEY / CRM_MASTER_KEY_FILE is not the master key this database's "
            "data keys were wrapped with",
            ExitCode.CONFIG,
        )
    if (reason := unreachable_reason(exc)) is not None:
        return (
            f"cannot use {_database_location()}: {reason}. Check CRM_DATABASE_URL and that "
            "the server is running.",
            ExitCode.UNAVAILABLE,
        )
    if (table := missing_table(exc)) is not None:
        return (
            f"{_database_location()} has no crm-service schema yet (table {table} is "
            "missing): run `crm-service migrate` first.",
            ExitCode.NOT_MIGRATED,
        )
    if isinstance(exc, CommandError) and "Can't locate revision" in str(exc):
        return (
            f"{_database_location()} was migrated by a newer crm-service than this one "
            f"({__version__}); run that version or newer.",
            ExitCode.NOT_MIGRATED,
        )
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {(exc.strerror or type(exc).__name__).lower()}", ExitCode.FAILED
    # Not the exception's message: a driver's can quote a row's values.
    return (
        f"unexpected {type(exc).__module__}.{type(exc).__qualname__}; run again with --debug "
        "to see the traceback.",
        ExitCode.FAILED,
    )


def _debug_logging() -> bool:
    try:
        return get_settings().log_level == "DEBUG"
    except SettingsError:
        return False


def main() -> None:
    """The console script: each failure becomes one line on stderr and an `ExitCode`."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # a usage error: wrong option, missing argument
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "crm-service"
        typer.echo(f"{command}: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(ExitCode.USAGE)
    except typer.Abort:
        typer.echo("crm-service: aborted", err=True)
        sys.exit(ExitCode.FAILED)
    except Exception as exc:  # noqa: BLE001 - every failure gets its one line
        message, code = _explain(exc)
        if _run.debug or _debug_logging():
            traceback.print_exception(exc)
        typer.echo(f"crm-service: {message}", err=True)
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


def _database(settings: Settings) -> tuple[Any, Any]:
    """An engine and a sessionmaker whose sessions can seal and reveal records."""
    from crm_service import models  # noqa: F401 - registers every table
    from crm_service.backups.forget_log import ForgetLog
    from crm_service.crypto.master import key_provider_from_settings
    from crm_service.crypto.service import session_info
    from crm_service.db.engine import make_engine, make_sessionmaker

    engine = make_engine(settings.database_url)
    provider = key_provider_from_settings(settings)
    info = session_info(provider, phone_region=settings.default_phone_region)
    info["forget_log"] = ForgetLog(settings.forget_log_path, provider)
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
    settings = get_settings()
    asyncio.run(_migrate(settings))
    typer.echo("database is at the newest migration", err=True)


def _check_port_free(host: str, port: int) -> None:
    """Fail before migrating or starting workers when the address cannot be listened on;
    uvicorn would log the bind error and exit without saying what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by a previous run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                message = (
                    f"port {port} on {host} is already in use: stop the other server or "
                    "choose another port with --port"
                )
            elif exc.errno == errno.EACCES:
                message = f"not allowed to listen on port {port}: use a port above 1023"
            else:
                message = f"cannot listen on {host}:{port} ({exc.strerror}): check --host"
            raise _fail(message, ExitCode.UNAVAILABLE) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the HTTP API (embedded mode migrates first)."""
    import uvicorn

    from crm_service.crypto.master import key_provider_from_settings

    settings = get_settings()
    _check_port_free(host, port)
    # A broken keyring fails here, once, rather than in every worker's start-up.
    key_provider_from_settings(settings)
    if settings.is_embedded:
        asyncio.run(_migrate(settings))
    with _metrics_shared_by(workers, settings):
        uvicorn.run(
            "crm_service.main:create_served_app",
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


@contextmanager
def _metrics_shared_by(workers: int, settings: Settings) -> Iterator[None]:
    """Several workers write their metrics to one directory (prometheus-client's
    multiprocess mode), so whichever answers /metrics reports them all. The directory starts
    empty: samples of an earlier run would be counted again."""
    chosen = settings.metrics_multiprocess_directory
    if chosen is not None:
        chosen.mkdir(parents=True, exist_ok=True)
        for stale in chosen.glob("*.db"):
            stale.unlink()
        yield
        return
    if workers == 1:
        yield
        return
    directory = Path(tempfile.mkdtemp(prefix="crm-metrics-"))
    # Read by prometheus-client and the settings of each worker process uvicorn starts.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


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

    settings = get_settings()
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
    out.write_text(render_openapi(create_app(get_settings())) + "\n")
    typer.echo(f"wrote {out}", err=True)


def render_openapi(application: object) -> str:
    return json.dumps(application.openapi(), indent=2, sort_keys=False)  # type: ignore[attr-defined]


keys = typer.Typer(
    help="Master keys and data keys: init, rotate, re-seal, status.",
    invoke_without_command=True,
    callback=_help_without_command,
)
app.add_typer(keys, name="keys")


@keys.command("init")
def keys_init(
    file: Annotated[Path, typer.Option("--file", help="Where to write the new keyring.")],
) -> None:
    """Write a new master keyring file (one generated key, mode 0600) for CRM_MASTER_KEY_FILE.
    Never overwrites an existing file."""
    from crm_service.crypto.master import write_new_keyring

    try:
        key_id = write_new_keyring(
            file,
            comment="crm-service master keyring: one key per line, the last one active.\n"
            "Losing it loses every encrypted value: back it up apart from the database.",
        )
    except FileExistsError:
        raise _fail(
            f"{file} already exists; nothing was written (replacing a keyring would lose "
            "every value its keys wrap)"
        ) from None
    except OSError as exc:
        raise _fail(f"cannot write {file}: {exc.strerror}") from None
    typer.echo(
        f"wrote master key {key_id} to {file} (mode 0600); set CRM_MASTER_KEY_FILE={file}",
        err=True,
    )


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
    from crm_service.kit.modules import Module

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

                def advance(count: int, task: Any = task) -> None:
                    progress.advance(task, count)

                total += await reseal_records(
                    sessionmaker,
                    organization_id=org_id,
                    module=module,
                    stale_keys_only=stale_keys_only,
                    on_batch=advance,
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
    settings = get_settings()

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
            return (
                f"key generation raised for {len(org_ids)} organization(s); "
                f"{done} records re-sealed"
            )
        finally:
            await engine.dispose()

    typer.echo(asyncio.run(run()), err=True)


@keys.command("reseal")
def keys_reseal(
    org: Annotated[str | None, typer.Option(help="Only this organization.")] = None,
    stale_only: Annotated[
        bool, typer.Option("--stale-only", help="Only records under an older key generation.")
    ] = False,
) -> None:
    """Re-seal stored values under the current classification and newest keys (finishes a
    reclassification or rotation that was interrupted)."""
    settings = get_settings()

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
    settings = get_settings()

    async def run() -> dict[str, Any]:
        from sqlalchemy import func, select

        from crm_service.crypto.models import DataKeyRecord
        from crm_service.db.tenancy import Organization

        engine, sessionmaker = _database(settings)
        provider = sessionmaker.kw["info"]["key_provider"]
        try:
            async with sessionmaker() as session:
                orgs = (
                    await session.execute(select(Organization.id, Organization.key_generation))
                ).all()
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
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help="Serve the job metrics (Prometheus text) on this port.",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address for --metrics-port.")
    ] = "127.0.0.1",
) -> None:
    """Run periodic jobs: purge the recycle bin and expired audit events, take scheduled
    backups. Any number of
    workers may run; on PostgreSQL no job's work is done twice. Exits 1 if a job failed
    (--once)."""
    settings = get_settings()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        _check_port_free(metrics_host, metrics_port)
        start_http_server(metrics_port, addr=metrics_host)

    async def run() -> dict[str, int | str] | None:
        from crm_service.clock import Clock
        from crm_service.jobs.worker import run_due_jobs, run_forever
        from crm_service.metrics import watch_pool

        if settings.is_embedded:
            await _migrate(settings)
        engine, sessionmaker = _database(settings)
        watch_pool(engine)
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
        if "failed" in done.values():
            raise typer.Exit(ExitCode.FAILED)


audit = typer.Typer(
    help="The tamper-evident audit log.",
    invoke_without_command=True,
    callback=_help_without_command,
)
app.add_typer(audit, name="audit")


@audit.command("verify")
def audit_verify(
    org: Annotated[str | None, typer.Option(help="Only this organization.")] = None,
) -> None:
    """Walk every audit chain and check each event's MAC and place. Exits 1 naming the first
    bad event of each broken chain (edited, deleted, inserted or reordered events)."""
    settings = get_settings()

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


backup = typer.Typer(
    help="Encrypted backups, their verification and restore (with the forget-log).",
    invoke_without_command=True,
    callback=_help_without_command,
)
app.add_typer(backup, name="backup")


def _backup_provider(settings: Settings) -> Any:
    from crm_service.crypto.master import key_provider_from_settings

    return key_provider_from_settings(settings)


@backup.command("create")
def backup_create(
    to: Annotated[
        Path | None, typer.Option("--to", help="Write it here instead of CRM_BACKUP_DIR.")
    ] = None,
) -> None:
    """Take an encrypted backup while the service serves; prints its file and manifest."""
    from dataclasses import asdict

    from crm_service.backups.service import BackupError, create_backup, verify_file
    from crm_service.clock import Clock

    settings = get_settings()
    provider = _backup_provider(settings)
    try:
        made = asyncio.run(create_backup(settings, provider, now=Clock().now(), to=to))
        verify_file(made.path, provider)
    except BackupError as exc:
        raise _fail(f"backup failed: {exc}") from None
    typer.echo(json.dumps({"file": str(made.path), "size": made.size, **asdict(made.manifest)}))


@backup.command("list")
def backup_list(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Another directory than CRM_BACKUP_DIR.")
    ] = None,
) -> None:
    """Every backup, oldest first: time, size, schema revision and master key."""
    from crm_service.backups.service import BackupError, backup_files, describe

    settings = get_settings()
    provider = _backup_provider(settings)
    for path in backup_files(directory or settings.backup_dir):
        try:
            found = describe(path, provider)
        except BackupError as exc:
            typer.echo(f"{path.name}\tunreadable: {exc}")
            continue
        manifest = found.manifest
        typer.echo(
            f"{path.name}\t{manifest.created_at}\t{found.size} bytes\t"
            f"revision {manifest.schema_revision}\t{manifest.master_key_id}"
        )


@backup.command("verify")
def backup_verify(file: Annotated[Path, typer.Argument(help="The backup file.")]) -> None:
    """Authenticate every chunk and the manifest. Exits 1 with what is wrong (truncated,
    reordered, changed, another backup's manifest)."""
    from crm_service.backups.service import BackupError, verify_file

    settings = get_settings()
    try:
        manifest = verify_file(file, _backup_provider(settings))
    except OSError as exc:
        raise _fail(f"{file}: cannot read it ({exc.strerror})") from None
    except BackupError as exc:
        raise _fail(f"{file}: NOT intact: {exc}") from None
    typer.echo(
        f"{file}: intact ({manifest.chunk_count} chunks, {manifest.organization_count} "
        f"organization(s), revision {manifest.schema_revision}, taken {manifest.created_at})"
    )


@backup.command("restore")
def backup_restore(
    file: Annotated[Path, typer.Argument(help="The backup file.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Replace a database that holds data, unasked.")
    ] = False,
    without_forget_log: Annotated[
        bool,
        typer.Option(
            "--without-forget-log",
            help="Restore although the forget-log is missing: subjects erased since the "
            "backup come back. Audited.",
        ),
    ] = False,
) -> None:
    """Restore a backup (stop the service first), migrate it forward and erase again everyone
    the forget-log names, before anything serves it."""
    from crm_service.backups.service import (
        BackupError,
        ForgetLogError,
        RestoreRefused,
        restore_backup,
    )
    from crm_service.clock import Clock

    settings = get_settings()
    provider = _backup_provider(settings)
    if without_forget_log and not settings.forget_log_path.exists():
        typer.echo(
            "WARNING: restoring WITHOUT the forget-log: every data subject erased after this "
            "backup was taken comes back, readable. Erase them again before serving.",
            err=True,
        )

    def attempt(overwrite: bool) -> Any:
        return asyncio.run(
            restore_backup(
                settings,
                provider,
                lambda: _database(settings),
                file,
                now=Clock().now(),
                overwrite=overwrite,
                without_forget_log=without_forget_log,
            )
        )

    try:
        try:
            report = attempt(yes)
        except RestoreRefused as exc:
            if yes or "--yes" not in str(exc) or not sys.stdin.isatty():
                raise
            typer.confirm(f"{exc}. Replace it?", abort=True)
            report = attempt(True)
    except RestoreRefused as exc:
        raise _fail(f"restore refused: {exc}") from None
    except (BackupError, ForgetLogError) as exc:
        raise _fail(f"restore refused, nothing changed: {exc}") from None
    typer.echo(
        f"restored backup {report.manifest.backup_id} (taken {report.manifest.created_at}, "
        f"revision {report.manifest.schema_revision}); forget-log: "
        + (
            "none (restored without it)"
            if report.without_forget_log
            else f"{report.reapplied} erasure(s) re-applied of {report.forget_log_entries}"
        )
    )


outbox = typer.Typer(
    help="Mail in the outbox: queued, sent or failed.",
    invoke_without_command=True,
    callback=_help_without_command,
)
app.add_typer(outbox, name="outbox")

OUTBOX_STATUSES = ("queued", "sending", "sent", "failed", "cancelled")


@outbox.command("list")
def outbox_list(
    org: Annotated[str | None, typer.Option(help="Only this organization.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status: " + ", ".join(OUTBOX_STATUSES) + ".")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The newest messages first: id, organization, template, language, status, attempts
    and times. Recipients and contents are sealed and never listed (see `outbox show`)."""
    if status is not None and status not in OUTBOX_STATUSES:
        raise _fail(f"--status must be one of {', '.join(OUTBOX_STATUSES)}", ExitCode.USAGE)
    settings = get_settings()

    async def run() -> tuple[list[Any], dict[str, int]]:
        from crm_service.mail.outbox import count_by_status, list_outbox

        engine, sessionmaker = _database(settings)
        try:
            org_ids = await _org_ids(sessionmaker, org) if org is not None else None
            async with sessionmaker() as session:
                entries = await list_outbox(
                    session,
                    organization_id=org_ids[0] if org_ids else None,
                    status=status,
                    limit=limit,
                )
                counts = await count_by_status(session)
            return entries, counts
        finally:
            await engine.dispose()

    entries, counts = asyncio.run(run())

    def when(value: Any) -> str:
        return value.isoformat(timespec="seconds") if value is not None else ""

    if as_json:
        for entry in entries:
            typer.echo(
                json.dumps(
                    {
                        "id": str(entry.id),
                        "organization_id": str(entry.organization_id),
                        "template": entry.template,
                        "language": entry.language,
                        "status": entry.status,
                        "attempts": entry.attempts,
                        "created_at": when(entry.created_at),
                        "next_attempt_at": when(entry.next_attempt_at) or None,
                        "sent_at": when(entry.sent_at) or None,
                        "last_error": entry.last_error,
                        "sealed_under": entry.sealed_under,
                    }
                )
            )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in (
            "ID",
            "ORGANIZATION",
            "TEMPLATE",
            "LANG",
            "STATUS",
            "ATTEMPTS",
            "CREATED",
            "NEXT ATTEMPT",
            "SENT",
            "LAST ERROR",
            "SEALED UNDER",
        ):
            table.add_column(column, no_wrap=True)
        for entry in entries:
            table.add_row(
                str(entry.id),
                str(entry.organization_id),
                entry.template,
                entry.language,
                entry.status,
                str(entry.attempts),
                when(entry.created_at),
                when(entry.next_attempt_at),
                when(entry.sent_at),
                entry.last_error or "",
                entry.sealed_under,
            )
        Console(width=250, soft_wrap=True).print(table)
    summary = ", ".join(f"{counts[name]} {name}" for name in OUTBOX_STATUSES if counts.get(name))
    sending = "" if settings.smtp_url else " (CRM_SMTP_URL is not set: nothing is sent)"
    typer.echo(f"outbox: {summary or 'empty'}{sending}", err=True)


@outbox.command("show")
def outbox_show(
    message_id: Annotated[str, typer.Argument(help="The message's id (from `outbox list`).")],
) -> None:
    """Print one message as it will be sent (headers and the plain-text part). Opening a
    message is written to its organization's audit log."""
    import uuid

    try:
        wanted = uuid.UUID(message_id)
    except ValueError:
        raise _fail("the message id must be a UUID", ExitCode.USAGE) from None
    settings = get_settings()

    async def run() -> Any:
        from crm_service.audit.actions import AuditAction
        from crm_service.audit.service import Actor, record
        from crm_service.db.session import commit
        from crm_service.mail.models import OutboxMessage
        from crm_service.mail.outbox import open_content

        engine, sessionmaker = _database(settings)
        try:
            async with sessionmaker() as session:
                message = await session.get(OutboxMessage, wanted)
                if message is None:
                    raise _fail("no such message in the outbox")
                content = await open_content(session, message)
                if content is None:
                    raise _fail("the message can no longer be opened (its data subject was erased)")
                record(
                    session,
                    Actor.system(message.organization_id),
                    AuditAction.MAIL_REVEALED,
                    target_type="mail",
                    target_id=message.id,
                    reason="operator_cli",
                )
                await commit(session)
                return message, content
        finally:
            await engine.dispose()

    message, content = asyncio.run(run())
    typer.echo(f"Message: {message.id} ({message.template}, {message.language}, {message.status})")
    typer.echo(f"To: {content.to}")
    typer.echo(f"Subject: {content.subject}")
    if content.list_unsubscribe:
        typer.echo(f"List-Unsubscribe: <{content.list_unsubscribe}>")
    typer.echo("")
    typer.echo(content.text.rstrip("\n"))


webhooks = typer.Typer(
    help="Webhook deliveries.", invoke_without_command=True, callback=_help_without_command
)
app.add_typer(webhooks, name="webhooks")


@webhooks.command("redeliver")
def webhooks_redeliver(
    delivery_id: Annotated[
        str, typer.Argument(help="The delivery's id (`delivery_id` in the endpoint's attempts).")
    ],
) -> None:
    """Make a delivery due again now, whatever became of it; the next worker run sends it
    with the same `webhook-id` (receivers deduplicate by it). Audited."""
    import uuid

    try:
        parsed = uuid.UUID(delivery_id)
    except ValueError:
        raise _fail(f"{delivery_id!r} is not a delivery id (a UUID).") from None
    settings = get_settings()

    async def run() -> bool:
        from crm_service.clock import Clock
        from crm_service.integrations.delivery import redeliver

        engine, sessionmaker = _database(settings)
        try:
            return await redeliver(sessionmaker, parsed, Clock().now())
        finally:
            await engine.dispose()

    if not asyncio.run(run()):
        raise _fail(f"No delivery {parsed}.")
    typer.echo(f"delivery {parsed} is due again")


if __name__ == "__main__":
    main()
