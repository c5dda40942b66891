"""Key rotation, online: data keys (a new generation seals new writes at once, a resumable
batch job re-seals the rest) and master keys (every data key re-wrapped), while the service
keeps serving and every old value reads correctly throughout.

What an operator relies on, checked from the outside: every API read succeeds with the right
values while rotation runs; afterwards the database holds no value under the old key
generation (read straight from the tables), the old keys are retired rather than destroyed,
and after a master rotation the old master key can be dropped from the keyring.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_service.crypto.master import master_key_id
from crm_service.crypto.models import DataKeyPurpose, DataKeyRecord, DataKeyStatus
from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.db.session import commit
from crm_service.jobs.resealing import count_to_reseal, reseal_records
from crm_service.jobs.rotation import begin_data_key_rotation, count_to_rewrap, rewrap_data_keys
from crm_service.kit.modules import Module
from crm_service.main import create_app
from crm_service.records.accounts.models import Account
from crm_service.records.contacts.models import Contact
from crm_service.records.fields import CATALOG
from crm_service.records.leads.models import Lead
from tests.conftest import (
    PASSWORD,
    Org,
    TestDatabases,
    assert_problem,
    make_settings,
    new_org,
    unique_email,
)

SEALED, PLAIN = 0x01, 0x00
MODELS: dict[Module, Any] = {Module.LEADS: Lead, Module.CONTACTS: Contact, Module.ACCOUNTS: Account}
LOAD_TIMEOUT = 60.0
# Concurrent API clients while keys rotate, as a serving instance has them.
READERS, WRITERS = 3, 1


# --- helpers ---------------------------------------------------------------------------------


def person() -> dict[str, str]:
    tag = secrets.token_hex(4)
    return {
        "first_name": f"Ada{tag}",
        "last_name": f"Lovelace{tag}",
        "email": unique_email("ada"),
        "phone": f"+44 20 7946 {int(tag[:4], 16) % 10000:04d}",
        "title": f"Analyst {tag}",
        "mailing_city": f"London {tag}",
        "national_id": f"NI{tag.upper()}",
        "description": f"Met at the {tag} conference",
    }


def same_values(body: dict[str, Any], expected: dict[str, str]) -> bool:
    return {name: body.get(name) for name in expected} == expected


async def create(org: Org, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = await org.client.post(path, json=payload, headers=org.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def create_contacts(org: Org, count: int) -> dict[str, dict[str, str]]:
    people: dict[str, dict[str, str]] = {}
    for _ in range(count):
        payload = person()
        people[(await create(org, "/v1/contacts", payload))["id"]] = payload
    return people


async def list_all(org: Org, path: str = "/v1/contacts") -> dict[str, dict[str, Any]]:
    """Every record of a module through the API, following `next_cursor`."""
    records: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {"limit": 200}
    while True:
        page = await org.client.get(path, params=params, headers=org.headers)
        assert page.status_code == 200, page.text
        records.update((item["id"], item) for item in page.json()["data"])
        if page.json()["next_cursor"] is None:
            return records
        params["cursor"] = page.json()["next_cursor"]


async def assert_reads_back(
    org: Org, people: dict[str, dict[str, str]], *, spot_checks: int = 40
) -> None:
    """Every contact is listed with its own values; a sample (all, when few) also reads back
    by id and is found by `email=`."""
    listed = await list_all(org)
    assert set(listed) == set(people)
    for contact_id, expected in people.items():
        assert same_values(listed[contact_id], expected), contact_id
    sample = sorted(people)
    if len(sample) > spot_checks:
        sample = random.Random(len(sample)).sample(sample, spot_checks)
    for contact_id in sample:
        expected = people[contact_id]
        read = await org.client.get(f"/v1/contacts/{contact_id}", headers=org.headers)
        assert read.status_code == 200, read.text
        assert same_values(read.json(), expected)
        found = await org.client.get(
            "/v1/contacts", params={"email": expected["email"]}, headers=org.headers
        )
        assert found.status_code == 200, found.text
        assert [c["id"] for c in found.json()["data"]] == [contact_id]


async def stored_rows(app: Any, model: Any, organization_id: uuid.UUID) -> list[dict[str, Any]]:
    """An organization's rows as stored: id, data_key_id and each classifiable column."""
    fields = model.__sealed_fields__
    columns = [model.id, model.data_key_id, *(getattr(model, f"{name}_stored") for name in fields)]
    async with app.state.sessionmaker() as session:
        result = await session.execute(
            select(*columns).where(model.organization_id == organization_id)
        )
        rows = result.all()
    return [
        {"id": row[0], "data_key_id": row[1], "stored": dict(zip(fields, row[2:], strict=True))}
        for row in rows
    ]


