"""A data subject with something of every kind a package holds: a lead (with a legal basis
and its legitimate-interest assessment, a sensitive national id, a description a spreadsheet
would take for a formula) whose email was changed, a consent with evidence recorded on it,
then converted into a contact, which carries the lead's legal basis and ledger."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from tests.conftest import Org
from tests.consent.conftest import create_purpose


@dataclass
class Person:
    """Distinctive values, none of which occurs anywhere by chance."""

    first_name: str
    last_name: str
    email: str
    former_email: str
    phone: str
    national_id: str
    description: str
    consent_note: str
    assessment: str

    @classmethod
    def new(cls) -> Person:
        tag = secrets.token_hex(4)
        return cls(
            first_name=f"Ottoline{tag}",
            last_name=f"Brackenridge{tag}",
            email=f"ottoline.{tag}@example.com",
            former_email=f"old.ottoline.{tag}@example.com",
            phone=f"+44 20 7946 {secrets.randbelow(9000) + 1000}",
            national_id=f"NI {tag.upper()}",
            description=f'=HYPERLINK("http://evil.example/{tag}")',
            consent_note=f"Agreed on the phone, ref {tag}",
            assessment=f"Existing customer relationship {tag}",
        )

    def personal_values(self) -> list[str]:
        """Values stored sealed (the assessment is plain text by design: staff write it)."""
        return [
            self.first_name,
            self.last_name,
            self.email,
            self.former_email,
            self.phone,
            self.national_id,
            self.consent_note,
        ]


@dataclass
class Scene:
    person: Person
    lead_id: str
    contact_id: str
    subject_id: str
    purpose: str


async def make_scene(org: Org) -> Scene:
    person = Person.new()
    client, headers = org.client, org.headers
    purpose = (await create_purpose(org))["key"]
    lead = await client.post(
        "/v1/leads",
        json={
            "first_name": person.first_name,
            "last_name": person.last_name,
            "email": person.former_email,
            "phone": person.phone,
            "national_id": person.national_id,
            "description": person.description,
            "legal_basis": {"basis": "legitimate_interests", "assessment": person.assessment},
        },
        headers=headers,
    )
    assert lead.status_code == 201, lead.text
    lead_id = lead.json()["id"]
    changed = await client.patch(
        f"/v1/leads/{lead_id}", json={"email": person.email}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    consent = await client.post(
        f"/v1/leads/{lead_id}/consents",
        json={"purpose": purpose, "status": "granted", "note": person.consent_note},
        headers=headers,
    )
    assert consent.status_code == 201, consent.text
    converted = await client.post(
        f"/v1/leads/{lead_id}/convert", json={"create_account": False}, headers=headers
    )
    assert converted.status_code == 201, converted.text
    contact_id = converted.json()["contact"]["id"]
    ledger = await client.get(f"/v1/contacts/{contact_id}/consents", headers=headers)
    assert ledger.status_code == 200, ledger.text
    return Scene(person, lead_id, contact_id, ledger.json()["subject_id"], purpose)


async def package_of(
    org: Org, subject_id: str, headers: dict[str, str] | None = None, fmt: str = "json"
) -> Any:
    return await org.client.get(
        f"/v1/privacy/subjects/{subject_id}/package",
        params={"format": fmt},
        headers=headers or org.headers,
    )
