"""Rule 4: personal data never enters logs — over a run of writes, searches and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Org


async def test_logs_of_a_full_run_hold_no_subject_value(
    org: Org, app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    values = {
        "first_name": "Zeraphina",
        "last_name": "Quillfeather",
        "email": "zeraphina.quillfeather@example.com",
        "phone": "+44 20 7946 0958",
    }
    client, headers = org.client, org.headers
    created = await client.post("/v1/contacts", json=values, headers=headers)
    assert created.status_code == 201
    contact_id = created.json()["id"]
    await client.patch(f"/v1/contacts/{contact_id}", json={"title": "Xylographer"}, headers=headers)
    await client.get("/v1/contacts", params={"email": values["email"]}, headers=headers)
    await client.post("/v1/contacts/search", json={"phone": values["phone"]}, headers=headers)
    # Error paths: invalid input carrying the values, a stale ETag, an unknown id, a bad token.
    await client.post(
        "/v1/contacts", json={**values, "email": "Zeraphina-not-an-email"}, headers=headers
    )
    await client.patch(
        f"/v1/contacts/{contact_id}",
        json={"last_name": "Quillfeather-Stale"},
        headers={**headers, "If-Match": '"999"'},
    )
    await client.get(f"/v1/contacts/{contact_id[:-1]}0?email={values['email']}", headers=headers)
    await client.post(
        "/v1/auth/login", json={"email": values["email"], "password": "Quillfeather-password"}
    )

    logged = caplog.text + "\n".join(json.dumps(r.msg, default=str) for r in caplog.records)
    assert "request" in logged and "/v1/contacts/{record_id}" in logged
    for secret in ("Zeraphina", "Quillfeather", "7946", "Xylographer"):
        assert secret.lower() not in logged.lower(), f"{secret!r} reached the logs"
