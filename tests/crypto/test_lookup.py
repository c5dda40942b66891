"""Exact-match search on sealed fields through blind indexes over normalized values."""

from __future__ import annotations

from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from crm_service.main import create_app
from tests.conftest import Org, make_settings, new_org, unique_email


async def _ids(org: Org, path: str = "/v1/contacts", **params: str) -> list[str]:
    response = await org.client.get(path, params=params, headers=org.headers)
    assert response.status_code == 200, response.text
    return [record["id"] for record in response.json()["data"]]


async def test_email_lookup_ignores_case_and_surrounding_spaces(org: Org) -> None:
    email = unique_email("Grace.Hopper").replace("example.com", "Example.COM")
    created = await org.client.post(
        "/v1/contacts", json={"last_name": "Hopper", "email": email}, headers=org.headers
    )
    contact_id = created.json()["id"]
    assert await _ids(org, email=f"  {email.upper()}  ") == [contact_id]
    assert await _ids(org, email=email.lower()) == [contact_id]
    assert await _ids(org, email=email.replace("Grace", "Gracie")) == []
    searched = await org.client.post(
        "/v1/contacts/search", json={"email": email.swapcase()}, headers=org.headers
    )
    assert [c["id"] for c in searched.json()["data"]] == [contact_id]


async def test_phone_lookup_matches_the_number_however_it_is_written(org: Org) -> None:
    landline = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Lovelace", "phone": "+44 20 7946 0958"},
        headers=org.headers,
    )
    mobile = await org.client.post(
        "/v1/contacts",
        json={"last_name": "Babbage", "mobile": "+44 (7700) 900-123"},
        headers=org.headers,
    )
    for written in ("+442079460958", "+44 (20) 7946-0958", "+44.20.7946.0958"):
        assert await _ids(org, phone=written) == [landline.json()["id"]], written
    assert await _ids(org, phone="+447700900123") == [mobile.json()["id"]]
    assert await _ids(org, phone="+44 20 7946 0959") == []
    account = await org.client.post(
        "/v1/accounts",
        json={"name": "Analytical Engines", "phone": "+1 (617) 495-7000"},
        headers=org.headers,
    )
    assert await _ids(org, "/v1/accounts", phone="+16174957000") == [account.json()["id"]]
    assert await _ids(org, "/v1/accounts", name="  analytical   ENGINES ") == [account.json()["id"]]


async def test_national_numbers_use_the_configured_region(database_url: str) -> None:
    app = create_app(make_settings(database_url, default_phone_region="GB"))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            org = await new_org(app, client)
            created = await client.post(
                "/v1/leads",
                json={"last_name": "Turing", "phone": "020 7946 0321"},
                headers=org.headers,
            )
            assert await _ids(org, "/v1/leads", phone="+44 20 7946 0321") == [created.json()["id"]]


async def test_the_same_email_has_unrelated_index_values_in_two_organizations(
    org: Org, other_org: Org, app: Any
) -> None:
    email = unique_email("shared")
    for tenant in (org, other_org):
        created = await tenant.client.post(
            "/v1/contacts", json={"last_name": "Shared", "email": email}, headers=tenant.headers
        )
        assert created.status_code == 201
    async with app.state.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT email_bidx FROM contacts WHERE organization_id IN (:a, :b)"),
            {
                "a": org.id if app.state.engine.dialect.name == "postgresql" else org.id.hex,
                "b": other_org.id
                if app.state.engine.dialect.name == "postgresql"
                else other_org.id.hex,
            },
        )
        digests = [row[0] for row in rows]
    assert len(digests) == 2 and digests[0] != digests[1]
    assert all(len(d) == 64 and email not in d for d in digests)
    assert len(await _ids(org, email=email)) == 1 and len(await _ids(other_org, email=email)) == 1


async def test_sqlite_lookups_search_the_blind_index_not_the_table(org: Org, app: Any) -> None:
    """The query the repository builds for a filter searches its blind index (no scan of
    rows to decrypt), in every sort order — on SQLite, whose planner needs the seeded stats."""
    if app.state.engine.dialect.name != "sqlite":
        return  # PostgreSQL plans from its own statistics; nothing of ours to check
    from crm_service.records.contacts.repository import ContactRepository
    from crm_service.records.paging import PageRequest, RecordSort, apply_keyset

    async with app.state.sessionmaker() as session:
        repository = ContactRepository(session, org.id)
        for filters, index in (
            ({"email": "x@example.com"}, "ix_contacts_email_bidx"),
            ({"phone": "+44 20 7946 0000"}, "ix_contacts_phone_bidx"),
        ):
            for sort in RecordSort:
                statement = apply_keyset(
                    repository.scoped().where(*await repository.filter_clauses(filters)),
                    repository.model,
                    PageRequest(sort=sort),
                )
                sql = statement.compile(
                    dialect=app.state.engine.dialect, compile_kwargs={"literal_binds": True}
                )
                plan = (await session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))).all()
                details = " ".join(str(row[-1]) for row in plan)
                assert f"USING INDEX {index}" in details, (filters, sort.value, details)
