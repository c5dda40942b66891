"""Partner access helpers: a client registered through the API, its token, Basic credentials."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import Org

EVERY_RECORD_SCOPE = [
    f"crm.{module}.{operation}"
    for module in ("leads", "contacts", "accounts")
    for operation in ("read", "write", "delete")
]


@dataclass
class Partner:
    client_id: str
    client_secret: str
    body: dict[str, Any]

    @property
    def basic(self) -> dict[str, str]:
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def register(org: Org, **body: Any) -> Partner:
    body.setdefault("name", "Marketing tool")
    body.setdefault("scopes", EVERY_RECORD_SCOPE)
    response = await org.client.post("/v1/oauth-clients", json=body, headers=org.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    return Partner(created["client_id"], created["client_secret"], created)


async def token(
    http: httpx.AsyncClient, partner: Partner, scope: str | None = None
) -> dict[str, str]:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    response = await http.post("/oauth/token", data=form, headers=partner.basic)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


# -- a small reader of the structured fields (RFC 9651) the RateLimit headers use ----------

_MEMBER = re.compile(r'\s*"(?P<name>[^"\\]*)"(?P<params>(?:;[a-z*][a-z0-9_.*-]*(?:=[^;,]+)?)*)\s*')


def parse_list(value: str) -> dict[str, dict[str, Any]]:
    """An sf-list of string items with parameters, as {item: {param: value}}; integers and
    strings decoded. Raises AssertionError on anything else."""
    members: dict[str, dict[str, Any]] = {}
    for text in value.split(","):
        match = _MEMBER.fullmatch(text)
        assert match is not None, f"not a structured-field member: {text!r}"
        params: dict[str, Any] = {}
        for part in match["params"].split(";")[1:]:
            key, _, raw = part.partition("=")
            if raw.startswith('"'):
                assert raw.endswith('"') and len(raw) >= 2, raw
                params[key] = raw[1:-1]
            else:
                assert re.fullmatch(r"-?[0-9]{1,15}", raw), f"not an sf-integer: {raw!r}"
                params[key] = int(raw)
        members[match["name"]] = params
    return members
