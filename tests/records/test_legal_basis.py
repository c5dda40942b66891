"""Legal basis of processing on leads and contacts: set on create, changed with PUT, the full
history kept newest first, and legitimate interests only with an assessment."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Org, assert_problem, count_rows, error_fields

PERSON_MODULES = ["leads", "contacts"]
ASSESSMENT = "We keep supplier contacts to fulfil orders; balancing test done on 2026-01-05."


async def create_person(org: Org, module: str, **fields: Any) -> dict[str, Any]:
    response = await org.client.post(
        f"/v1/{module}", json={"last_name": "Lovelace", **fields}, headers=org.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def get_record(org: Org, module: str, record_id: str) -> dict[str, Any]:
    response = await org.client.get(f"/v1/{module}/{record_id}", headers=org.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def put_basis(org: Org, module: str, record_id: str, body: dict[str, Any]) -> httpx.Response:
    return await org.client.put(
        f"/v1/{module}/{record_id}/legal-basis", json=body, headers=org.headers
    )


async def get_history(org: Org, module: str, record_id: str) -> dict[str, Any]:
    response = await org.client.get(f"/v1/{module}/{record_id}/legal-basis", headers=org.headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_create_with_consent_sets_the_current_basis(org: Org, module: str) -> None:
    record = await create_person(org, module, legal_basis={"basis": "consent"})

    assert record["legal_basis"]["basis"] == "consent"
    assert record["legal_basis"]["set_by_id"] == str(org.admin_id)
    assert record["legal_basis"]["set_at"]
    history = await get_history(org, module, record["id"])
    assert history["current"]["basis"] == "consent"
    assert history["current"]["set_by_id"] == str(org.admin_id)
    assert history["current"]["assessment"] is None
    assert [entry["basis"] for entry in history["history"]] == ["consent"]
    assert history["history"][0] == history["current"]


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_record_without_basis_has_empty_history(org: Org, module: str) -> None:
    record = await create_person(org, module)

    assert record["legal_basis"] is None
    assert await get_history(org, module, record["id"]) == {"current": None, "history": []}


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_put_changes_the_basis_and_keeps_the_old_one(org: Org, module: str) -> None:
    record = await create_person(org, module, legal_basis={"basis": "consent"})

    first = await put_basis(org, module, record["id"], {"basis": "contract"})
    second = await put_basis(org, module, record["id"], {"basis": "legal_obligation"})

    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert second.json()["basis"] == "legal_obligation"
    assert second.json()["set_by_id"] == str(org.admin_id)
    history = await get_history(org, module, record["id"])
    assert history["current"] == second.json()
    assert [entry["basis"] for entry in history["history"]] == [
        "legal_obligation",
        "contract",
        "consent",
    ]
    assert history["history"][1] == first.json()
    set_times = [entry["set_at"] for entry in history["history"]]
    assert set_times == sorted(set_times, reverse=True)
    assert len({entry["id"] for entry in history["history"]}) == 3

    current = await get_record(org, module, record["id"])
    assert current["legal_basis"] == {
        "basis": "legal_obligation",
        "set_at": current["legal_basis"]["set_at"],
        "set_by_id": str(org.admin_id),
    }
    assert current["legal_basis"]["set_at"] == history["current"]["set_at"]


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_changing_the_basis_changes_the_etag(org: Org, module: str) -> None:
    record = await create_person(org, module, legal_basis={"basis": "consent"})

    changed = await put_basis(org, module, record["id"], {"basis": "contract"})
    assert changed.status_code == 200, changed.text

    stale = await org.client.patch(
        f"/v1/{module}/{record['id']}",
        json={"title": "CTO"},
        headers={**org.headers, "If-Match": record["etag"]},
    )
    assert_problem(stale, 412)
    assert (await get_record(org, module, record["id"]))["etag"] != record["etag"]


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_a_user_sets_the_basis_in_their_own_name(org: Org, module: str) -> None:
    colleague_headers = await org.add_user()
    colleague = (await org.client.get("/v1/me", headers=colleague_headers)).json()["id"]
    # Everyone may edit everyone's records here, so the colleague can change the admin's.
    sharing = {"leads": "read_write", "contacts": "read_write", "accounts": "read_write"}
    shared = await org.client.put("/v1/settings/sharing", json=sharing, headers=org.headers)
    assert shared.status_code == 200, shared.text
    record = await create_person(org, module, legal_basis={"basis": "consent"})

    response = await org.client.put(
        f"/v1/{module}/{record['id']}/legal-basis",
        json={"basis": "contract"},
        headers=colleague_headers,
    )

    assert response.status_code == 200, response.text
    history = await get_history(org, module, record["id"])
    assert [entry["set_by_id"] for entry in history["history"]] == [colleague, str(org.admin_id)]
    assert (await get_record(org, module, record["id"]))["legal_basis"]["set_by_id"] == colleague


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_legitimate_interests_without_assessment_is_refused(org: Org, module: str) -> None:
    record = await create_person(org, module, legal_basis={"basis": "consent"})
    before = await get_history(org, module, record["id"])

    missing = await put_basis(org, module, record["id"], {"basis": "legitimate_interests"})
    blank = await put_basis(
        org, module, record["id"], {"basis": "legitimate_interests", "assessment": "   "}
    )

    assert_problem(missing, 422)
    assert_problem(blank, 422)
    assert await get_history(org, module, record["id"]) == before
    assert await get_record(org, module, record["id"]) == record


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_create_with_legitimate_interests_without_assessment_creates_nothing(
    org: Org, module: str
) -> None:
    response = await org.client.post(
        f"/v1/{module}",
        json={"last_name": "Lovelace", "legal_basis": {"basis": "legitimate_interests"}},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert any(field.startswith("body.legal_basis") for field in error_fields(body))
    assert await count_rows(org.app, module, org.id) == 0
    assert await count_rows(org.app, "legal_basis_entries", org.id) == 0


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_legitimate_interests_with_assessment_is_stored(org: Org, module: str) -> None:
    record = await create_person(org, module)

    response = await put_basis(
        org, module, record["id"], {"basis": "legitimate_interests", "assessment": ASSESSMENT}
    )

    assert response.status_code == 200, response.text
    assert response.json()["assessment"] == ASSESSMENT
    history = await get_history(org, module, record["id"])
    assert history["current"]["basis"] == "legitimate_interests"
    assert history["current"]["assessment"] == ASSESSMENT
    assert (await get_record(org, module, record["id"]))["legal_basis"]["basis"] == (
        "legitimate_interests"
    )


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_create_with_legitimate_interests_and_assessment(org: Org, module: str) -> None:
    record = await create_person(
        org, module, legal_basis={"basis": "legitimate_interests", "assessment": ASSESSMENT}
    )

    assert record["legal_basis"]["basis"] == "legitimate_interests"
    history = await get_history(org, module, record["id"])
    assert history["current"]["assessment"] == ASSESSMENT


@pytest.mark.parametrize("module", PERSON_MODULES)
@pytest.mark.parametrize(
    "body",
    [{"basis": "because"}, {}, {"basis": "consent", "note": "extra"}],
    ids=["unknown-basis", "no-basis", "unknown-field"],
)
async def test_invalid_basis_is_refused_and_changes_nothing(
    org: Org, module: str, body: dict[str, Any]
) -> None:
    record = await create_person(org, module, legal_basis={"basis": "consent"})

    response = await put_basis(org, module, record["id"], body)

    assert_problem(response, 422)
    history = await get_history(org, module, record["id"])
    assert [entry["basis"] for entry in history["history"]] == ["consent"]


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_patch_cannot_set_the_basis_around_the_history(org: Org, module: str) -> None:
    record = await create_person(org, module, legal_basis={"basis": "consent"})

    response = await org.client.patch(
        f"/v1/{module}/{record['id']}",
        json={"legal_basis": {"basis": "contract"}},
        headers=org.headers,
    )

    body = assert_problem(response, 422)
    assert "body.legal_basis" in error_fields(body)
    assert await get_record(org, module, record["id"]) == record
    assert len((await get_history(org, module, record["id"]))["history"]) == 1


@pytest.mark.parametrize("module", PERSON_MODULES)
async def test_legal_basis_of_unknown_or_foreign_record_is_404(
    org: Org, other_org: Org, module: str
) -> None:
    record = await create_person(org, module, legal_basis={"basis": "consent"})
    missing = str(uuid.uuid4())

    assert_problem(
        await org.client.get(f"/v1/{module}/{missing}/legal-basis", headers=org.headers), 404
    )
    assert_problem(await put_basis(org, module, missing, {"basis": "consent"}), 404)
    assert_problem(
        await other_org.client.get(
            f"/v1/{module}/{record['id']}/legal-basis", headers=other_org.headers
        ),
        404,
    )
    assert_problem(await put_basis(other_org, module, record["id"], {"basis": "contract"}), 404)
    history = await get_history(org, module, record["id"])
    assert [entry["basis"] for entry in history["history"]] == ["consent"]


async def test_histories_are_per_record(org: Org) -> None:
    first = await create_person(org, "contacts", legal_basis={"basis": "consent"})
    second = await create_person(org, "contacts", legal_basis={"basis": "contract"})
    lead = await create_person(org, "leads", legal_basis={"basis": "vital_interests"})

    changed = await put_basis(org, "contacts", first["id"], {"basis": "public_task"})
    assert changed.status_code == 200, changed.text

    assert [e["basis"] for e in (await get_history(org, "contacts", first["id"]))["history"]] == [
        "public_task",
        "consent",
    ]
    assert [e["basis"] for e in (await get_history(org, "contacts", second["id"]))["history"]] == [
        "contract"
    ]
    assert [e["basis"] for e in (await get_history(org, "leads", lead["id"]))["history"]] == [
        "vital_interests"
    ]


async def test_accounts_have_no_legal_basis(org: Org) -> None:
    account = await org.client.post("/v1/accounts", json={"name": "Acme"}, headers=org.headers)
    assert account.status_code == 201, account.text

    response = await org.client.get(
        f"/v1/accounts/{account.json()['id']}/legal-basis", headers=org.headers
    )

    assert_problem(response, 404)
    assert "legal_basis" not in account.json()
