"""Test harness: real databases built by the real migrations, the real app over HTTP.

Every test that uses `client` runs on SQLite and on PostgreSQL. PostgreSQL tests need a
server at CRM_TEST_POSTGRES_URL (default: the local `test` database); without one they are
skipped with the reason, unless CRM_TEST_REQUIRE_SERVICES=1 (CI), which turns the skip into
a failure. Each test creates its own organization, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_service.auth import passwords
from crm_service.auth.service import open_session
from crm_service.config import Settings
from crm_service.db.diagnosis import unreachable_reason
from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.db.session import commit
from crm_service.main import create_app
from crm_service.orgs.service import bootstrap_organization

POSTGRES_ADMIN_URL = os.environ.get(
    "CRM_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("CRM_TEST_REQUIRE_SERVICES") == "1"
PASSWORD = "correct horse battery staple"
CLIENT_IP = "203.0.113.7"  # where the test client's requests come from
# One master key for the whole run, as an operator would set CRM_MASTER_KEY.
MASTER_KEY = base64.b64encode(secrets.token_bytes(32)).decode()


class RememberingHasher(PasswordHasher):
    """Argon2id with the shipped parameters, but each distinct password hashed once per test
    process and each (hash, password) pair verified once: almost every test bootstraps an
    organization and signs in with the same password, and two Argon2 runs each (about 25 ms
    apiece) were a large share of the suite's time. Answers are the real ones (a wrong
    password is still refused by Argon2); only repeats are remembered. Tests that measure
    what a verification costs opt out with `@pytest.mark.real_password_hashing`."""

    def __init__(self) -> None:
        shipped = passwords._hasher
        super().__init__(
            time_cost=shipped.time_cost,
            memory_cost=shipped.memory_cost,
            parallelism=shipped.parallelism,
        )
        self._hashes: dict[str, str] = {}
        self._verified: dict[tuple[str | bytes, str | bytes], bool] = {}

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        key = password if isinstance(password, str) else password.decode()
        if salt is not None:
            return super().hash(password, salt=salt)
        if key not in self._hashes:
            self._hashes[key] = super().hash(password)
        return self._hashes[key]

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        key = (hash, password)
        if key not in self._verified:
            try:
                self._verified[key] = super().verify(hash, password)
            except VerifyMismatchError:
                self._verified[key] = False
        if not self._verified[key]:
            raise VerifyMismatchError("the password does not match")
        return True


_REMEMBERING_HASHER = RememberingHasher()


@pytest.fixture(autouse=True)
def _remembered_password_hashes(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if request.node.get_closest_marker("real_password_hashing") is None:
        monkeypatch.setattr(passwords, "_hasher", _REMEMBERING_HASHER)


def service_missing(what: str, reason: str, hint: str | None = None) -> None:
    """Skip (locally) or fail (CI) a test whose backing service is not there."""
    message = f"{what} not usable: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; CRM_TEST_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(f"{message}; {hint or f'set {what.split()[0]} up to run these tests'}")


POSTGRES_HINT = (
    "start PostgreSQL and point CRM_TEST_POSTGRES_URL at a login that may create databases "
    "(.ci/run sets one up)"
)


class TestDatabases:
    """Creates throw-away databases: a SQLite file, or a new PostgreSQL database."""

    __test__ = False  # a helper, not a test class

    def __init__(self, tmp_path: Path, admin_url: str = POSTGRES_ADMIN_URL) -> None:
        self.tmp_path = tmp_path
        self.admin_url = admin_url
        self.created_pg: list[str] = []

    async def _pg_admin(self) -> AsyncEngine:
        return make_engine(self.admin_url, isolation_level="AUTOCOMMIT")

    async def new(self, kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp_path / f'crm-{uuid.uuid4().hex[:8]}.db'}"
        name = f"crm_test_{uuid.uuid4().hex[:12]}"
        admin = await self._pg_admin()
        try:
            async with admin.connect() as connection:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # noqa: BLE001 - any failure means: no server to test on
            where = self.admin_url.rsplit("@", 1)[-1]
            driver_error = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            reason = unreachable_reason(exc) or f"CREATE DATABASE failed: {driver_error}"
            service_missing(f"PostgreSQL at {where}", reason, POSTGRES_HINT)
        finally:
            await admin.dispose()
        self.created_pg.append(name)
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    async def drop_all(self) -> None:
        if not self.created_pg:
            return
        admin = await self._pg_admin()
        async with admin.connect() as connection:
            for name in self.created_pg:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(scope="session")
async def databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TestDatabases]:
    dbs = TestDatabases(tmp_path_factory.mktemp("db"))
    yield dbs
    await dbs.drop_all()


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
async def database_url(request: pytest.FixtureRequest, databases: TestDatabases) -> str:
    url = await databases.new(request.param)
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    return url


# Backups and the forget-log of the test apps go here, never into the working tree.
BACKUP_DIR = Path(tempfile.mkdtemp(prefix="crm-test-backups-"))


def make_settings(database_url: str, **overrides: Any) -> Settings:
    overrides.setdefault("master_key", MASTER_KEY)
    overrides.setdefault("backup_dir", BACKUP_DIR)
    return Settings(database_url=database_url, log_json=True, **overrides)


@pytest.fixture(scope="session")
async def app(database_url: str) -> AsyncIterator[Any]:
    application = create_app(make_settings(database_url))
    async with LifespanManager(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@dataclass
class Org:
    """A freshly bootstrapped organization and a signed-in administrator."""

    id: uuid.UUID
    admin_id: uuid.UUID
    admin_email: str
    headers: dict[str, str]
    client: httpx.AsyncClient
    app: Any
    users: dict[str, dict[str, str]] = field(default_factory=dict)

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        response = await self.client.post(
            "/v1/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    async def add_user(self, *, is_admin: bool = False) -> dict[str, str]:
        """Create a user through the API and return that user's auth headers."""
        email = unique_email("user")
        created = await create_user(self, {"email": email, "is_admin": is_admin})
        assert created.status_code == 201, created.text
        return await self.login(email)