async def data_keys(app: Any, organization_id: uuid.UUID) -> list[DataKeyRecord]:
    async with app.state.sessionmaker() as session:
        result = await session.execute(
            select(DataKeyRecord).where(DataKeyRecord.organization_id == organization_id)
        )
        return list(result.scalars())


def assert_row_sealed_under_its_key(row: dict[str, Any], plain_fields: frozenset[str]) -> None:
    """Each sealed value names the row's own data key in its header (one key per row)."""
    for name, stored in row["stored"].items():
        if stored is None:
            continue
        stored = bytes(stored)
        if name in plain_fields:
            assert stored[0] == PLAIN, f"{name} should be stored plain"
            continue
        assert stored[0] == SEALED, f"{name} of {row['id']} is not sealed"
        assert stored[1:17] == row["data_key_id"].bytes, f"{name} of {row['id']} names another key"


async def assert_no_row_under_old_generation(
    app: Any, organization_id: uuid.UUID, module: Module, generation: int
) -> int:
    """Every row of `module` is sealed under an active key of `generation` (fields at their
    default classification); returns the row count."""
    keys = {key.id: key for key in await data_keys(app, organization_id)}
    rows = await stored_rows(app, MODELS[module], organization_id)
    plain = frozenset(spec.name for spec in CATALOG[module] if not spec.default.sealed)
    for row in rows:
        key = keys[row["data_key_id"]]
        assert key.generation == generation, (
            f"{module.value} row {row['id']} is on generation {key.generation}"
        )
        assert key.status == DataKeyStatus.ACTIVE.value
        assert_row_sealed_under_its_key(row, plain)
    return len(rows)


# --- data-key rotation -----------------------------------------------------------------------


