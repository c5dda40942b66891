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
    from crm_service.crypto.master import key_provider_from_settings
    from crm_service.crypto.service import session_info
    from crm_service.db.engine import make_engine, make_sessionmaker

    engine = make_engine(settings.database_url)
    provider = key_provider_from_settings(settings)
    info = session_info(provider, phone_region=settings.default_phone_region)
    return engine, make_sessionmaker(engine, info=info)


async def _migrate(settings: Settings) -> None:
    from crm_service.db.engine import make_engine
    from crm_service.db.migrations import ensure_sqlite_directory, upgrade

    ensure_sqlite_directory(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine)
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
    from crm_service.orgs.service import bootstrap_organization

    engine, sessionmaker = _database(settings)
    try:
        async with sessionmaker() as session:
            result = await bootstrap_organization(
                session=session, org_name=org_name, admin_email=admin_email, password=password
            )
            await session.commit()
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


if __name__ == "__main__":
    app()