async def mailed_invitation_token(app: Any, organization_id: uuid.UUID, email: str) -> str:
    """The token of the newest invitation mailed to `email`, read from the outbox as the
    person would read it from their mail."""
    from sqlalchemy import select

    from crm_service.mail.models import OutboxMessage
    from crm_service.mail.outbox import open_content

    async with app.state.sessionmaker() as session:
        messages = (
            await session.execute(
                select(OutboxMessage)
                .where(
                    OutboxMessage.organization_id == organization_id,
                    OutboxMessage.template == "user_invitation",
                )
                .order_by(OutboxMessage.created_at.desc())
            )
        ).scalars()
        for message in messages:
            content = await open_content(session, message)
            if content is not None and content.to == email.casefold():
                found = re.search(r"#token=([A-Za-z0-9_-]+)", content.text)
                assert found, "the invitation mail carries no link"
                return found.group(1)
    raise AssertionError("no invitation was mailed to that address")


async def accept_invitation(
    org: Org, email: str, password: str = PASSWORD, **fields: Any
) -> httpx.Response:
    token = await mailed_invitation_token(org.app, org.id, email)
    return await org.client.post(
        "/v1/auth/invitations/accept", json={"token": token, "password": password, **fields}
    )


async def create_user(
    org: Org, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    """A user as an administrator makes one: invited (202), then accepted by the person with
    the password in `body` (default PASSWORD). Returns the acceptance (201, the user), or the
    invitation's answer when that was not 202."""
    body = dict(body)
    password = body.pop("password", PASSWORD)
    invited = await org.client.post("/v1/users", json=body, headers=headers or org.headers)
    if invited.status_code != 202:
        return invited
    return await accept_invitation(org, body["email"], password)


PROBLEM_JSON = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with `status`; its body is returned."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    return body


def error_fields(body: dict[str, Any]) -> set[str]:
    """The fields a validation problem names."""
    return {problem["field"] for problem in body.get("errors") or []}


def unique_email(prefix: str = "person") -> str:
    return f"{prefix}.{secrets.token_hex(6)}@example.com"


async def new_org(app: Any, client: httpx.AsyncClient) -> Org:
    email = unique_email("admin")
    async with app.state.sessionmaker() as session:
        created = await bootstrap_organization(
            session=session,
            org_name="Org " + secrets.token_hex(3),
            admin_email=email,
            password=PASSWORD,
        )
        # Signed in as the login route does it (and audited alike), minus its Argon2
        # verification: nearly every test makes an organization, and that check is the
        # costliest step of it. The login route has tests of its own.
        signed_in = await open_session(
            session=session,
            user=created.admin,
            settings=app.state.settings,
            now=app.state.clock.now(),
            client_ip=CLIENT_IP,
            method="password",
        )
        await commit(session)
    return Org(
        id=created.organization.id,
        admin_id=created.admin.id,
        admin_email=email,
        headers={"Authorization": f"Bearer {signed_in.access_token}"},
        client=client,
        app=app,
    )


@pytest.fixture
async def org(app: Any, client: httpx.AsyncClient) -> Org:
    return await new_org(app, client)


@pytest.fixture
async def other_org(app: Any, client: httpx.AsyncClient) -> Org:
    return await new_org(app, client)


async def count_rows(app: Any, table: str, organization_id: uuid.UUID) -> int:
    """Count an organization's rows straight from the database (not through the API)."""
    async with app.state.engine.connect() as connection:
        result = await connection.execute(
            text(f"SELECT count(*) FROM {table} WHERE organization_id = :org"),
            {
                "org": organization_id
                if app.state.engine.dialect.name == "postgresql"
                else organization_id.hex
            },
        )
        return int(result.scalar_one())


def file_bytes_unlocked(path: Path) -> bytes:
    """A database file's bytes, read by a child process. Opening and closing the file in this
    process would drop every POSIX lock SQLite holds on it here (fcntl locks belong to the
    process, not the descriptor); another process (a CLI command under test) would then take
    itself for the last user and delete the WAL under this process's open connections."""
    if not path.exists():
        return b""
    return subprocess.run(["cat", str(path)], capture_output=True, check=True).stdout


async def database_bytes(database_url: str) -> bytes:
    """Everything the database holds, as bytes: the SQLite file and its WAL, or a pg_dump."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        return b"".join(file_bytes_unlocked(p) for p in (path, Path(f"{path}-wal")))
    process = await asyncio.create_subprocess_exec(
        "pg_dump",
        "--no-owner",
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
        url.database or "",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    dump, errors = await process.communicate()
    assert process.returncode == 0, errors.decode()
    return dump
