"""What other features plug into erasure: a registered eraser runs in the erasure's
transaction and is counted on the receipt; when it fails, or the forget-log cannot be
written, nothing is erased."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.privacy import erasure
from tests.conftest import Org, assert_problem, unique_email

seen: list[tuple[uuid.UUID, uuid.UUID]] = []


async def forget_outbox(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> int:
    # Proof that it runs inside the erasure's transaction: it sees the subject's row.
    found = await session.execute(
        text("SELECT count(*) FROM leads WHERE organization_id = :o"),
        {
            "o": organization_id
            if session.bind.dialect.name == "postgresql"
            else organization_id.hex
        },
    )
    assert found.scalar() >= 1
    seen.append((organization_id, subject_id))
    return 3


async def broken_eraser(
    session: AsyncSession, organization_id: uuid.UUID, subject_id: uuid.UUID
) -> int:
    raise RuntimeError("this feature cannot erase right now")


@pytest.fixture
def registered() -> Iterator[None]:
    erasure.register_subject_eraser(forget_outbox, name="mail_outbox")
    yield
    erasure._erasers.pop("mail_outbox")


async def _lead(org: Org) -> str:
    lead = await org.client.post(
        "/v1/leads", json={"last_name": "Seam", "email": unique_email()}, headers=org.headers
    )
    return lead.json()["id"]


async def test_a_registered_eraser_runs_and_is_counted(org: Org, registered: None) -> None:
    lead_id = await _lead(org)
    response = await org.client.post(
        "/v1/privacy/erasures", json={"module": "leads", "record_id": lead_id}, headers=org.headers
    )
    [receipt_id] = response.json()["receipt_ids"]
    receipt = await org.client.get(f"/v1/privacy/erasures/{receipt_id}", headers=org.headers)
    assert receipt.json()["counts"]["mail_outbox"] == 3
    assert seen[-1] == (org.id, uuid.UUID(receipt.json()["subject_id"]))


async def test_a_failing_eraser_erases_nothing(org: Org, app: Any) -> None:
    erasure.register_subject_eraser(broken_eraser)
    try:
        lead_id = await _lead(org)
        failed = await org.client.post(
            "/v1/privacy/erasures",
            json={"module": "leads", "record_id": lead_id},
            headers=org.headers,
        )
        assert_problem(failed, 500)
    finally:
        erasure._erasers.pop("broken_eraser")
    assert (await org.client.get(f"/v1/leads/{lead_id}", headers=org.headers)).status_code == 200
    assert (await org.client.get("/v1/privacy/blocklist", headers=org.headers)).json()["data"] == []


async def test_an_unwritable_forget_log_erases_nothing(org: Org, app: Any, tmp_path: Path) -> None:
    forget_log = app.state.sessionmaker.kw["info"]["forget_log"]
    original = forget_log.path
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    forget_log.path = blocker / "forget.log"
    try:
        lead_id = await _lead(org)
        response = await org.client.post(
            "/v1/privacy/erasures",
            json={"module": "leads", "record_id": lead_id},
            headers=org.headers,
        )
        assert_problem(response, 503)
    finally:
        forget_log.path = original
    assert (await org.client.get(f"/v1/leads/{lead_id}", headers=org.headers)).status_code == 200
