"""Erasure by key destruction: destroy a data subject's keys and every value sealed under
them is gone — the lead, the contact it became — while reads answer as erased, not as errors."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from crm_service.crypto.service import keyring_for
from tests.conftest import Org, unique_email


async def test_destroying_a_subjects_keys_erases_lead_and_contact(org: Org, app: Any) -> None:
    lead = await org.client.post(
        "/v1/leads",
        json={"last_name": "Forgotten", "email": unique_email(), "company": "Acme"},
        headers=org.headers,
    )
    converted = await org.client.post(
        f"/v1/leads/{lead.json()['id']}/convert", json={}, headers=org.headers
    )
    contact_id = converted.json()["contact"]["id"]
    bystander = await org.client.post(
        "/v1/contacts", json={"last_name": "Remembered"}, headers=org.headers
    )
    async with app.state.engine.connect() as connection:
        subject = (
            await connection.execute(
                text("SELECT subject_id FROM leads WHERE id = :id"),
                {
                    "id": lead.json()["id"]
                    if app.state.engine.dialect.name == "postgresql"
                    else lead.json()["id"].replace("-", "")
                },
            )
        ).scalar_one()
    subject = uuid.UUID(str(subject))

    async with app.state.sessionmaker() as session:
        destroyed = await keyring_for(session, org.id).destroy_subject_keys(subject)
        await session.commit()
    assert destroyed == 1

    for path in (f"/v1/leads/{lead.json()['id']}", f"/v1/contacts/{contact_id}"):
        response = await org.client.get(path, headers=org.headers)
        assert response.status_code == 410, path
        assert response.json()["type"].endswith("/erased")
        assert "Forgotten" not in response.text
    listed = await org.client.get("/v1/contacts", headers=org.headers)
    assert [c["id"] for c in listed.json()["data"]] == [bystander.json()["id"]]
    assert (await org.client.get("/v1/leads", headers=org.headers)).json()["data"] == []
    # The account (organization key) is untouched.
    account_id = converted.json()["account"]["id"]
    assert (
        await org.client.get(f"/v1/accounts/{account_id}", headers=org.headers)
    ).status_code == 200

    async with app.state.engine.connect() as connection:
        wrapped = (
            await connection.execute(
                text("SELECT wrapped, status FROM data_keys WHERE subject_id = :s"),
                {"s": subject if app.state.engine.dialect.name == "postgresql" else subject.hex},
            )
        ).all()
    assert wrapped == [(None, "destroyed")]
