"""Downloading one's data (JSON and a zip of CSV files) and making privacy requests of every
type, corrections included, from the portal, and following them."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import pytest
from sqlalchemy import select

from crm_service.audit.models import AuditEvent
from tests.conftest import Org
from tests.portal.conftest import hidden, person, sign_in

TYPES = ("access", "portability", "restriction", "erasure", "objection")


async def test_the_person_downloads_their_data_as_json_and_as_csv(
    org: Org, browser: httpx.AsyncClient
) -> None:
    contact = await person(org, last_name="Hopper", national_id="ZX 998877")
    await person(org, last_name="Stranger")
    await sign_in(browser, org, contact["email"])
    as_json = await browser.get(f"/portal/{org.id}/download?format=json")
    assert as_json.status_code == 200
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.headers["content-disposition"].startswith("attachment; filename=")
    text = json.dumps(as_json.json())
    assert "Hopper" in text and "ZX 998877" in text and "Stranger" not in text

    as_csv = await browser.get(f"/portal/{org.id}/download?format=csv")
    assert as_csv.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(as_csv.content)) as archive:
        everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"Hopper" in everything and b"Stranger" not in everything
    assert (await browser.get(f"/portal/{org.id}/download?format=xml")).status_code == 422

    async with org.app.state.sessionmaker() as session:
        reasons = (
            await session.execute(
                select(AuditEvent.reason).where(
                    AuditEvent.organization_id == org.id,
                    AuditEvent.action == "portal.data_downloaded",
                )
            )
        ).scalars()
        assert sorted(reasons) == ["format=csv", "format=json"]

    async with httpx.AsyncClient(
        transport=browser._transport,
        base_url="http://testserver",  # noqa: SLF001
    ) as anonymous:
        refused = await anonymous.get(f"/portal/{org.id}/download?format=json")
        assert refused.status_code == 303


@pytest.mark.parametrize("kind", TYPES)
async def test_every_type_of_request_is_filed_and_followed(
    org: Org, browser: httpx.AsyncClient, kind: str
) -> None:
    contact = await person(org)
    await sign_in(browser, org, contact["email"])
    page = await browser.get(f"/portal/{org.id}/requests")
    filed = await browser.post(
        f"/portal/{org.id}/requests",
        data={"csrf": hidden(page.text, "csrf"), "type": kind, "details": "Please."},
    )
    assert filed.status_code == 303
    followed = await browser.get(filed.headers["location"])
    assert "Your request has been received." in followed.text
    assert "In progress" in followed.text
    staff = await org.client.get("/v1/privacy/requests", headers=org.headers)
    assert staff.status_code == 200, staff.text
    [request] = staff.json()["data"]
    assert (request["type"], request["status"]) == (kind, "in_progress")
    assert request["due_at"][:10] in followed.text


async def test_a_correction_carries_the_fields_changed(
    org: Org, browser: httpx.AsyncClient
) -> None:
    contact = await person(org, first_name="Ada", last_name="Lovelace")
    await sign_in(browser, org, contact["email"])
    page = await browser.get(f"/portal/{org.id}/requests")
    prefix = f"field.contacts.{contact['id']}."
    assert f'name="{prefix}last_name" type="text" value="Lovelace"' in page.text
    form = {
        "csrf": hidden(page.text, "csrf"),
        "type": "rectification",
        f"{prefix}first_name": "Ada",
        f"{prefix}last_name": "King",
        "details": "",
    }
    filed = await browser.post(f"/portal/{org.id}/requests", data=form)
    assert filed.status_code == 303
    staff = await org.client.get("/v1/privacy/requests", headers=org.headers)
    [request] = staff.json()["data"]
    assert request["type"] == "rectification"
    shown = await org.client.get(f"/v1/privacy/requests/{request['id']}", headers=org.headers)
    assert shown.json()["corrections"] == [
        {"module": "contacts", "record_id": contact["id"], "fields": {"last_name": "King"}}
    ]

    # Nothing changed and nothing said: no request, a clear 422.
    unchanged = {**form, f"{prefix}last_name": "Lovelace"}
    refused = await browser.post(
        f"/portal/{org.id}/requests", data=unchanged, headers={"Accept": "application/json"}
    )
    assert refused.status_code == 422
    # Another person's record cannot be corrected through this session.
    other = await person(org)
    foreign = {
        "csrf": form["csrf"],
        "type": "rectification",
        f"field.contacts.{other['id']}.last_name": "Mine",
    }
    refused = await browser.post(
        f"/portal/{org.id}/requests", data=foreign, headers={"Accept": "application/json"}
    )
    assert refused.status_code == 422
    assert (
        len((await org.client.get("/v1/privacy/requests", headers=org.headers)).json()["data"]) == 1
    )
