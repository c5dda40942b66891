"""Errors a client and an operator can act on: a database outage is a 503 to retry, never a
500, and every 401 says what to send."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.conftest import PASSWORD, Org, assert_problem
from tests.test_health import _client_for


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_login_while_the_database_is_down_is_a_503_problem(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/crm"
    async with _client_for(url) as client:
        login = await client.post(
            "/v1/auth/login", json={"email": "admin@example.com", "password": PASSWORD}
        )
        me = await client.get("/v1/me", headers={"Authorization": "Bearer crm_at_x"})

    for response in (login, me):
        body = assert_problem(response, 503)
        assert body["detail"] == "The database is unavailable; try again shortly."
        assert response.headers["Retry-After"] == "5"
    # The operator's log says why; the client's answer does not.
    assert "connection refused" in capsys.readouterr().err
    assert "connection refused" not in login.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer crm_at_" + "0" * 43},
    ],
)
async def test_every_401_says_what_is_wrong(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = assert_problem(await client.get("/v1/me", headers=headers), 401)

    assert body["detail"]


async def test_a_wrong_password_401_has_a_detail(org: Org) -> None:
    response = await org.client.post(
        "/v1/auth/login", json={"email": org.admin_email, "password": "wrong " + PASSWORD}
    )

    assert assert_problem(response, 401)["detail"] == "The email or password is wrong."
