"""Running Alembic from code: upgrade to head, the head revision, the database's revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crm_service.config import SettingsError

# The embedded default keeps its files here (relative to the working directory).
EMBEDDED_DIRECTORY = Path("var")


def migrations_directory() -> Path:
    packaged = Path(__file__).resolve().parents[1] / "migrations"  # wheel install
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"  # source checkout


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    if database_url is not None:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _run_on(connection: Connection, revision: str, *, downgrade: bool = False) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if downgrade:
        command.downgrade(config, revision)
    else:
        command.upgrade(config, revision)


async def _migrate(engine: AsyncEngine, revision: str, *, downgrade: bool) -> None:
    async with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one; with foreign keys
            # on, that drop would cascade into every referencing table. The pragma only
            # works outside a transaction, so it comes first; the check after proves the
            # copy kept every reference intact.
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.commit()
        try:
            async with connection.begin():
                await connection.run_sync(lambda sync: _run_on(sync, revision, downgrade=downgrade))
            if sqlite:
                broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise RuntimeError(f"migration left {len(broken)} broken foreign key(s)")
        finally:
            if sqlite:
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _migrate(engine, revision, downgrade=False)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await _migrate(engine, revision, downgrade=True)


async def current_revision(connection: AsyncConnection) -> str | None:
    try:
        result = await connection.execute(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:
        return None
    return result.scalar_one_or_none()


def applies(revision: str, *, since: str | None) -> bool:
    """Whether upgrading from `since` to the head runs `revision`."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    return any(
        step.revision == revision for step in script.iterate_revisions(head, since or "base")
    )


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the directory of an embedded SQLite file under `./var/` (the default's home).

    Anywhere else a missing directory is a SettingsError: it is more likely a typo in
    CRM_DATABASE_URL than a wish for a new tree of directories.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    directory = Path(url.database).parent.resolve()
    if directory.is_dir():
        return
    if directory.is_relative_to(EMBEDDED_DIRECTORY.resolve()):
        directory.mkdir(parents=True, exist_ok=True)
        return
    raise SettingsError(
        f"CRM_DATABASE_URL: the directory {directory} does not exist; create it first "
        f"(only ./{EMBEDDED_DIRECTORY}/ is created automatically)"
    )
