"""The bare stack: FastAPI + uvicorn + raw asyncpg with no security, the reference the
service's request path is measured against (DESIGN.md, Performance).

    CRM_BENCH_BARE_DSN=postgresql://postgres@127.0.0.1:5432/db uvicorn bench.bare:app --port 8100

`GET /contacts/{id}` reads one row by primary key, `POST /contacts` inserts one and answers
it with 201, `GET /contacts?limit=50` lists the newest rows. The table is shaped like a
contact row (the record columns and the person fields, values stored plain, the same
newest-first index); :func:`prepare` creates and fills it. The pool matches SQLAlchemy's
default size (5 connections, 10 more under load); as asyncpg pools do by default, it resets a
connection on release, so a request costs two round trips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Query, Request, status
from pydantic import BaseModel

DSN_VARIABLE = "CRM_BENCH_BARE_DSN"
FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "mobile",
    "title",
    "date_of_birth",
    "mailing_street",
    "mailing_city",
    "mailing_state",
    "mailing_postal_code",
    "mailing_country",
    "description",
    "national_id",
    "source_ip",
    "department",
)
COLUMNS = ", ".join(
    ("id", "organization_id", "owner_id", *FIELDS, "version", "created_at", "updated_at")
)
ORGANIZATION = uuid.UUID(int=1)

SCHEMA = f"""
DROP TABLE IF EXISTS bare_contacts;
CREATE TABLE bare_contacts (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    owner_id uuid,
    {", ".join(f"{name} text" for name in FIELDS)},
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX ix_bare_contacts_org_created ON bare_contacts (organization_id, created_at, id);
CREATE INDEX ix_bare_contacts_org_email ON bare_contacts (organization_id, email);
"""


class ContactIn(BaseModel):
    first_name: str | None = None
    last_name: str
    email: str | None = None
    phone: str | None = None
    mobile: str | None = None
    title: str | None = None
    date_of_birth: str | None = None
    mailing_street: str | None = None
    mailing_city: str | None = None
    mailing_state: str | None = None
    mailing_postal_code: str | None = None
    mailing_country: str | None = None
    description: str | None = None
    national_id: str | None = None
    source_ip: str | None = None
    department: str | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ[DSN_VARIABLE], min_size=5, max_size=15)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/contacts/{contact_id}")
async def get_contact(contact_id: uuid.UUID, request: Request) -> dict[str, Any]:
    row = await request.app.state.pool.fetchrow(
        f"SELECT {COLUMNS} FROM bare_contacts WHERE id = $1", contact_id
    )
    if row is None:
        raise HTTPException(status_code=404)
    return dict(row)


@app.post("/contacts", status_code=status.HTTP_201_CREATED)
async def create_contact(payload: ContactIn, request: Request) -> dict[str, Any]:
    values = payload.model_dump()
    placeholders = ", ".join(f"${n}" for n in range(3, len(FIELDS) + 3))
    row = await request.app.state.pool.fetchrow(
        f"INSERT INTO bare_contacts (id, organization_id, {', '.join(FIELDS)}) "
        f"VALUES ($1, $2, {placeholders}) RETURNING {COLUMNS}",
        uuid.uuid4(),
        ORGANIZATION,
        *(values[name] for name in FIELDS),
    )
    return dict(row)


@app.get("/contacts")
async def list_contacts(request: Request, limit: int = Query(50, ge=1, le=200)) -> dict[str, Any]:
    rows = await request.app.state.pool.fetch(
        f"SELECT {COLUMNS} FROM bare_contacts WHERE organization_id = $1 "
        "ORDER BY created_at DESC, id DESC LIMIT $2",
        ORGANIZATION,
        limit,
    )
    return {"data": [dict(row) for row in rows]}


async def prepare(dsn: str, rows: int, values: dict[str, str]) -> uuid.UUID:
    """(Re)create the table with `rows` rows carrying `values` (emails made unique); returns
    the id of the middle row."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(SCHEMA)
        expressions = []
        for name in FIELDS:
            value = values.get(name)
            if name == "email":
                expressions.append("'person' || g || '@example.com'")
            elif value is None:
                expressions.append("NULL")
            else:
                expressions.append("'" + value.replace("'", "''") + "'")
        await connection.execute(
            f"INSERT INTO bare_contacts (id, organization_id, {', '.join(FIELDS)}, created_at) "
            f"SELECT gen_random_uuid(), $1, {', '.join(expressions)}, "
            "now() - make_interval(secs => (($2 - g) / 1000.0)::float8) "
            "FROM generate_series(1, $2) AS g",
            ORGANIZATION,
            rows,
        )
        await connection.execute("ANALYZE bare_contacts")
        return await connection.fetchval(
            "SELECT id FROM bare_contacts ORDER BY created_at OFFSET $1 LIMIT 1", rows // 2
        )
    finally:
        await connection.close()