async def test_rotation_under_load_serves_every_read_and_leaves_nothing_under_old_keys(
    org: Org, app: Any
) -> None:
    people = await create_contacts(org, 30)
    leads = {
        (await create(org, "/v1/leads", {**person(), "company": "Acme"}))["id"] for _ in range(3)
    }
    accounts = {
        (await create(org, "/v1/accounts", {"name": f"Acme {i}", "phone": "+44 161 496 0321"}))[
            "id"
        ]
        for i in range(3)
    }
    old_key_ids = {
        key.id
        for key in await data_keys(app, org.id)
        if key.purpose in (DataKeyPurpose.SUBJECT.value, DataKeyPurpose.ORGANIZATION.value)
    }
    assert len(old_key_ids) == 30 + 3 + 1  # a key per subject, one for the organization

    stop = asyncio.Event()
    resealing = asyncio.Event()
    stats = {"reads": 0, "creates": 0, "ops_while_resealing": 0, "resealed": 0}

    async def client_session(seed: int) -> None:
        """One API client: create a contact, read three random ones (by id and by email),
        list; again and again until the rotation is over."""
        rng = random.Random(seed)
        while not stop.is_set():
            payload = person()
            people[(await create(org, "/v1/contacts", payload))["id"]] = payload
            stats["creates"] += 1
            for contact_id in rng.sample(sorted(people), 3):
                expected = people[contact_id]
                read = await org.client.get(f"/v1/contacts/{contact_id}", headers=org.headers)
                assert read.status_code == 200, read.text
                assert same_values(read.json(), expected)
                found = await org.client.get(
                    "/v1/contacts", params={"email": expected["email"]}, headers=org.headers
                )
                assert found.status_code == 200, found.text
                assert [c["id"] for c in found.json()["data"]] == [contact_id]
                stats["reads"] += 2
            listed = await org.client.get(
                "/v1/contacts", params={"limit": 200}, headers=org.headers
            )
            assert listed.status_code == 200, listed.text
            for item in listed.json()["data"]:
                # Another client's contact may be listed before its POST has answered.
                if item["id"] in people:
                    assert same_values(item, people[item["id"]])
            stats["reads"] += 1
            if resealing.is_set():
                stats["ops_while_resealing"] += 1

    async def writer() -> None:
        """A client that only files new contacts (an import, a web form) the whole time."""
        while not stop.is_set():
            payload = person()
            people[(await create(org, "/v1/contacts", payload))["id"]] = payload
            stats["creates"] += 1

    async def rotate() -> int:
        try:
            await asyncio.sleep(0.05)  # let the load get going first
            async with app.state.sessionmaker() as session:
                generation = await begin_data_key_rotation(session, org.id)
                await commit(session)
            resealing.set()
            for module in Module:
                stats["resealed"] += await reseal_records(
                    app.state.sessionmaker,
                    organization_id=org.id,
                    module=module,
                    stale_keys_only=True,
                    batch_size=5,
                )
            resealing.clear()
            # A little more load under the new generation only.
            await asyncio.sleep(0.05)
            return generation
        finally:
            stop.set()

    outcome = await asyncio.wait_for(
        asyncio.gather(
            rotate(),
            *(client_session(seed) for seed in range(READERS)),
            *(writer() for _ in range(WRITERS)),
            return_exceptions=True,
        ),
        timeout=LOAD_TIMEOUT,
    )
    for result in outcome:
        if isinstance(result, BaseException):
            raise result
    generation = outcome[0]

    assert generation == 2
    assert stats["ops_while_resealing"] > 0, stats  # reads really ran during the re-sealing
    assert stats["resealed"] >= 30 + 3 + 3
    assert stats["creates"] > 0

    assert await assert_no_row_under_old_generation(app, org.id, Module.CONTACTS, 2) == len(people)
    assert await assert_no_row_under_old_generation(app, org.id, Module.LEADS, 2) == len(leads)
    assert await assert_no_row_under_old_generation(app, org.id, Module.ACCOUNTS, 2) == len(
        accounts
    )
    for module in Module:
        async with app.state.sessionmaker() as session:
            assert await count_to_reseal(session, org.id, module, stale_keys_only=True) == 0

    # Every key of the old generation (those written before the rotation, and those the
    # clients' creates made just before it began) is retired: still able to open, not used.
    old_keys = [
        key
        for key in await data_keys(app, org.id)
        if key.generation == 1
        and key.purpose in (DataKeyPurpose.SUBJECT.value, DataKeyPurpose.ORGANIZATION.value)
    ]
    assert old_key_ids <= {key.id for key in old_keys}
    for key in old_keys:
        assert key.status == DataKeyStatus.RETIRED.value  # retired, not destroyed
        assert key.wrapped is not None and key.retired_at is not None
    old_key_ids = {key.id for key in old_keys}
    no_old_header = {key_id.bytes for key_id in old_key_ids}
    for module, model in MODELS.items():
        for row in await stored_rows(app, model, org.id):
            assert row["data_key_id"] not in old_key_ids, module
            for stored in row["stored"].values():
                if stored is not None and bytes(stored)[0] == SEALED:
                    assert bytes(stored)[1:17] not in no_old_header

    await assert_reads_back(org, people)
    for lead_id in leads:
        assert (
            await org.client.get(f"/v1/leads/{lead_id}", headers=org.headers)
        ).status_code == 200
    for account_id in accounts:
        read = await org.client.get(f"/v1/accounts/{account_id}", headers=org.headers)
        assert read.status_code == 200 and read.json()["phone"] == "+44 161 496 0321"


async def _wait_until_blocked_by(
    probe: AsyncEngine, blocker_pid: int, request: asyncio.Task[httpx.Response]
) -> None:
    """Until some session waits for a lock `blocker_pid` holds, or `request` has answered."""
    deadline = asyncio.get_running_loop().time() + 10
    async with probe.connect() as connection:
        while not request.done():
            waiting = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND CAST(:blocker AS integer) = ANY(pg_blocking_pids(pid))"
                ),
                {"blocker": blocker_pid},
            )
            if waiting:
                return
            assert asyncio.get_running_loop().time() < deadline, "the request never got there"
            await asyncio.sleep(0.02)


