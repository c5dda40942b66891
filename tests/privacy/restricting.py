"""Builders for the restriction tests: a data subject with something of everything (history, a
share, a legal basis, a consent event), restricted as completing a privacy request does, and
the members who read it (one without `view_restricted`, one with it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crm_service.audit.service import Actor
from crm_service.db.session import commit
from crm_service.privacy.restriction import restrict_subject
from crm_service.records.contacts.models import Contact
from crm_service.records.leads.models import Lead
from tests.access.conftest import (
    Member,
    add_member,
    builtin_profiles,
    create_group,
    create_profile,
    create_record,
    set_sharing,
)
from tests.conftest import Org

MODELS = {"leads": Lead, "contacts": Contact}
RESTRICTED_TYPE = "tag:crm-service,2026:problems/processing-restricted"
EVERY_OPERATION = ["create", "read", "update", "delete", "export"]


async def subject_of(org: Org, module: str, record_id: str) -> uuid.UUID:
    async with org.app.state.sessionmaker() as session:
        record = await session.get(MODELS[module], uuid.UUID(record_id))
        assert record is not None
        return record.subject_id


async def restrict(org: Org, module: str, record_id: str) -> uuid.UUID:
    """Restrict the record's data subject as completing a restriction request does."""
    subject_id = await subject_of(org, module, record_id)
    async with org.app.state.sessionmaker() as session:
        await restrict_subject(
            session,
            org.id,
            subject_id,
            reason="privacy_request",
            request_id=uuid.uuid4(),
            actor=Actor.user(org.id, org.admin_id, None),
            now=datetime.now(UTC),
        )
        await commit(session)
    return subject_id


@dataclass(frozen=True)
class Readers:
    """Who reads: a Standard user (no `view_restricted`) and a reviewer whose own profile
    grants `view_restricted` (not the Administrator profile). Sharing lets both see all."""

    standard: Member
    reviewer: Member


async def readers(org: Org) -> Readers:
    await set_sharing(org, "read_write")
    standard = await add_member(org, profile_id=(await builtin_profiles(org))["standard"])
    profile = await create_profile(
        org,
        {"leads": EVERY_OPERATION, "contacts": EVERY_OPERATION, "accounts": EVERY_OPERATION},
        rights=["view_restricted"],
    )
    return Readers(standard=standard, reviewer=await add_member(org, profile_id=profile))


@dataclass(frozen=True)
class Person:
    """A lead or contact with history, a share, a legal basis and a consent event."""

    org: Org
    module: str
    record: dict[str, Any]
    purpose: str  # the key of the purpose it consented to
    consent_event_id: str
    group_id: str

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def path(self) -> str:
        return f"/v1/{self.module}/{self.id}"


async def person(org: Org, module: str, purpose: str, **fields: Any) -> Person:
    extra = {"company": "Engines Ltd"} if module == "leads" else {}
    record = await create_record(
        org, module, legal_basis={"basis": "consent"}, title="Analyst", **extra, **fields
    )
    path = f"/v1/{module}/{record['id']}"
    changed = await org.client.patch(path, json={"title": "Engineer"}, headers=org.headers)
    assert changed.status_code == 200, changed.text
    group = await create_group(org, [])
    shared = await org.client.put(
        f"{path}/shares/{group}", json={"access": "read_only"}, headers=org.headers
    )
    assert shared.status_code == 200, shared.text
    consented = await org.client.post(
        f"{path}/consents",
        json={"purpose": purpose, "status": "granted", "channel": "phone"},
        headers=org.headers,
    )
    assert consented.status_code == 201, consented.text
    return Person(org, module, changed.json(), purpose, consented.json()["id"], group)
