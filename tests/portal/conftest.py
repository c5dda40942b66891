"""Helpers of the portal tests: a visitor's browser-like client (its own address, its own
cookie jar), the code read from the mail the outbox holds, and a signed-in visitor."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.access.conftest import create_record
from tests.conftest import Org, unique_email
from tests.consent.conftest import clock, create_purpose, mails  # noqa: F401 - fixtures

_ADDRESSES = itertools.count(10)


def visitor_client(app: Any, address: str | None = None) -> httpx.AsyncClient:
    """A browser of the public from an address of its own, keeping its cookies and asking
    for pages, as a browser does."""
    # IPv6 documentation addresses of their own: other tests look for their IPv4 visitors'
    # addresses in the whole database, which the portal's audit events would hold.
    host = address or f"2001:db8:70:{next(_ADDRESSES):x}::1"
    transport = httpx.ASGITransport(app=app, client=(host, 50002))
    return httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
    )


@pytest.fixture
async def browser(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with visitor_client(app) as http:
        yield http


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert match is not None, f"no hidden {name} on the page"
    return match.group(1)


async def mailed_codes(org: Org, email: str) -> list[str]:
    """The codes mailed to `email`, oldest first."""
    found = []
    for mail in await mails(org.app, org.id, "portal_code"):
        if mail.to == email.casefold():
            match = re.search(r"^(\d{6})$", mail.text, re.MULTILINE)
            assert match is not None, "the mail carries no code"
            found.append(match.group(1))
    return found


async def ask_code(http: httpx.AsyncClient, org_id: Any, email: str) -> httpx.Response:
    return await http.post(f"/portal/{org_id}/code", data={"email": email})


async def enter_code(
    http: httpx.AsyncClient, org_id: Any, page: httpx.Response, email: str, code: str
) -> httpx.Response:
    return await http.post(
        f"/portal/{org_id}/sign-in",
        data={"sign_in": hidden(page.text, "sign_in"), "email": email, "code": code},
    )


async def sign_in(http: httpx.AsyncClient, org: Org, email: str) -> httpx.Response:
    """Sign `http` in as `email` (which has a record); the data page."""
    page = await ask_code(http, org.id, email)
    assert page.status_code == 200, page.text
    code = (await mailed_codes(org, email))[-1]
    signed = await enter_code(http, org.id, page, email, code)
    assert signed.status_code == 303, signed.text
    data = await http.get(f"/portal/{org.id}/data")
    assert data.status_code == 200, data.text
    return data


async def person(org: Org, module: str = "contacts", **fields: Any) -> dict[str, Any]:
    """A lead or contact with an address of its own."""
    fields.setdefault("email", unique_email("subject"))
    return await create_record(org, module, **fields)