async def test_a_create_in_flight_as_rotation_begins_is_not_left_under_the_old_generation(
    databases: TestDatabases,
) -> None:
    """PostgreSQL, made deterministic with row locks: a contact is being created while
    `keys rotate` begins (it has read the key generation, the rotation has not committed
    yet), and it commits only after the re-sealing job is through. The new generation was
    active before that contact was written, so it must not end up under the old one."""
    url = await databases.new("postgresql")
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    probe = make_engine(url, isolation_level="AUTOCOMMIT")
    application = create_app(make_settings(url))
    try:
        async with LifespanManager(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                tenant = await new_org(application, http)
                people = await create_contacts(tenant, 10)
                values = person()
                async with application.state.sessionmaker() as rotation:
                    assert await begin_data_key_rotation(rotation, tenant.id) == 2
                    rotation_pid = await rotation.scalar(text("SELECT pg_backend_pid()"))
                    request = asyncio.create_task(
                        http.post("/v1/contacts", json=values, headers=tenant.headers)
                    )
                    await _wait_until_blocked_by(probe, rotation_pid, request)
                    # Hold the creator's user row so the create cannot commit for a while.
                    async with probe.connect() as hold:
                        hold_pid = await hold.scalar(text("SELECT pg_backend_pid()"))
                        await hold.execute(text("BEGIN"))
                        await hold.execute(
                            text("SELECT id FROM users WHERE id = :id FOR UPDATE"),
                            {"id": tenant.admin_id},
                        )
                        await commit(rotation)
                        await _wait_until_blocked_by(probe, hold_pid, request)
                        for module in Module:
                            await reseal_records(
                                application.state.sessionmaker,
                                organization_id=tenant.id,
                                module=module,
                                stale_keys_only=True,
                                batch_size=5,
                            )
                        await hold.execute(text("ROLLBACK"))
                created = await asyncio.wait_for(request, timeout=10)
                assert created.status_code == 201, created.text
                people[created.json()["id"]] = values
                await assert_reads_back(tenant, people)
                async with application.state.sessionmaker() as session:
                    stale = await count_to_reseal(
                        session, tenant.id, Module.CONTACTS, stale_keys_only=True
                    )
                assert stale == 0, (
                    "a contact written after the rotation began is under the old generation"
                )
                await assert_no_row_under_old_generation(application, tenant.id, Module.CONTACTS, 2)
    finally:
        await probe.dispose()


async def test_new_writes_seal_under_the_new_generation_before_any_reseal(
    org: Org, app: Any
) -> None:
    before = await create_contacts(org, 2)
    (old_id, old_values), (other_id, other_values) = before.items()
    async with app.state.sessionmaker() as session:
        assert await begin_data_key_rotation(session, org.id) == 2
        await commit(session)

    new_values = person()
    new_id = (await create(org, "/v1/contacts", new_values))["id"]
    account = await create(org, "/v1/accounts", {"name": "Fresh Ltd", "phone": "+44 161 496 0111"})

    keys = {key.id: key for key in await data_keys(app, org.id)}
    rows = {str(row["id"]): row for row in await stored_rows(app, Contact, org.id)}
    assert keys[rows[new_id]["data_key_id"]].generation == 2
    assert_row_sealed_under_its_key(rows[new_id], frozenset({"title"}))
    (account_row,) = await stored_rows(app, Account, org.id)
    assert str(account_row["id"]) == account["id"]
    assert keys[account_row["data_key_id"]].generation == 2
    # Nothing was re-sealed yet: the older rows are still under generation 1 and read fine.
    assert keys[rows[old_id]["data_key_id"]].generation == 1
    await assert_reads_back(org, {**before, new_id: new_values})

    # Changing one field of an old row re-seals the whole row under the new generation.
    read = await org.client.get(f"/v1/contacts/{old_id}", headers=org.headers)
    patched = await org.client.patch(
        f"/v1/contacts/{old_id}",
        json={"title": "Chief Analyst"},
        headers={**org.headers, "If-Match": read.headers["ETag"]},
    )
    assert patched.status_code == 200, patched.text
    old_values = {**old_values, "title": "Chief Analyst"}
    keys = {key.id: key for key in await data_keys(app, org.id)}
    rows = {str(row["id"]): row for row in await stored_rows(app, Contact, org.id)}
    assert keys[rows[old_id]["data_key_id"]].generation == 2
    assert_row_sealed_under_its_key(rows[old_id], frozenset({"title"}))
    assert keys[rows[other_id]["data_key_id"]].generation == 1
    async with app.state.sessionmaker() as session:
        assert await count_to_reseal(session, org.id, Module.CONTACTS, stale_keys_only=True) == 1
    await assert_reads_back(org, {old_id: old_values, other_id: other_values, new_id: new_values})


async def test_an_interrupted_reseal_resumes_and_reads_work_in_between(org: Org, app: Any) -> None:
    people = await create_contacts(org, 12)
    async with app.state.sessionmaker() as session:
        await begin_data_key_rotation(session, org.id)
        await commit(session)

    async def stale() -> int:
        async with app.state.sessionmaker() as session:
            return await count_to_reseal(session, org.id, Module.CONTACTS, stale_keys_only=True)

    assert await stale() == 12
    first = await reseal_records(
        app.state.sessionmaker,
        organization_id=org.id,
        module=Module.CONTACTS,
        stale_keys_only=True,
        batch_size=3,
        max_batches=1,
    )
    assert first == 3
    assert await stale() == 9  # interrupted: most rows still under the old generation
    await assert_reads_back(org, people)

    batches: list[int] = []
    rest = await reseal_records(
        app.state.sessionmaker,
        organization_id=org.id,
        module=Module.CONTACTS,
        stale_keys_only=True,
        batch_size=3,
        on_batch=batches.append,
    )
    assert rest == 9 and sum(batches) == 9
    assert await stale() == 0
    assert await assert_no_row_under_old_generation(app, org.id, Module.CONTACTS, 2) == 12
    await assert_reads_back(org, people)

    # Running it once more finds nothing to do and changes no record (same ETags).
    etags = {
        cid: (await org.client.get(f"/v1/contacts/{cid}", headers=org.headers)).headers["ETag"]
        for cid in people
    }
    again = await reseal_records(
        app.state.sessionmaker, organization_id=org.id, module=Module.CONTACTS, stale_keys_only=True
    )
    assert again == 0
    for contact_id, etag in etags.items():
        read = await org.client.get(f"/v1/contacts/{contact_id}", headers=org.headers)
        assert read.headers["ETag"] == etag


# --- master-key rotation ---------------------------------------------------------------------


def keyring_line(key: bytes) -> str:
    return f"{master_key_id(key)} {base64.b64encode(key).decode()}\n"


def key_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="ascii").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


