"""Rule 4: personal data never enters the audit log. Events name records by id and fields by
name, so a dump of the audit tables shows none of a data subject's values, whatever was
written, changed, converted or mistyped at sign-in.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from typing import Any

from sqlalchemy import text

from crm_service.db.base import Base
from tests.conftest import PASSWORD, Org, create_user


def person(tag: str) -> dict[str, Any]:
    """Every writable person field, each value unmistakable (and never only hex digits)."""
    digits = f"{int(tag[:6], 16) % 10_000_000:07d}"
    return {
        "first_name": f"Zyrafirst{tag}",
        "last_name": f"Quokkalast{tag}",
        "email": f"Wombat.Mail{tag}@Example.org",
        "phone": f"+44 20 7{digits[:3]} {digits[3:]}",
        "mobile": f"+44 7700 9{digits[:2]}{digits[4:7]}",
        "title": f"Chief Yodeller {tag}",
        "date_of_birth": "1815-12-10",
        "mailing_street": f"{int(tag[:2], 16)} Xylophone Lane {tag}",
        "mailing_city": f"Quixville{tag}",
        "mailing_state": f"Yonderstate{tag}",
        "mailing_postal_code": f"ZQ{tag[:4].upper()}",
        "mailing_country": f"Wakanda{tag}",
        "description": f"Met at the Vexillology fair {tag}; likes kumquats",
        "national_id": f"NIX{tag.upper()}Q",
    }


def e164(phone: str) -> str:
    return re.sub(r"[^+0-9]", "", phone)


def values_of(payload: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for value in payload.values():
        if isinstance(value, dict):
            found |= values_of(value)
        elif isinstance(value, str):
            found.add(value)
            if value.startswith("+"):
                found.add(e164(value))
    return found


async def write(
    org: Org, method: str, path: str, body: dict[str, Any], expected: int
) -> dict[str, Any]:
    response = await org.client.request(method, path, json=body, headers=org.headers)
    assert response.status_code == expected, response.text
    return response.json()


async def audit_rows(org: Org) -> list[dict[str, Any]]:
    """Every audit event and chain head, straight from the tables."""
    async with org.app.state.engine.connect() as connection:
        rows = []
        for table in ("audit_events", "audit_chains"):
            result = await connection.execute(text(f"SELECT * FROM {table}"))
            rows += [dict(row) for row in result.mappings()]
        return rows


async def test_no_value_written_or_mistyped_appears_in_the_audit_tables(org: Org) -> None:
    secrets_written: set[str] = set()

    contact_values = {
        **person(secrets.token_hex(4)),
        "department": f"Department of Quibbles {secrets.token_hex(2)}x",
        "legal_basis": {
            "basis": "legitimate_interests",
            "assessment": f"Balancing test: Zyra asked for a call {secrets.token_hex(3)}q",
        },
    }
    contact = await write(org, "POST", "/v1/contacts", contact_values, 201)
    changed_contact = {
        **person(secrets.token_hex(4)),
        "department": f"Yak Herding {secrets.token_hex(2)}x",
    }
    changed_contact.pop("date_of_birth")
    await write(org, "PATCH", f"/v1/contacts/{contact['id']}", changed_contact, 200)
    new_basis = {
        "basis": "legitimate_interests",
        "assessment": f"Kept on after Jove review {secrets.token_hex(3)}k",
    }
    await write(org, "PUT", f"/v1/contacts/{contact['id']}/legal-basis", new_basis, 200)
    secrets_written |= values_of(contact_values) | values_of(changed_contact) | values_of(new_basis)

    lead_values = {
        **person(secrets.token_hex(4)),
        "company": f"Zanzibar Widgets {secrets.token_hex(2)}q",
        "website": f"https://quokka-{secrets.token_hex(3)}.example.org",
        "industry": f"Yodel supplies {secrets.token_hex(2)}z",
        "status": "contacted",
    }
    lead = await write(org, "POST", "/v1/leads", lead_values, 201)
    changed_lead = {
        **person(secrets.token_hex(4)),
        "company": f"Xanadu Quilts {secrets.token_hex(2)}q",
    }
    changed_lead.pop("date_of_birth")
    await write(org, "PATCH", f"/v1/leads/{lead['id']}", changed_lead, 200)
    conversion = await write(org, "POST", f"/v1/leads/{lead['id']}/convert", {}, 201)
    assert conversion["account"] is not None  # the company became an account
    secrets_written |= values_of(lead_values) | values_of(changed_lead)
    secrets_written -= {"contacted"}  # a status, not a value about the person

    account_values = {
        "name": f"Quagga Holdings {secrets.token_hex(2)}z",
        "phone": "+44 161 496 0732",
        "billing_street": f"7 Zebra Crossing {secrets.token_hex(2)}q",
        "billing_postal_code": f"ZQ{secrets.token_hex(2)}",
        "description": f"Owns the Yeti franchise {secrets.token_hex(2)}y",
        "tax_id": f"TAXQ{secrets.token_hex(4)}Z",
    }
    account = await write(org, "POST", "/v1/accounts", account_values, 201)
    await write(
        org,
        "PATCH",
        f"/v1/accounts/{account['id']}",
        {"tax_id": "TAXZ" + secrets.token_hex(4)},
        200,
    )
    secrets_written |= values_of(account_values)

    user_email = f"Xavier.Quill{secrets.token_hex(3)}@Example.org"
    user_name = f"Xavier Quill {secrets.token_hex(2)}z"
    accepted = await create_user(
        org,
        {"email": user_email, "password": PASSWORD, "full_name": user_name, "is_admin": False},
    )
    assert accepted.status_code == 201, accepted.text
    user = accepted.json()
    renamed = f"Xavier Q. Quill {secrets.token_hex(2)}z"
    await write(org, "PATCH", f"/v1/users/{user['id']}", {"full_name": renamed}, 200)
    wrong_password = f"hunter2-Zebra-{secrets.token_hex(4)}"
    refused = await org.client.post(
        "/v1/auth/login", json={"email": user_email, "password": wrong_password}
    )
    assert refused.status_code == 401
    secrets_written |= {user_email, user_name, renamed, wrong_password, PASSWORD}

    rows = await audit_rows(org)
    events = [
        row
        for row in rows
        if "action" in row and str(row["organization_id"]).replace("-", "") == org.id.hex
    ]
    actions = {row["action"] for row in events}
    assert {
        "record.created",
        "record.updated",
        "record.converted",
        "user.created",
        "user.updated",
        "auth.login_failed",
    } <= actions
    dump = "\n".join("\t".join(str(value) for value in row.values()) for row in rows)
    # The dump is of this test's events: it names the records, by id.
    for record_id in (contact["id"], lead["id"], account["id"], user["id"]):
        assert record_id in dump or uuid.UUID(record_id).hex in dump
    for value in sorted(secrets_written):
        assert value not in dump, f"the audit log holds a written value: {value!r}"
        assert value.lower() not in dump.lower(), f"the audit log holds a written value: {value!r}"


async def test_the_fields_column_names_fields_only(org: Org) -> None:
    values = person(secrets.token_hex(4))
    contact = await write(org, "POST", "/v1/contacts", values, 201)
    await write(
        org,
        "PATCH",
        f"/v1/contacts/{contact['id']}",
        {"email": "Other.Mail@Example.org", "title": "Zookeeper"},
        200,
    )
    lead = await write(
        org, "POST", "/v1/leads", {**person(secrets.token_hex(4)), "company": "Quux Ltd"}, 201
    )
    await write(org, "POST", f"/v1/leads/{lead['id']}/convert", {}, 201)

    known = {column.name for table in Base.metadata.tables.values() for column in table.columns}
    known |= {"password"}
    by_target: dict[tuple[str, str], list[list[str]]] = {}
    for row in await audit_rows(org):
        if "action" not in row or str(row["organization_id"]).replace("-", "") != org.id.hex:
            continue
        names = json.loads(row["fields"])
        assert isinstance(names, list) and all(isinstance(name, str) for name in names)
        assert set(names) <= known, f"{row['action']}: {names}"
        by_target.setdefault((str(row["target_id"]), row["action"]), []).append(names)

    (created,) = by_target[contact["id"], "record.created"]
    assert set(values) <= set(created)  # every field the caller set, by name
    assert by_target[contact["id"], "record.updated"] == [["email", "title"]]
