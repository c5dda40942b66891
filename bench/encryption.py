"""Cost of encryption at rest, measured as ratios to the same operations with it off.

    .venv/bin/python bench/encryption.py [--contacts 100000] [--database-url URL]

"Off" is the same code path with every field classified `none` (stored plain, still
blind-indexed), in a second organization of the same database, in the same run; so the
ratio isolates sealing and opening. Measured:
  1. seal + open of one contact's classifiable fields (codec only, no database);
  2. GET one contact, a list page of 50, and an `email=` lookup, through the HTTP app.
Prints a JSON report. Medians over many repetitions; the machine is shared, so read ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from crm_service.config import Settings
from crm_service.crypto.codec import DataKey, FieldContext, open_value, seal, store_plain
from crm_service.db.engine import make_engine
from crm_service.db.migrations import upgrade
from crm_service.db.session import commit
from crm_service.kit.modules import Module
from crm_service.main import create_app
from crm_service.orgs.service import bootstrap_organization
from crm_service.records.contacts.models import Contact
from crm_service.records.contacts.repository import ContactRepository
from crm_service.records.fields import CATALOG
from crm_service.records.models import SourceChannel

PASSWORD = "benchmark password 123"
FIELDS = {
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
    "national_id": "QQ123456C",
    "department": "R&D",
}


def median_seconds(fn: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def codec_costs(repeat: int) -> dict[str, float]:
    key = DataKey(id=uuid.uuid4(), material=secrets.token_bytes(32))
    org, row = uuid.uuid4(), uuid.uuid4()
    contexts = {name: FieldContext(org, "contacts", name, row) for name in FIELDS}

    def sealed() -> None:
        for name, value in FIELDS.items():
            open_value(seal(key, value, contexts[name]), key, contexts[name])

    def plain() -> None:
        for name, value in FIELDS.items():
            open_value(store_plain(value), key, contexts[name])

    on, off = median_seconds(sealed, repeat), median_seconds(plain, repeat)
    return {"sealed_us": on * 1e6, "plain_us": off * 1e6, "ratio": on / off}


async def populate(app: Any, organization_id: uuid.UUID, user_id: uuid.UUID, count: int) -> None:
    batch = 1000
    for start in range(0, count, batch):
        async with app.state.sessionmaker() as session:
            repository = ContactRepository(session, organization_id)
            for index in range(start, min(start + batch, count)):
                values = dict(
                    FIELDS, email=f"person{index}@example.com", phone=f"+4420794{index:05d}"
                )
                contact = Contact(
                    id=uuid.uuid4(),
                    organization_id=organization_id,
                    owner_id=user_id,
                    created_by_id=user_id,
                    subject_id=uuid.uuid4(),
                    source_channel=SourceChannel.MANUAL.value,
                    **values,
                )
                contact.mark_new_subject()
                # Sealed by the product's storage layer; inserted a thousand at a time.
                await repository.storage.seal(contact)
                session.add(contact)
            await session.commit()


async def timed(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    path: str,
    params: dict[str, str],
    repeat: int,
) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(path, params=params, headers=headers)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return statistics.median(samples)


async def main(contacts: int, database_url: str | None, repeat: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    url = database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    settings = Settings(
        database_url=url,
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        log_level="WARNING",
    )
    app = create_app(settings)
    report: dict[str, Any] = {"contacts_per_org": contacts, "database": url.split(":")[0]}
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            orgs = {}
            for mode in ("encrypted", "plain"):
                email = f"admin-{mode}-{secrets.token_hex(3)}@example.com"
                async with app.state.sessionmaker() as session:
                    created = await bootstrap_organization(
                        session=session, org_name=mode, admin_email=email, password=PASSWORD
                    )
                    await commit(session)
                login = await client.post(
                    "/v1/auth/login", json={"email": email, "password": PASSWORD}
                )
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
                if mode == "plain":
                    everything_none = {spec.name: "none" for spec in CATALOG[Module.CONTACTS]}
                    put = await client.put(
                        "/v1/settings/fields/contacts",
                        json={"fields": everything_none},
                        headers=headers,
                    )
                    assert put.status_code == 200, put.text
                started = time.perf_counter()
                await populate(app, created.organization.id, created.admin.id, contacts)
                report[f"populate_{mode}_s"] = round(time.perf_counter() - started, 1)
                orgs[mode] = headers

            for mode, headers in orgs.items():
                first = await client.get("/v1/contacts", params={"limit": "1"}, headers=headers)
                one = first.json()["data"][0]["id"]
                probe = f"person{contacts // 2}@example.com"
                report[mode] = {
                    "get_ms": 1000
                    * await timed(client, headers, f"/v1/contacts/{one}", {}, repeat),
                    "list50_ms": 1000
                    * await timed(client, headers, "/v1/contacts", {"limit": "50"}, repeat),
                    "lookup_email_ms": 1000
                    * await timed(client, headers, "/v1/contacts", {"email": probe}, repeat),
                }
    report["ratios_encrypted_to_plain"] = {
        name: round(report["encrypted"][name] / report["plain"][name], 2)
        for name in report["plain"]
    }
    report["codec_per_contact"] = {k: round(v, 2) for k, v in codec_costs(repeat * 20).items()}
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.contacts, args.database_url, args.repeat)), indent=2))