@asynccontextmanager
async def running_app(
    database_url: str, keyring: Path
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    application = create_app(make_settings(database_url, master_key=None, master_key_file=keyring))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


async def sign_in(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_master_rotation_rewraps_every_data_key_so_the_old_master_can_go(
    kind: str, databases: TestDatabases, tmp_path: Path
) -> None:
    url = await databases.new(kind)
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    old_master = secrets.token_bytes(32)
    keyring = tmp_path / "keyring"
    keyring.write_text(keyring_line(old_master), encoding="ascii")

    async with running_app(url, keyring) as (application, http):
        tenant = await new_org(application, http)
        people = await create_contacts(tenant, 4)
        account = await create(
            tenant, "/v1/accounts", {"name": "Keyed Ltd", "phone": "+44 161 496 0999"}
        )
        provider = application.state.key_provider
        assert provider.active_key_id == master_key_id(old_master)

        new_master_id = provider.add_generated_key()
        assert new_master_id != master_key_id(old_master)
        assert len(key_lines(keyring)) == 2
        # New data keys are wrapped by the new master key at once, before any re-wrap.
        late_values = person()
        late_id = (await create(tenant, "/v1/contacts", late_values))["id"]
        people[late_id] = late_values
        late_row = next(
            r for r in await stored_rows(application, Contact, tenant.id) if str(r["id"]) == late_id
        )
        keys = {key.id: key for key in await data_keys(application, tenant.id)}
        assert keys[late_row["data_key_id"]].master_key_id == new_master_id
        async with application.state.sessionmaker() as session:
            todo = await count_to_rewrap(session, provider)
        # four subjects, the organization key, the blind-index key, the audit key
        assert todo == 4 + 1 + 1 + 1

        batches: list[int] = []
        rewrapped = await rewrap_data_keys(
            application.state.sessionmaker, provider, batch_size=2, on_batch=batches.append
        )
        assert rewrapped == todo and sum(batches) == todo
        async with application.state.sessionmaker() as session:
            assert await count_to_rewrap(session, provider) == 0
            every_key = list((await session.execute(select(DataKeyRecord))).scalars())
        assert every_key and all(key.master_key_id == new_master_id for key in every_key)
        # The running app reads everything throughout.
        await assert_reads_back(tenant, people)
        admin_email = tenant.admin_email

    # Only the new master key is left: everything still opens.
    keyring.write_text(
        "".join(line + "\n" for line in key_lines(keyring) if line.startswith(new_master_id)),
        encoding="ascii",
    )
    assert len(key_lines(keyring)) == 1
    async with running_app(url, keyring) as (application, http):
        assert application.state.key_provider.active_key_id == new_master_id
        tenant.client, tenant.headers = http, await sign_in(http, admin_email)
        await assert_reads_back(tenant, people)
        read = await http.get(f"/v1/accounts/{account['id']}", headers=tenant.headers)
        assert read.status_code == 200 and read.json()["phone"] == "+44 161 496 0999"

    # A keyring holding only an unrelated key: everything fails closed, naming no value.
    # Even signing in: a sign-in that cannot be audited (the audit key is wrapped too) is
    # refused, so the session used below is opened while the right keyring is loaded.
    stranger = tmp_path / "stranger-keyring"
    stranger.write_text(keyring_line(secrets.token_bytes(32)), encoding="ascii")
    async with running_app(url, keyring) as (application, http):
        headers = await sign_in(http, admin_email)
    async with running_app(url, stranger) as (application, http):
        refused = await http.post(
            "/v1/auth/login", json={"email": admin_email, "password": PASSWORD}
        )
        assert assert_problem(refused, 500)["type"].endswith("/key-unavailable")
        some_id, some_values = next(iter(people.items()))
        for path, params in (
            (f"/v1/contacts/{some_id}", {}),
            ("/v1/contacts", {}),
            ("/v1/contacts", {"email": some_values["email"]}),
        ):
            response = await http.get(path, params=params, headers=headers)
            problem = assert_problem(response, 500)
            assert problem["type"].endswith("/key-unavailable"), path
            for value in some_values.values():
                assert value not in response.text


# --- the CLI, as an operator runs it ---------------------------------------------------------

CRM_SERVICE = Path(sys.executable).parent / "crm-service"
COMMAND_TIMEOUT = 60


def cli(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    env.update(settings)
    return subprocess.run(
        [str(CRM_SERVICE), *args],
        check=False,
        cwd=cwd,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


async def test_keys_rotate_and_status_from_the_command_line(tmp_path: Path) -> None:
    admin_email = unique_email("admin")
    created = cli(
        tmp_path,
        "bootstrap",
        "--org-name",
        "Acme",
        "--admin-email",
        admin_email,
        CRM_BOOTSTRAP_PASSWORD=PASSWORD,
    )
    assert created.returncode == 0, created.stderr
    org_id = json.loads(created.stdout)["org_id"]
    keyring = tmp_path / "var" / "master.key"
    assert len(key_lines(keyring)) == 1
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'crm.db'}"

    values = person()
    async with running_app(url, keyring) as (application, http):
        headers = await sign_in(http, admin_email)
        response = await http.post("/v1/contacts", json=values, headers=headers)
        assert response.status_code == 201, response.text
        contact_id = response.json()["id"]
        first_key = (await stored_rows(application, Contact, uuid.UUID(org_id)))[0]["data_key_id"]

    rotated = cli(tmp_path, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout == ""
    assert f"contacts of {org_id}" in rotated.stderr  # the progress bar's task
    assert "1 records re-sealed" in rotated.stderr
    assert "Traceback" not in rotated.stderr
    for value in values.values():
        assert value not in rotated.stderr

    status = cli(tmp_path, "keys", "status")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["organizations"][org_id]["key_generation"] == 2
    assert report["active_master_key"] == key_lines(keyring)[0].split()[0]
    by_status = {
        entry["status"]: entry["count"] for entry in report["organizations"][org_id]["data_keys"]
    }
    assert by_status.get(DataKeyStatus.RETIRED.value, 0) >= 1

    master = cli(tmp_path, "keys", "rotate", "--master")
    assert master.returncode == 0, master.stderr
    assert len(key_lines(keyring)) == 2
    new_master_id = key_lines(keyring)[1].split()[0]
    assert new_master_id in master.stderr
    status = json.loads(cli(tmp_path, "keys", "status").stdout)
    assert status["active_master_key"] == new_master_id
    assert {e["master_key_id"] for e in status["organizations"][org_id]["data_keys"]} == {
        new_master_id
    }

    async with running_app(url, keyring) as (application, http):
        headers = await sign_in(http, admin_email)
        read = await http.get(f"/v1/contacts/{contact_id}", headers=headers)
        assert read.status_code == 200, read.text
        assert same_values(read.json(), values)
        (row,) = await stored_rows(application, Contact, uuid.UUID(org_id))
        assert row["data_key_id"] != first_key
        keys = {key.id: key for key in await data_keys(application, uuid.UUID(org_id))}
        assert keys[row["data_key_id"]].generation == 2
        assert keys[first_key].status == DataKeyStatus.RETIRED.value

    single = cli(
        tmp_path,
        "keys",
        "rotate",
        "--master",
        CRM_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    assert single.returncode != 0
    assert "CRM_MASTER_KEY_FILE" in single.stderr
    assert "Traceback" not in single.stderr
    assert len(key_lines(keyring)) == 2  # the keyring file was not touched
