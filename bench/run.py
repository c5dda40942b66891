"""`make bench`: the service's request path against the bare stack, one machine, one run.

    .venv/bin/python -m bench.run [--rounds 3] [--duration 4] [--only get,post,...]
                                  [--contacts 10000] [--contacts-large 100000] [--sqlite]

Sets up throw-away PostgreSQL databases through CRM_BENCH_POSTGRES_URL (an admin URL; default
the local test server), migrates and bootstraps them with the service's own commands, seeds
contacts through the service's storage layer (sealed and blind-indexed as in production),
starts `crm-service serve` (one worker; two for the scaling figure) and the bare stack
(bench/bare.py) as subprocesses, and loads them in turn with wrk (an httpx load generator if
wrk is missing), round after round, the order reversed every other round, so a target and its
reference share the machine's noise. For every target it reports requests/s, p50/p99 latency
and Python CPU ms per request (from /proc, under load), and SQL statements and database round
trips per request (counted inside the server by bench/probe.py over a fixed number of
sequential requests); each ratio divides figures of the same round. It prints a table and the
goals of the request-path issue, and writes every figure to bench/results/latest.json. It exits
0 unless the harness itself fails; a target answering errors is such a failure, missed goals
are not.

`--sqlite` measures the embedded default (SQLite files, one worker) in absolute figures: the
bare stack is PostgreSQL only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import bare, load, probe

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CRM_SERVICE = str(Path(sys.executable).with_name("crm-service"))
POSTGRES_URL_VARIABLE = "CRM_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PASSWORD = "benchmark password 123"

# A contact as a CRM holds one: personal values (sealed), a plain job title and department,
# no sensitive value. Seeded rows, POST bodies and the bare table all carry these fields.
PERSON = {
    "first_name": "Bench",
    "last_name": "Marker",
    "email": "bench.marker@example.com",
    "phone": "+44 20 7946 0000",
    "mobile": "+44 7700 900000",
    "title": "Engineer",
    "date_of_birth": "1980-01-01",
    "mailing_street": "1 Orchard Lane",
    "mailing_city": "London",
    "mailing_state": "Greater London",
    "mailing_postal_code": "N1 9GU",
    "mailing_country": "United Kingdom",
    "description": "Met at the conference; interested in the enterprise plan.",
    "department": "R&D",
}
SENSITIVE_VALUE = "QQ123456C"  # a national id: classified sensitive by default
POST_BODY = json.dumps(dict(PERSON, email=f"new.{load.UNIQUE}@example.com"))


@dataclass(frozen=True)
class TargetSpec:
    label: str
    server: str
    reference: str | None = None


# In the order of a round; names are the JSON keys.
TARGETS: dict[str, TargetSpec] = {
    "bare_get": TargetSpec("bare: GET by id", "bare"),
    "get": TargetSpec("GET by id (admin)", "service", "bare_get"),
    "get_sensitive": TargetSpec("GET by id, sensitive value revealed", "service", "bare_get"),
    "get_standard": TargetSpec(
        "GET by id, Standard user (private, IP allowlist)", "service", "bare_get"
    ),
    "get_2_workers": TargetSpec("GET by id, serve --workers 2", "service_2_workers", "get"),
    "partner_get": TargetSpec(
        "GET by id, partner token (scope, IP list, rate limit)", "service", "bare_get"
    ),
    "bare_list": TargetSpec("bare: list of 50", "bare"),
    "list": TargetSpec("list of 50", "service", "bare_list"),
    "lookup_small": TargetSpec("email= lookup, {contacts} contacts", "service", None),
    "lookup_large": TargetSpec(
        "email= lookup, {contacts_large} contacts", "service_large", "lookup_small"
    ),
    "bare_post": TargetSpec("bare: POST", "bare"),
    "post": TargetSpec("POST a contact", "service", "bare_post"),
}
SCENARIOS: dict[str, tuple[str, ...]] = {
    "get": ("bare_get", "get"),
    "get_sensitive": ("bare_get", "get_sensitive"),
    "get_standard": ("bare_get", "get_standard"),
    "post": ("bare_post", "post"),
    "list": ("bare_list", "list"),
    "lookup": ("lookup_small", "lookup_large"),
    "workers": ("get", "get_2_workers"),
    "partner_get": ("bare_get", "partner_get"),
}
POSTGRES_ONLY = frozenset({"bare", "service_2_workers"})
# The probe's per-kind counts, summed over a server's processes.
BREAKDOWNS = ("statements_by_kind", "round_trips_by_kind", "simple_queries")


@dataclass(frozen=True)
class Goal:
    target: str
    threshold: float
    text: str
    # The lookup goal bounds a slowdown (reference / target), the others a ratio.
    slowdown: bool = False


GOALS = (
    Goal("get", 0.33, "GET by id >= 0.33x bare (issue floor)"),
    Goal("get", 0.5, "GET by id >= 0.5x bare (DESIGN goal)"),
    Goal("get_sensitive", 0.25, "GET revealing a sensitive value >= 0.25x bare"),
    Goal("get_standard", 0.25, "GET as a Standard user >= 0.25x bare"),
    Goal("post", 0.25, "POST >= 0.25x bare (issue floor)"),
    Goal("post", 0.5, "POST >= 0.5x bare (DESIGN goal)"),
    Goal("list", 0.5, "list of 50 >= 0.5x the bare list"),
    Goal("partner_get", 0.3, "GET by id with a partner token >= 0.3x bare"),
    Goal("get_2_workers", 1.7, "2 workers >= 1.7x one worker (GET by id)"),
    Goal("lookup_large", 1.2, "email= lookup, large within 1.2x of small", slowdown=True),
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# -- databases ---------------------------------------------------------------------------


class Databases:
    """Throw-away databases: `crm_bench_<run>_<name>` on PostgreSQL, or SQLite files."""

    def __init__(self, admin_url: str | None, workdir: Path) -> None:
        self.admin_url = admin_url
        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:8]
        self.created: list[str] = []

    def create(self, name: str) -> str:
        if self.admin_url is None:
            return f"sqlite+aiosqlite:///{self.workdir / f'{name}.db'}"
        database = f"crm_bench_{self.run_id}_{name}"
        asyncio.run(self._admin(f'CREATE DATABASE "{database}"'))
        self.created.append(database)
        return self.admin_url.rsplit("/", 1)[0] + f"/{database}"

    def drop_all(self) -> None:
        for database in reversed(self.created):
            asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        self.created.clear()

    async def _admin(self, statement: str) -> None:
        assert self.admin_url is not None
        connection = await asyncpg.connect(asyncpg_dsn(self.admin_url))
        try:
            await connection.execute(statement)
        finally:
            await connection.close()


async def analyze(url: str) -> None:
    """Fresh planner statistics after seeding, as autovacuum would give a while later."""
    if not url.startswith("postgresql"):
        return
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def postgres_version(admin_url: str) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


# -- seeding through the service's storage layer ----------------------------------------------


async def seed_contacts(
    database_url: str,
    master_key: str,
    organization_id: uuid.UUID,
    owner_id: uuid.UUID,
    count: int,
    *,
    batch: int = 1000,
    processes: int | None = None,
) -> None:
    """`count` contacts in the organization, `personN@example.com` for N in 0..count-1, each its
    own data subject with its own key, sealed by the product's storage layer (as
    bench/encryption.py does); a thousand per transaction. On PostgreSQL the range is split
    over `processes` (default: one per CPU), each sealing and writing its own part."""
    if processes is None:
        processes = 1 if database_url.startswith("sqlite") else (os.cpu_count() or 1)
    if processes <= 1 or count < 10 * batch:
        await _seed_range(database_url, master_key, organization_id, owner_id, 0, count, batch)
        return
    step = -(-count // processes)
    parts = [(start, min(start + step, count)) for start in range(0, count, step)]
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, no inherited loop
    with ProcessPoolExecutor(len(parts), mp_context=context) as pool:
        await asyncio.gather(
            *(
                loop.run_in_executor(
                    pool,
                    _seed_range_in_process,
                    database_url,
                    master_key,
                    organization_id,
                    owner_id,
                    start,
                    stop,
                    batch,
                )
                for start, stop in parts
            )
        )


def _seed_range_in_process(*args: Any) -> None:
    asyncio.run(_seed_range(*args))


async def _seed_range(
    database_url: str,
    master_key: str,
    organization_id: uuid.UUID,
    owner_id: uuid.UUID,
    first: int,
    stop: int,
    batch: int,
) -> None:
    from crm_service import models  # noqa: F401 - registers every table
    from crm_service.config import Settings
    from crm_service.crypto.master import key_provider_from_settings
    from crm_service.crypto.service import session_info
    from crm_service.db.engine import make_engine, make_sessionmaker
    from crm_service.db.session import commit
    from crm_service.records.contacts.models import Contact
    from crm_service.records.contacts.repository import ContactRepository
    from crm_service.records.models import SourceChannel

    settings = Settings(database_url=database_url, master_key=master_key)
    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(
        engine, info=session_info(key_provider_from_settings(settings), phone_region=None)
    )
    try:
        for start in range(first, stop, batch):
            async with sessionmaker() as session:
                repository = ContactRepository(session, organization_id)
                made = []
                for index in range(start, min(start + batch, stop)):
                    contact = Contact(
                        id=uuid.uuid4(),
                        organization_id=organization_id,
                        owner_id=owner_id,
                        created_by_id=owner_id,
                        subject_id=uuid.uuid4(),
                        source_channel=SourceChannel.MANUAL.value,
                        **dict(
                            PERSON, email=f"person{index}@example.com", phone=f"+4420794{index:05d}"
                        ),
                    )
                    contact.mark_new_subject()
                    made.append(contact)
                await repository.storage.seal_many(made)
                session.add_all(made)
                await commit(session)
    finally:
        await engine.dispose()


# -- processes ----------------------------------------------------------------------------------


class Server:
    """A server under test: a subprocess run through bench/probe.py, in its own process group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.probe_dir = workdir / f"probe-{name}"
        self.probe_dir.mkdir()
        self.log_path = workdir / f"{name}.log"
        self.command = [sys.executable, "-m", "bench.probe", *command, "--port", str(self.port)]
        self.env = dict(env, **{probe.PROBE_DIR_VARIABLE: str(self.probe_dir)})
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("wb") as output:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return load.process_tree_cpu_seconds(self.process.pid)

    def counts(self) -> dict[str, Any]:
        """Statements and round trips so far, summed over the server's processes."""
        total: dict[str, Any] = {
            "statements": 0,
            "round_trips": 0,
            **{key: {} for key in BREAKDOWNS},
        }
        for counts in probe.read_all(str(self.probe_dir)):
            total["statements"] += counts["statements"]
            total["round_trips"] += counts["round_trips"]
            for key in BREAKDOWNS:
                for kind, n in counts[key].items():
                    total[key][kind] = total[key].get(kind, 0) + n
        return total

    def wait_idle(self, timeout: float = 20.0) -> None:
        """Until the server has finished what a load run left in flight (wrk stops counting
        at its deadline; the server still answers the requests it had accepted)."""
        deadline = time.monotonic() + timeout
        cpu, trips = self.cpu_seconds(), self.counts()["round_trips"]
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            time.sleep(0.25)
            now_cpu, now_trips = self.cpu_seconds(), self.counts()["round_trips"]
            quiet = quiet + 1 if now_cpu - cpu <= 0.02 and now_trips == trips else 0
            cpu, trips = now_cpu, now_trips

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    label: str
    server: Server
    request: load.Request
    reference: str | None
    windows: list[dict[str, Any]] = field(default_factory=list)
    per_request: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace, selected: list[str], workdir: Path) -> None:
        self.args = args
        self.selected = selected
        self.workdir = workdir
        self.master_key = base64.b64encode(secrets.token_bytes(32)).decode()
        admin_url = None if args.sqlite else args.postgres_url
        self.databases = Databases(admin_url, workdir)
        self.servers: dict[str, Server] = {}
        self.targets: dict[str, Target] = {}
        self.timings: dict[str, float] = {}
        self.problems: list[str] = []
        self.use_wrk = load.wrk_available() and not args.httpx
        # Other work on the machine moves every figure; the report says how busy it was.
        self.load_at_start = os.getloadavg()

    def needs(self, server: str) -> bool:
        return any(TARGETS[name].server == server for name in self.selected)

    # -- set-up ---------------------------------------------------------------------------

    def env(self, database_url: str) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
        python_path = os.pathsep.join(filter(None, [str(ROOT), inherited.get("PYTHONPATH")]))
        return dict(
            inherited,
            CRM_ENV="development",
            CRM_DATABASE_URL=database_url,
            CRM_MASTER_KEY=self.master_key,
            # The session burst is still counted on every request (the limiter's cost is part
            # of the path), but set above what a run sends, so no answer is a cheap 429.
            CRM_SESSION_RATE_LIMIT_BURST="100000000",
            PYTHONPATH=python_path,
        )

    def cli(self, database_url: str, *arguments: str) -> str:
        env = dict(self.env(database_url), CRM_BOOTSTRAP_PASSWORD=PASSWORD)
        done = subprocess.run(
            [CRM_SERVICE, *arguments],
            env=env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"crm-service {' '.join(arguments)} failed: {done.stderr.strip()[-800:]}"
            )
        return done.stdout

    def bootstrap(self, database_url: str, name: str, email: str) -> dict[str, uuid.UUID]:
        created = json.loads(
            self.cli(database_url, "bootstrap", "--org-name", name, "--admin-email", email)
        )
        return {key: uuid.UUID(value) for key, value in created.items()}

    def start(self, name: str, command: list[str], database_url: str, **env: str) -> Server:
        server = Server(name, command, dict(self.env(database_url), **env), self.workdir)
        self.servers[name] = server
        server.start()
        return server

    def set_up(self) -> None:
        started = time.perf_counter()
        main_url, identities = self.set_up_main()
        large_token = self.set_up_large() if self.needs("service_large") else None
        bare_id = self.set_up_bare(main_url) if self.needs("bare") else None
        if self.needs("service_2_workers"):
            self.start("service_2_workers", ["crm-service", "serve", "--workers", "2"], main_url)
            self.servers["service_2_workers"].wait_ready()
        self.timings["set_up_s"] = time.perf_counter() - started

        contacts, large = self.args.contacts, self.args.contacts_large
        admin = identities["admin"]
        requests = {
            "bare_get": ("GET", f"/contacts/{bare_id}", None, None),
            "get": ("GET", f"/v1/contacts/{identities['plain']}", admin, None),
            "get_sensitive": ("GET", f"/v1/contacts/{identities['sensitive']}", admin, None),
            "get_standard": (
                "GET",
                f"/v1/contacts/{identities['standard_record']}",
                identities["standard"],
                None,
            ),
            "get_2_workers": ("GET", f"/v1/contacts/{identities['plain']}", admin, None),
            "partner_get": (
                "GET",
                f"/v1/contacts/{identities['plain']}",
                identities["partner"],
                None,
            ),
            "bare_list": ("GET", "/contacts?limit=50", None, None),
            "list": ("GET", "/v1/contacts?limit=50", admin, None),
            "lookup_small": ("GET", lookup_path(contacts), admin, None),
            "lookup_large": ("GET", lookup_path(large), large_token, None),
            "bare_post": ("POST", "/contacts", None, POST_BODY),
            "post": ("POST", "/v1/contacts", identities["writer"], POST_BODY),
        }
        for name in self.selected:
            spec = TARGETS[name]
            method, path, token, body = requests[name]
            server = self.servers[spec.server]
            self.targets[name] = Target(
                name=name,
                label=spec.label.format(contacts=f"{contacts:,}", contacts_large=f"{large:,}"),
                server=server,
                request=load.Request(method, server.base_url + path, token, body),
                reference=spec.reference if spec.reference in self.selected else None,
            )
        self.check_answers()

    def set_up_main(self) -> tuple[str, dict[str, str]]:
        """The main database: three organizations (reads, writes, restricted), the service on
        it, the main organization's contacts. Returns its URL, tokens and record ids."""
        main_url = self.databases.create("main")
        self.cli(main_url, "migrate")
        admin = self.bootstrap(main_url, "Bench", "admin@example.com")
        self.bootstrap(main_url, "Bench writes", "writer@example.com")
        self.bootstrap(main_url, "Bench restricted", "restricted@example.com")
        service = self.start("service", ["crm-service", "serve"], main_url)
        service.wait_ready()
        with httpx.Client(base_url=service.base_url, timeout=60) as client:
            identities = {
                "admin": login(client, "admin@example.com"),
                "writer": login(client, "writer@example.com"),
            }
            # Created before the seeded contacts, so never on the newest-first list page.
            identities["sensitive"] = expect(
                client.post(
                    "/v1/contacts",
                    json=dict(PERSON, email="sensitive@example.com", national_id=SENSITIVE_VALUE),
                    headers=bearer(identities["admin"]),
                ),
                201,
            )["id"]
            identities["standard_record"], identities["standard"] = self.set_up_restricted(
                client, main_url
            )
            self.seed(main_url, admin, self.args.contacts, "seed_contacts_s")
            identities["plain"] = expect(
                client.get(lookup_path(self.args.contacts), headers=bearer(identities["admin"])),
                200,
            )["data"][0]["id"]
            identities["partner"] = partner_token(client, identities["admin"])
        return main_url, identities

    def set_up_large(self) -> str:
        """A database whose organization has `--contacts-large` contacts, and a service on it;
        returns its administrator's token."""
        large_url = self.databases.create("large")
        self.cli(large_url, "migrate")
        large = self.bootstrap(large_url, "Bench large", "large@example.com")
        self.seed(large_url, large, self.args.contacts_large, "seed_contacts_large_s")
        server = self.start("service_large", ["crm-service", "serve"], large_url)
        server.wait_ready()
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            return login(client, "large@example.com")

    def set_up_bare(self, main_url: str) -> uuid.UUID:
        """The bare stack on its own database with as many rows as the main organization has
        contacts; returns the id of the row its GET reads."""
        bare_dsn = asyncpg_dsn(self.databases.create("bare"))
        row = asyncio.run(bare.prepare(bare_dsn, self.args.contacts, PERSON))
        command = ["uvicorn", "bench.bare:app", "--host", "127.0.0.1", "--no-access-log"]
        self.start("bare", command, main_url, **{bare.DSN_VARIABLE: bare_dsn})
        self.servers["bare"].wait_ready()
        return row

    def seed(
        self, database_url: str, created: dict[str, uuid.UUID], count: int, timing: str
    ) -> None:
        started = time.perf_counter()
        asyncio.run(
            seed_contacts(
                database_url, self.master_key, created["org_id"], created["user_id"], count
            )
        )
        asyncio.run(analyze(database_url))
        self.timings[timing] = time.perf_counter() - started
        log(f"seeded {count:,} contacts in {self.timings[timing]:.0f} s")

    def accept_invitation(self, client: httpx.Client, database_url: str, email: str) -> str:
        """Accept the invitation mailed to `email` as its owner would, reading the link from
        the outbox the operator's way (`outbox list`, `outbox show`); returns the user id."""
        listed = self.cli(database_url, "outbox", "list", "--json", "--status", "queued")
        for line in listed.splitlines():
            entry = json.loads(line)
            if entry["template"] != "user_invitation":
                continue
            shown = self.cli(database_url, "outbox", "show", entry["id"])
            if f"To: {email}" in shown:
                token = shown.split("#token=", 1)[1].split()[0]
                accepted = client.post(
                    "/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
                )
                return expect(accepted, 201)["id"]
        raise RuntimeError(f"no invitation mailed to {email}")

    def set_up_restricted(self, client: httpx.Client, database_url: str) -> tuple[str, str]:
        """The restricted organization: private sharing, its IP allowlist on (loopback only), a
        Standard user in a role, owning one contact. Returns that contact's id and the user's
        token."""
        headers = bearer(login(client, "restricted@example.com"))
        expect(
            client.put(
                "/v1/settings/sharing",
                json={"leads": "private", "contacts": "private", "accounts": "private"},
                headers=headers,
            ),
            200,
        )
        profiles = expect(client.get("/v1/profiles", headers=headers), 200)["data"]
        standard = next(p["id"] for p in profiles if p["builtin"] == "standard")
        role = expect(client.post("/v1/roles", json={"name": "Sales rep"}, headers=headers), 201)[
            "id"
        ]
        expect(
            client.post(
                "/v1/users",
                json={"email": "rep@example.com", "profile_id": standard, "role_id": role},
                headers=headers,
            ),
            202,
        )
        user = self.accept_invitation(client, database_url, "rep@example.com")
        record = expect(
            client.post("/v1/contacts", json=dict(PERSON, owner_id=user), headers=headers), 201
        )["id"]
        expect(
            client.put(
                "/v1/settings/ip-allowlist",
                json={"enabled": True, "cidrs": ["127.0.0.1/32"]},
                headers=headers,
            ),
            200,
        )
        return record, login(client, "rep@example.com")

    def check_answers(self) -> None:
        """Every target answers what the scenario claims, before anything is timed."""
        with httpx.Client(timeout=60) as client:
            for target in self.targets.values():
                request = target.request
                response = client.request(
                    request.method,
                    request.url,
                    headers=request.headers(),
                    content=request.content(f"check-{target.name}"),
                )
                expected = 201 if request.method == "POST" else 200
                body = expect(response, expected)
                if target.name == "get_sensitive" and body["national_id"] != SENSITIVE_VALUE:
                    raise RuntimeError("the sensitive target does not reveal its national_id")
                if target.name in ("get", "get_2_workers") and (
                    body["national_id"] is not None or body["masked_fields"]
                ):
                    raise RuntimeError(
                        f"{target.name} is meant to read a record without a sensitive value"
                    )
                if target.name.startswith("lookup") and len(body["data"]) != 1:
                    raise RuntimeError(f"{target.name} finds {len(body['data'])} contacts, not one")
                if target.name in ("list", "bare_list") and len(body["data"]) != 50:
                    raise RuntimeError(f"{target.name} lists {len(body['data'])} rows, not 50")

    def tear_down(self) -> None:
        for server in reversed(list(self.servers.values())):
            server.stop()
        self.databases.drop_all()

    # -- measuring --------------------------------------------------------------------------

    def load(self, target: Target, seconds: int, tag: str) -> dict[str, Any]:
        args = self.args
        cpu_before = target.server.cpu_seconds()
        if self.use_wrk:
            result = load.run_wrk(
                target.request,
                seconds=seconds,
                connections=args.connections,
                threads=args.threads,
                tag=tag,
            )
        else:
            result = load.run_httpx(
                target.request, seconds=seconds, connections=args.connections, tag=tag
            )
        cpu = target.server.cpu_seconds() - cpu_before
        target.server.wait_idle()
        result["cpu_ms_per_request"] = (
            1000 * cpu / result["requests"] if result["requests"] else None
        )
        if result["non_2xx"] or result["socket_errors"] > 0.01 * max(result["requests"], 1):
            self.problems.append(
                f"{target.name} ({tag}): {result['non_2xx']} error answers, "
                f"{result['socket_errors']} socket errors"
            )
        return result

    def count_per_request(self, target: Target) -> dict[str, Any]:
        """Statements, round trips and latency of `probe_requests` requests sent one after
        another, so nothing else is in flight."""
        n = self.args.probe_requests
        request = target.request
        latencies = []
        with httpx.Client(timeout=60) as client:
            before = target.server.counts()
            for i in range(n):
                started = time.perf_counter()
                response = client.request(
                    request.method,
                    request.url,
                    headers=request.headers(),
                    content=request.content(f"count-{i}"),
                )
                latencies.append(time.perf_counter() - started)
                expect(response, 201 if request.method == "POST" else 200)
            after = target.server.counts()
        per_request: dict[str, Any] = {
            "statements": (after["statements"] - before["statements"]) / n,
            "round_trips": (after["round_trips"] - before["round_trips"]) / n,
            "sequential_ms": 1000 * statistics.median(latencies),
        }
        for key in BREAKDOWNS:
            per_request[key] = {
                kind: (count - before[key].get(kind, 0)) / n
                for kind, count in sorted(after[key].items())
                if count != before[key].get(kind, 0)
            }
        return per_request

    def measure(self) -> None:
        args = self.args
        order = [name for name in TARGETS if name in self.targets]
        log(
            f"{len(order)} targets x {args.rounds} rounds x {args.duration} s "
            f"with {'wrk' if self.use_wrk else 'httpx (wrk not found)'} -c{args.connections}"
        )
        for name in order:
            target = self.targets[name]
            self.load(target, args.warmup, f"warm-{name}")
            target.per_request = self.count_per_request(target)
        started = time.perf_counter()
        for number in range(args.rounds):
            for name in order if number % 2 == 0 else reversed(order):
                target = self.targets[name]
                window = self.load(target, args.duration, f"r{number}-{name}")
                window["round"] = number + 1
                target.windows.append(window)
                log(
                    f"round {number + 1}/{args.rounds}  {target.label:<48} "
                    f"{window['rps']:7.1f} req/s"
                )
        self.timings["rounds_s"] = time.perf_counter() - started

    # -- the report ---------------------------------------------------------------------------

    def report(self, started_at: datetime) -> dict[str, Any]:
        args = self.args
        targets: dict[str, Any] = {}
        for name, target in self.targets.items():
            request = target.request
            targets[name] = {
                "label": target.label,
                "server": target.server.name,
                "request": f"{request.method} {request.url.removeprefix(target.server.base_url)}",
                "median": {
                    key: median(w[key] for w in target.windows)
                    for key in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request")
                },
                "per_request": target.per_request,
                "windows": target.windows,
            }
        ratios: dict[str, Any] = {}
        for name, target in self.targets.items():
            if target.reference is None:
                continue
            reference = self.targets[target.reference]
            per_round = [
                w["rps"] / r["rps"]
                for w, r in zip(target.windows, reference.windows, strict=True)
                if r["rps"]
            ]
            mine, theirs = targets[name], targets[target.reference]
            ratios[name] = {
                "reference": target.reference,
                "median": median(per_round),
                "per_round": per_round,
                "of_medians": over(mine["median"]["rps"], theirs["median"]["rps"]),
                # Requests per CPU-second over the reference's: the req/s ratio both would reach
                # with a core each; contention on a shared machine moves it less than req/s.
                "cpu": over(
                    theirs["median"]["cpu_ms_per_request"], mine["median"]["cpu_ms_per_request"]
                ),
                "sequential_latency": over(
                    theirs["per_request"]["sequential_ms"], mine["per_request"]["sequential_ms"]
                ),
            }
        goals = []
        for goal in GOALS:
            if goal.target not in ratios:
                continue
            ratio = ratios[goal.target]["median"]
            value = 1 / ratio if goal.slowdown else ratio
            passed = value <= goal.threshold if goal.slowdown else value >= goal.threshold
            goals.append(
                {
                    "goal": goal.text,
                    "target": goal.target,
                    "value": value,
                    "threshold": goal.threshold,
                    "pass": passed,
                }
            )
        return {
            "started_at": started_at.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": "sqlite" if args.sqlite else "postgresql",
            "postgres_version": None
            if args.sqlite
            else asyncio.run(postgres_version(args.postgres_url)),
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_at_start": self.load_at_start,
                "load_average_at_end": os.getloadavg(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "settings": {
                "rounds": args.rounds,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "connections": args.connections,
                "threads": args.threads,
                "load_generator": "wrk" if self.use_wrk else "httpx",
                "contacts": args.contacts,
                "contacts_large": args.contacts_large,
                "probe_requests": args.probe_requests,
            },
            "timings_s": {key: round(value, 1) for key, value in self.timings.items()},
            "targets": targets,
            "ratios": ratios,
            "goals": goals,
            "problems": self.problems,
        }


def lookup_path(contacts: int) -> str:
    """The `email=` lookup of the seeded contact in the middle of `contacts`."""
    return f"/v1/contacts?email=person{contacts // 2}%40example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def partner_token(client: httpx.Client, admin: str) -> str:
    """A partner client of the main organization, fenced to loopback, with limits the load
    cannot reach (every request still passes the whole limiter), and its access token."""
    created = expect(
        client.post(
            "/v1/oauth-clients",
            json={
                "name": "Bench partner",
                "scopes": ["crm.contacts.read"],
                "ip_allowlist": ["127.0.0.0/8", "::1/128"],
                "rate_limits": {
                    "burst": {"limit": 1_000_000, "window_seconds": 10},
                    "daily": {"limit": 100_000_000},
                    "concurrency": {"limit": 10_000},
                },
            },
            headers=bearer(admin),
        ),
        201,
    )
    granted = expect(
        client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(created["client_id"], created["client_secret"]),
        ),
        200,
    )
    return str(granted["access_token"])


