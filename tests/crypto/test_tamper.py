"""Ciphertexts are bound to organization, table, column and row: altered or moved, a value
fails to open and the read fails closed with a clear error — never wrong data."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from tests.conftest import Org, unique_email


async def _contact(org: Org, **fields: str) -> str:
    body = {"first_name": "Tamper", "last_name": "Target", "email": unique_email(), **fields}
    created = await org.client.post("/v1/contacts", json=body, headers=org.headers)
    assert created.status_code == 201
    return created.json()["id"]


def _id(app: Any, value: str) -> Any:
    return (
        uuid.UUID(value) if app.state.engine.dialect.name == "postgresql" else uuid.UUID(value).hex
    )


async def _stored(app: Any, column: str, contact_id: str) -> bytes:
    async with app.state.engine.connect() as connection:
        result = await connection.execute(
            text(f"SELECT {column} FROM contacts WHERE id = :id"), {"id": _id(app, contact_id)}
        )
        return bytes(result.scalar_one())


async def _store(app: Any, column: str, contact_id: str, value: Any) -> None:
    async with app.state.engine.begin() as connection:
        await connection.execute(
            text(f"UPDATE contacts SET {column} = :value WHERE id = :id"),
            {"value": value, "id": _id(app, contact_id)},
        )


async def _assert_fails_closed(org: Org, contact_id: str, *secrets: str) -> None:
    response = await org.client.get(f"/v1/contacts/{contact_id}", headers=org.headers)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/stored-data-integrity")
    assert problem["title"] == "Stored data failed its integrity check"
    for secret in secrets:
        assert secret not in response.text
    listed = await org.client.get("/v1/contacts", headers=org.headers)
    assert listed.status_code == 500, "a list containing the row must fail closed too"


async def test_one_flipped_bit_fails_closed(org: Org, app: Any) -> None:
    contact_id = await _contact(org, last_name="Bitflip")
    stored = bytearray(await _stored(app, "last_name", contact_id))
    stored[-5] ^= 0x01
    await _store(app, "last_name", contact_id, bytes(stored))
    await _assert_fails_closed(org, contact_id, "Bitflip")


async def test_ciphertext_swapped_between_rows_fails_closed(org: Org, app: Any) -> None:
    first = await _contact(org, last_name="Firstrow")
    second = await _contact(org, last_name="Secondrow")
    first_value = await _stored(app, "last_name", first)
    await _store(app, "last_name", second, first_value)
    await _assert_fails_closed(org, second, "Firstrow")


async def test_ciphertext_moved_to_another_column_fails_closed(org: Org, app: Any) -> None:
    contact_id = await _contact(org, first_name="Columnmove")
    await _store(app, "last_name", contact_id, await _stored(app, "first_name", contact_id))
    await _assert_fails_closed(org, contact_id, "Columnmove")


async def test_ciphertext_and_key_moved_from_another_organization_fail_closed(
    org: Org, other_org: Org, app: Any
) -> None:
    foreign = await _contact(other_org, last_name="Foreigner")
    victim = await _contact(org, last_name="Local")
    await _store(app, "last_name", victim, await _stored(app, "last_name", foreign))
    await _assert_fails_closed(org, victim, "Foreigner")
    # Moving the key reference along with the value does not help: the key is not theirs.
    async with app.state.engine.connect() as connection:
        key_id = (
            await connection.execute(
                text("SELECT data_key_id FROM contacts WHERE id = :id"), {"id": _id(app, foreign)}
            )
        ).scalar_one()
    await _store(app, "data_key_id", victim, key_id)
    await _assert_fails_closed(org, victim, "Foreigner")


async def test_untouched_records_still_read(org: Org, app: Any) -> None:
    broken = await _contact(org, last_name="Broken")
    fine = await _contact(org, last_name="Fine")
    stored = bytearray(await _stored(app, "last_name", broken))
    stored[20] ^= 0x80
    await _store(app, "last_name", broken, bytes(stored))
    response = await org.client.get(f"/v1/contacts/{fine}", headers=org.headers)
    assert response.status_code == 200 and response.json()["last_name"] == "Fine"
