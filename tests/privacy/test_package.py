"""Access and portability packages: everything held on a data subject, disclosed through the
one disclosure policy. The subject's own package holds every value; a privacy officer
without `view_sensitive` sees masks; a partner's token is withheld what the compliance
settings withhold on the api channel; the CSV zip has one file per kind with formulas
neutralised; another organization's subject does not exist."""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest

from crm_service.privacy.package import KINDS, build_package, render
from crm_service.privacy.package_schemas import PackageDocument
from tests.access.conftest import add_member, audit_events, create_profile
from tests.conftest import Org, assert_problem
from tests.oauth.conftest import register, token
from tests.privacy.package_scene import Scene, make_scene, package_of


async def own_package(org: Org, scene: Scene) -> Any:
    async with org.app.state.sessionmaker() as session:
        return await build_package(
            session, org.id, [uuid.UUID(scene.subject_id)], principal=None, now=datetime.now(UTC)
        )


def records_by_module(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (subject,) = document["subjects"]
    return {record["module"]: record for record in subject["records"]}


async def test_the_subjects_own_package_holds_every_value(org: Org) -> None:
    scene = await make_scene(org)
    person = scene.person
    package = await own_package(org, scene)
    document = json.loads(render(package, "json").body)
    PackageDocument.model_validate(document)  # the document is what the OpenAPI says

    assert document["package"]["channel"] is None and document["package"]["complete"] is True
    assert document["package"]["not_included"] == ["privacy_requests"]
    (subject,) = document["subjects"]
    assert subject["subject_id"] == scene.subject_id and subject["erased"] is False
    records = records_by_module(document)
    assert records["leads"]["id"] == scene.lead_id and records["leads"]["status"] == "converted"
    assert records["contacts"]["id"] == scene.contact_id
    for record in records.values():
        assert record["fields"]["first_name"] == person.first_name
        assert record["fields"]["email"] == person.email
        assert record["fields"]["national_id"] == person.national_id
        assert record["fields"]["description"] == person.description
        assert record["masked_fields"] == [] and record["withheld_fields"] == []
    # Where each came from; every legal-basis setting; the changes with their old values.
    sources = {source["module"]: source for source in subject["data_sources"]}
    assert sources["leads"]["channel"] == "manual"
    bases = {(entry["module"], entry["basis"]) for entry in subject["legal_basis"]}
    assert bases == {("leads", "legitimate_interests"), ("contacts", "legitimate_interests")}
    assert all(entry["assessment"] == person.assessment for entry in subject["legal_basis"])
    email_changes = [
        entry["changes"]["email"]
        for entry in subject["history"]
        if entry["changes"] and "email" in entry["changes"]
    ]
    assert {"old": person.former_email, "new": person.email} in email_changes
    national_ids = [
        entry["changes"]["national_id"]["new"]
        for entry in subject["history"]
        if entry["changes"] and "national_id" in entry["changes"]
    ]
    assert person.national_id in national_ids
    # Consent events with their evidence opened.
    (event,) = subject["consent_events"]
    assert event["purpose"] == scene.purpose and event["status"] == "granted"
    assert event["evidence"]["note"] == person.consent_note
    assert subject["consent_requests"] == []


async def test_a_privacy_officer_without_view_sensitive_sees_masks(org: Org) -> None:
    scene = await make_scene(org)
    person = scene.person
    profile = await create_profile(
        org, {"leads": ["read"], "contacts": ["read"]}, rights=["manage_privacy"]
    )
    officer = await add_member(org, profile_id=profile)

    response = await package_of(org, scene.subject_id, officer.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert "attachment" in response.headers["content-disposition"]
    document = response.json()
    PackageDocument.model_validate(document)
    assert document["package"]["channel"] == "screen"
    assert document["package"]["complete"] is False
    for record in records_by_module(document).values():
        assert record["fields"]["national_id"] is None
        assert record["masked_fields"] == ["national_id"]
        assert record["fields"]["email"] == person.email  # personal values are shown
    assert person.national_id not in response.text  # not in the history either
    assert person.email in response.text
    # Nothing sensitive was shown: no reveal; the download itself is audited, without values.
    events = await audit_events(org, actor_id=officer.id)
    assert [e for e in events if e["action"] == "record.sensitive_revealed"] == []
    (disclosed,) = [e for e in events if e["action"] == "privacy.package_disclosed"]
    assert disclosed["target_id"] == scene.subject_id
    assert disclosed["reason"] == "format=json;channel=screen"
    assert person.email not in json.dumps(disclosed)


async def test_the_administrators_reveal_of_sensitive_values_is_audited(org: Org) -> None:
    scene = await make_scene(org)
    response = await package_of(org, scene.subject_id)
    assert response.status_code == 200, response.text
    records = records_by_module(response.json())
    assert records["contacts"]["fields"]["national_id"] == scene.person.national_id
    revealed = [
        e
        for e in await audit_events(org, action="record.sensitive_revealed")
        if e["reason"] == "package"
    ]
    assert {e["target_type"] for e in revealed} == {"lead", "contact"}
    assert all(e["fields"] == ["national_id"] for e in revealed)
    assert scene.person.national_id not in json.dumps(revealed)


async def test_a_partner_token_is_withheld_what_the_api_channel_withholds(org: Org) -> None:
    scene = await make_scene(org)
    person = scene.person
    settings = await org.client.put(
        "/v1/settings/compliance", json={"withhold": {"api": ["personal"]}}, headers=org.headers
    )
    assert settings.status_code == 200, settings.text
    partner = await register(org, scopes=["crm.privacy.read"])
    headers = await token(org.client, partner)

    response = await package_of(org, scene.subject_id, headers)
    assert response.status_code == 200, response.text
    document = response.json()
    PackageDocument.model_validate(document)
    assert document["package"]["channel"] == "api"
    for record in records_by_module(document).values():
        assert "email" not in record["fields"] and "first_name" not in record["fields"]
        assert "email" in record["withheld_fields"]
        # A partner has no profile: the sensitive value it is not withheld is masked.
        assert record["masked_fields"] == ["national_id"]
        assert record["fields"]["national_id"] is None
    for value in (person.email, person.former_email, person.first_name, person.national_id):
        assert value not in response.text
    zipped = await package_of(org, scene.subject_id, headers, fmt="csv")
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        header = archive.read("records_contacts.csv").decode().splitlines()[0].split(",")
        assert "email" not in header and "national_id" in header
        assert person.email not in b"".join(archive.read(n) for n in archive.namelist()).decode()

    # Without the scope, nothing.
    other = await register(org, scopes=["crm.contacts.read"])
    assert_problem(await package_of(org, scene.subject_id, await token(org.client, other)), 403)


async def test_the_csv_zip_has_one_file_per_kind_and_neutralises_formulas(org: Org) -> None:
    scene = await make_scene(org)
    response = await package_of(org, scene.subject_id, fmt="csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].endswith('.zip"')
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert set(archive.namelist()) == {"README.txt", *(kind.filename for kind in KINDS)}
        readme = archive.read("README.txt").decode()
        for kind in KINDS:
            assert kind.filename in readme
        tables = {
            name: list(csv.DictReader(io.StringIO(archive.read(name).decode())))
            for name in archive.namelist()
            if name.endswith(".csv")
        }
    (lead,) = tables["records_leads.csv"]
    (contact,) = tables["records_contacts.csv"]
    assert lead["id"] == scene.lead_id and contact["id"] == scene.contact_id
    for row in (lead, contact):
        assert row["subject_id"] == scene.subject_id
        assert row["email"] == scene.person.email
        assert row["description"] == "'" + scene.person.description  # no formula
    history = tables["history.csv"]
    assert any(
        row["field"] == "email" and row["old"] == scene.person.former_email for row in history
    )
    assert all(not row["new"].startswith("=") for row in history)
    (event,) = tables["consent_events.csv"]
    assert scene.person.consent_note in event["evidence"]
    assert {row["module"] for row in tables["legal_basis.csv"]} == {"leads", "contacts"}
    assert len(tables["data_sources.csv"]) == 2
    events = await audit_events(org, action="privacy.package_disclosed")
    assert events[0]["reason"] == "format=csv;channel=screen"


async def test_who_may_have_a_package(org: Org, other_org: Org) -> None:
    scene = await make_scene(org)
    # A user without manage_privacy, even one who reads every record.
    profile = await create_profile(
        org, {"leads": ["read"], "contacts": ["read"]}, view_sensitive=True
    )
    reader = await add_member(org, profile_id=profile)
    assert_problem(await package_of(org, scene.subject_id, reader.headers), 403)
    # Another organization's subject, and one nobody has: they do not exist.
    assert_problem(await package_of(other_org, scene.subject_id, other_org.headers), 404)
    assert_problem(await package_of(org, str(uuid.uuid4())), 404)
    assert_problem(await package_of(org, scene.subject_id, fmt="xml"), 422)
    assert_problem(await package_of(org, "not-an-id"), 422)
    assert await audit_events(other_org, action="privacy.package_disclosed") == []


@pytest.mark.parametrize("fmt", ["json", "csv"])
async def test_an_erased_subjects_package_says_so_and_holds_no_value(org: Org, fmt: str) -> None:
    scene = await make_scene(org)
    erased = await org.client.post(
        "/v1/privacy/erasures",
        json={"module": "contacts", "record_id": scene.contact_id},
        headers=org.headers,
    )
    assert erased.status_code == 201, erased.text
    response = await package_of(org, scene.subject_id, fmt=fmt)
    assert response.status_code == 200, response.text
    if fmt == "json":
        (subject,) = PackageDocument.model_validate(response.json()).model_dump()["subjects"]
        assert subject["erased"] is True
        assert all(record["erased"] and record["fields"] == {} for record in subject["records"])
        assert subject["consent_events"][0]["evidence_erased"] is True
        text = response.text
    else:
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            text = b"".join(archive.read(name) for name in archive.namelist()).decode()
    for value in [*scene.person.personal_values(), scene.person.assessment]:
        assert value not in text