def login(client: httpx.Client, email: str) -> str:
    return str(
        expect(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}), 200)[
            "access_token"
        ]
    )


def expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} "
            f"answered {response.status_code}, "
            f"not {status}: {response.text[:500]}"
        )
    return response.json()


def over(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def median(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def render(report: dict[str, Any]) -> str:
    settings = report["settings"]
    sqlite = report["database"] == "sqlite"
    database = (
        "embedded SQLite (no bare stack: absolute figures)"
        if sqlite
        else (f"PostgreSQL {report['postgres_version']}, vs the bare stack")
    )
    title = (
        f"crm-service request path, {database}: {report['machine']['cpus']} CPUs, "
        f"{settings['load_generator']} -c{settings['connections']}, {settings['rounds']} rounds x "
        f"{settings['duration_s']} s, medians"
    )
    header = (
        f"{'target':<48} {'req/s':>7} {'p50':>6} {'p99':>6} {'CPU':>6} {'seq':>6} {'SQL':>4} "
        f"{'trips':>5}  {'ratio':>5} {'rounds':<9} {'CPU x':>5} {'seq x':>5}  vs"
    )
    lines = [title, "", header]
    for name, target in report["targets"].items():
        m, per = target["median"], target["per_request"]
        statements = f"{per['statements']:.0f}" if target["server"] != "bare" else "-"
        trips = "-" if sqlite else f"{per['round_trips']:.0f}"
        ratio = report["ratios"].get(name)
        compared = ""
        if ratio is not None:
            compared = (
                f"{ratio['median']:5.2f} "
                f"{min(ratio['per_round']):.2f}-{max(ratio['per_round']):.2f} "
                f"{fmt(ratio['cpu'], 5, 2)} {fmt(ratio['sequential_latency'], 5, 2)}  "
                f"{ratio['reference']}"
            )
        lines.append(
            f"{target['label']:<48} {m['rps']:7.1f} {m['p50_ms']:6.0f} {m['p99_ms']:6.0f} "
            f"{fmt(m['cpu_ms_per_request'], 6, 2)} {per['sequential_ms']:6.1f} {statements:>4} "
            f"{trips:>5}  {compared}"
        )
    lines += [
        "",
        "Under load: req/s, p50/p99 (ms), CPU (the server's Python CPU ms per request).",
        f"Per request, over {settings['probe_requests']} requests sent one at a time: "
        "seq (latency, ms),",
        "SQL (statements), trips (round trips to the database: statements, prepares, BEGIN/COMMIT/",
        "ROLLBACK, pre-ping). ratio: req/s over the reference's (vs), median of the rounds, each",
        "pair from the same round; rounds: their min-max. CPU x: requests per CPU-second over the",
        "reference's; seq x: the reference's seq over this one's. Both move less than req/s when",
        "the machine is busy.",
    ]
    if report["goals"]:
        lines += ["", "Goals (informational):"]
        for goal in report["goals"]:
            lines.append(
                f"  {'PASS' if goal['pass'] else 'FAIL'}  {goal['goal']:<48} {goal['value']:.2f}x"
            )
    if settings["load_generator"] == "httpx":
        lines += [
            "",
            "WARNING: wrk was not found, so load came from httpx in the harness process. It needs",
            "more CPU per request than the bare stack does and shares the machine with it: "
            "the bare",
            "figures are capped by the load generator and every req/s ratio to them overstates the",
            "service. Install wrk for figures to compare.",
        ]
    for problem in report["problems"]:
        lines.append(f"PROBLEM: {problem}")
    return "\n".join(lines)


def fmt(value: float | None, width: int, digits: int) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else " " * (width - 1) + "-"


def select(args: argparse.Namespace) -> list[str]:
    names = set()
    for scenario in args.only or list(SCENARIOS):
        if scenario not in SCENARIOS:
            raise SystemExit(
                f"--only: unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}"
            )
        names.update(SCENARIOS[scenario])
    if args.sqlite:
        names = {name for name in names if TARGETS[name].server not in POSTGRES_ONLY}
    return [name for name in TARGETS if name in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--duration", type=int, default=4, help="seconds per target per round (default 4)"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of warm-up per target (default 1)"
    )
    parser.add_argument(
        "--only",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        help=f"comma-separated scenarios: {', '.join(SCENARIOS)} (default all)",
    )
    parser.add_argument(
        "--contacts", type=int, default=10_000, help="contacts of the main organization"
    )
    parser.add_argument(
        "--contacts-large", type=int, default=100_000, help="contacts of the large lookup database"
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="the embedded default instead (absolute figures)"
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="concurrent connections (default 32)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--probe-requests", type=int, default=50, help="sequential requests counted per target"
    )
    parser.add_argument(
        "--httpx", action="store_true", help="use the httpx load generator even if wrk is there"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL),
        help=f"admin URL that may create databases (default ${POSTGRES_URL_VARIABLE}, "
        "else the local test server)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the JSON report (default bench/results/latest[-sqlite].json)",
    )
    args = parser.parse_args(argv)
    if args.contacts < 100 or args.contacts_large < 100:
        parser.error("--contacts and --contacts-large must be at least 100")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = select(args)
    started_at = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    bench = Bench(args, selected, workdir)
    try:
        bench.set_up()
        bench.measure()
        report = bench.report(started_at)
    except BaseException:
        for server in bench.servers.values():
            log(f"--- {server.name} log ({server.log_path}) ---\n{server.log_tail()}")
        log(f"The servers' logs are kept in {workdir}")
        raise
    finally:
        bench.tear_down()
    shutil.rmtree(workdir, ignore_errors=True)
    out = args.out or RESULTS / ("latest-sqlite.json" if args.sqlite else "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"\nEvery figure: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
