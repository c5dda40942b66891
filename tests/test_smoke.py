"""The first thing a newcomer does: sign in, create a contact, find it in the list."""

from tests.conftest import Org


async def test_create_and_list_contact(org: Org) -> None:
    created = await org.client.post(
        "/v1/contacts",
        json={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
        headers=org.headers,
    )
    assert created.status_code == 201, created.text
    listed = await org.client.get("/v1/contacts", headers=org.headers)
    assert [c["id"] for c in listed.json()["data"]] == [created.json()["id"]]
