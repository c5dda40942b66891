"""Rule 1: a stolen database file or dump shows none of a data subject's values, while the
API still finds every one of them."""

from __future__ import annotations

import re
import secrets
from typing import Any

from tests.conftest import Org, database_bytes


def _people(count: int) -> list[dict[str, str]]:
    people = []
    for _ in range(count):
        tag = secrets.token_hex(5)
        people.append(
            {
                "first_name": f"Firstname{tag}",
                "last_name": f"Lastname{tag}",
                "email": f"mail{tag}@example.com",
                "phone": f"+44 20 7946 {int(tag[:4], 16) % 10000:04d}",
                "mailing_street": f"{tag} Orchard Lane",
                "national_id": f"NI{tag.upper()}",
                "description": f"Prefers tea; mentioned {tag}",
            }
        )
    return people


def _encodings(value: str) -> list[bytes]:
    """A value as a database file or dump may show it: raw, lowercased, or hex (pg_dump
    prints bytea as hex, so a plaintext grep alone would miss unencrypted bytea)."""
    raw = value.encode()
    return [raw, value.lower().encode(), raw.hex().encode()]


# Random hex the database holds anyway (ciphertext as pg_dump prints bytea, blind indexes,
# hashes, UUIDs): a short plaintext needle such as a phone number's last digits turns up in
# it by chance now and then. Blanked before looking for a value as it is written; the value's
# hex form is still looked for in everything. No phone number (at most 15 digits) and no
# value with a character outside 0-9a-f is hidden by it.
_RANDOM_HEX = re.compile(
    rb"[0-9a-f]{16,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def _holds(raw: bytes, blanked: bytes, value: str) -> bool:
    """`value` raw or lowercased outside random hex, or hex-encoded anywhere."""
    written = value.encode()
    return written in blanked or value.lower().encode() in blanked or written.hex().encode() in raw


def _needles(person: dict[str, str]) -> list[bytes]:
    values = list(person.values()) + [person["phone"].replace(" ", "")]
    return [needle for value in values for needle in _encodings(value)]


async def test_a_database_dump_holds_no_subject_value(
    org: Org, app: Any, database_url: str
) -> None:
    people = _people(5)
    ids = []
    for person in people:
        created = await org.client.post("/v1/contacts", json=person, headers=org.headers)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    lead = await org.client.post(
        "/v1/leads", json={**_people(1)[0], "company": "Plain Company Ltd"}, headers=org.headers
    )
    account = await org.client.post(
        "/v1/accounts",
        json={"name": "Visible Name Ltd", "phone": "+44 161 496 0321", "tax_id": "GB999888777"},
        headers=org.headers,
    )
    assert lead.status_code == account.status_code == 201

    raw = await database_bytes(database_url)
    assert len(raw) > 10_000
    for person in people:
        for needle in _needles(person):
            assert needle not in raw, f"{needle!r} is readable at rest"
    blanked = _RANDOM_HEX.sub(b"-", raw)
    for value in ("GB999888777", "496 0321", "4960321"):
        assert not _holds(raw, blanked, value), f"{value!r} is readable at rest"
    # Classified `none` by default, so stored plain: proof that the search would see a value.
    for plain in ("Plain Company Ltd", "Visible Name Ltd"):
        assert any(needle in raw for needle in _encodings(plain)), plain

    for contact_id, person in zip(ids, people, strict=True):
        read = await org.client.get(f"/v1/contacts/{contact_id}", headers=org.headers)
        assert {key: read.json()[key] for key in person} == person
        found = await org.client.get(
            "/v1/contacts", params={"email": person["email"]}, headers=org.headers
        )
        assert [c["id"] for c in found.json()["data"]] == [contact_id]
