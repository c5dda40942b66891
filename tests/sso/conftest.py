"""A real OpenID provider for the SSO tests: npm's oidc-provider (provider/server.js) on loopback.

`oidc_provider` (session fixture) runs one provider for the whole run with two clients,
"crm-service" (redirect_uri http://testserver/v1/auth/sso/callback) and "other-app". A test
that needs a second, independent provider (other port, other signing keys) or short-lived ID
tokens uses `async with start_provider(clients, id_token_ttl=5) as other: ...`.

No human is involved: the provider logs in the subject named by `login_hint` and grants the
requested scopes, so `authorize(http, url)` turns an authorization request URL into the final
redirect to the client's redirect_uri (`...?code=...&state=...&iss=...`).

Without node/npm, or when `npm ci` fails, the tests are skipped locally and fail in CI
(CRM_TEST_REQUIRE_SERVICES=1), through `service_missing`.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import pytest

from tests.conftest import service_missing

PROVIDER_DIR = Path(__file__).parent / "provider"
WHAT = "OpenID provider (node oidc-provider)"
CRM_CLIENT_ID = "crm-service"
CRM_REDIRECT_URI = "http://testserver/v1/auth/sso/callback"
OTHER_CLIENT_ID = "other-app"
OTHER_REDIRECT_URI = "http://other.example/callback"
SCOPE = "openid email profile"
DEFAULT_ID_TOKEN_TTL = 3600
INSTALL_TIMEOUT = 300  # seconds for `npm ci`
READY_TIMEOUT = 20  # seconds for the provider to print READY

_node_ready: tuple[str | None, str] | None = None  # (node path or None, reason), once per run


def _prepare_node() -> tuple[str | None, str]:
    """Find node and npm and install provider/node_modules if needed: (node, "") or (None, why)."""
    global _node_ready
    if _node_ready is None:
        _node_ready = _install()
    return _node_ready


def _install() -> tuple[str | None, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, "node and npm must be on PATH (Debian packages nodejs and npm)"
    # Parallel test workers (pytest -n) share the provider directory: one installs, the
    # others wait for it and find node_modules in place.
    directory = os.open(PROVIDER_DIR, os.O_RDONLY)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        return _npm_ci(node, npm)
    finally:
        os.close(directory)


def _npm_ci(node: str, npm: str) -> tuple[str | None, str]:
    package = json.loads((PROVIDER_DIR / "package.json").read_text())
    wanted = package["dependencies"]["oidc-provider"]
    installed = PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"
    if installed.exists() and json.loads(installed.read_text())["version"] == wanted:
        return node, ""
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=PROVIDER_DIR,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"npm ci failed: {type(exc).__name__}"
    if done.returncode != 0:
        return None, f"npm ci exited {done.returncode}: {done.stderr.strip()[-300:]}"
    return node, ""


@dataclass
class OIDCProvider:
    """A running provider: issuer http://127.0.0.1:<port>, clients as client_id -> secret."""

    issuer: str
    port: int
    clients: dict[str, str]
    redirect_uris: dict[str, list[str]]
    id_token_ttl: int
    metadata: dict[str, Any] = field(repr=False)  # the discovery document
    process: asyncio.subprocess.Process = field(repr=False)
    log_path: Path = field(repr=False)

    @property
    def authorization_endpoint(self) -> str:
        return str(self.metadata["authorization_endpoint"])

    @property
    def token_endpoint(self) -> str:
        return str(self.metadata["token_endpoint"])

    def log(self) -> str:
        """What the node process printed (stdout and stderr), for failure messages."""
        return self.log_path.read_text(errors="replace")

    def auth_request(
        self,
        client_id: str = CRM_CLIENT_ID,
        *,
        login_hint: str | None,
        pkce: bool = True,
        **extra: str,
    ) -> AuthRequest:
        """A fresh authorization-code request (new state, nonce and PKCE verifier) for client_id."""
        request = AuthRequest(
            redirect_uri=self.redirect_uris[client_id][0],
            state=secrets.token_urlsafe(16),
            nonce=secrets.token_urlsafe(16),
            code_verifier=secrets.token_urlsafe(48) if pkce else None,
        )
        params = {
            "client_id": client_id,
            "response_type": "code",
            "scope": SCOPE,
            "redirect_uri": request.redirect_uri,
            "state": request.state,
            "nonce": request.nonce,
        }
        if request.code_verifier:
            params["code_challenge"] = s256(request.code_verifier)
            params["code_challenge_method"] = "S256"
        if login_hint is not None:
            params["login_hint"] = login_hint
        request.url = f"{self.authorization_endpoint}?{urlencode(params | extra)}"
        return request


@dataclass
class AuthRequest:
    """An authorization request URL and the secrets its client keeps to finish it."""

    redirect_uri: str
    state: str
    nonce: str
    code_verifier: str | None
    url: str = ""


def s256(verifier: str) -> str:
    """The PKCE S256 code_challenge of a code_verifier."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def jwt_payload(token: str) -> dict[str, Any]:
    """The claims of a JWT, NOT verified (for looking at what a provider issued)."""
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


class AuthorizeError(AssertionError):
    """The provider answered an authorization hop with something other than a redirect."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.status_code} from {response.url}: {response.text[:500]}")
        self.response = response


async def authorize(client: httpx.AsyncClient, authorize_url: str, *, max_hops: int = 10) -> str:
    """Follow an authorization request through the provider, as a browser would.

    `client` is a real-network httpx.AsyncClient (it keeps the provider's cookies);
    `authorize_url` is the full request (client_id, redirect_uri, state, nonce,
    code_challenge, login_hint). Returns the first redirect that leaves the provider: the
    client's redirect_uri with ?code=...&state=... (or ?error=... if the provider refused).
    Raises AuthorizeError if a hop is not a redirect (e.g. 400 without login_hint).
    """
    origin = urlsplit(authorize_url)[:2]
    response = await client.get(authorize_url, follow_redirects=False)
    for _ in range(max_hops):
        if response.is_redirect:
            url = urljoin(str(response.url), response.headers["location"])
            if urlsplit(url)[:2] != origin:
                return url
            response = await client.get(url, follow_redirects=False)
        elif (form := _auto_submit_form(response)) is not None:
            # A page that posts itself on load, as a browser would run it: oidc-provider
            # ends the old session this way when login_hint names another account.
            action, fields = form
            if urlsplit(action)[:2] != origin:
                raise AuthorizeError(response)  # e.g. response_mode=form_post: not followed
            response = await client.post(action, data=fields, follow_redirects=False)
        else:
            raise AuthorizeError(response)
    raise AssertionError(f"more than {max_hops} hops inside the provider, last {response.url}")


def _auto_submit_form(response: httpx.Response) -> tuple[str, dict[str, str]] | None:
    """The action and hidden fields of a self-submitting POST form page, if that is what it is."""
    if response.status_code != 200 or "forms[0].submit()" not in response.text:
        return None
    action = re.search(r'<form method="post" action="([^"]+)"', response.text)
    if action is None:
        return None
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.text)
    unescape = html.unescape
    return unescape(action[1]), {unescape(name): unescape(value) for name, value in fields}


@asynccontextmanager
async def start_provider(
    clients: Sequence[dict[str, Any]], id_token_ttl: int | None = None
) -> AsyncIterator[OIDCProvider]:
    """Run a provider of its own (own port, own signing key) for the `async with` block.

    clients: [{"client_id", "client_secret" (random if left out), "redirect_uris"}].
    """
    node, reason = await asyncio.to_thread(_prepare_node)  # may run `npm ci`
    if node is None:
        service_missing(WHAT, reason)
    clients = [
        {**c, "client_secret": c.get("client_secret") or secrets.token_urlsafe(24)} for c in clients
    ]
    ttl = id_token_ttl or DEFAULT_ID_TOKEN_TTL
    log_dir = Path(tempfile.mkdtemp(prefix="oidc-provider-"))
    log_path = log_dir / "provider.log"
    env = os.environ | {"PORT": "0", "CLIENTS": json.dumps(clients), "ID_TOKEN_TTL": str(ttl)}
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            node, "server.js", cwd=PROVIDER_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        issuer = await _wait_ready(process, log_path)
        async with httpx.AsyncClient(timeout=10) as http:
            discovery = await http.get(f"{issuer}/.well-known/openid-configuration")
            metadata = discovery.raise_for_status().json()
        yield OIDCProvider(
            issuer=issuer,
            port=urlsplit(issuer).port or 0,
            clients={c["client_id"]: c["client_secret"] for c in clients},
            redirect_uris={c["client_id"]: list(c["redirect_uris"]) for c in clients},
            id_token_ttl=ttl,
            metadata=metadata,
            process=process,
            log_path=log_path,
        )
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(log_dir, ignore_errors=True)


async def _wait_ready(process: asyncio.subprocess.Process, log_path: Path) -> str:
    """The issuer from the provider's `READY <issuer>` line, waiting at most READY_TIMEOUT."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return line.split(" ", 1)[1].strip()
        if process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    state = "exited" if process.returncode is not None else f"not READY after {READY_TIMEOUT}s"
    raise RuntimeError(f"OpenID provider {state}:\n{log_path.read_text(errors='replace')[-2000:]}")


def default_clients() -> list[dict[str, Any]]:
    """crm-service and a second, unrelated client (start_provider gives each a random secret)."""
    return [
        {"client_id": CRM_CLIENT_ID, "redirect_uris": [CRM_REDIRECT_URI]},
        {"client_id": OTHER_CLIENT_ID, "redirect_uris": [OTHER_REDIRECT_URI]},
    ]


@pytest.fixture(scope="session")
async def oidc_provider() -> AsyncIterator[OIDCProvider]:
    """One provider for the whole run (ID tokens live DEFAULT_ID_TOKEN_TTL seconds)."""
    async with start_provider(default_clients()) as provider:
        yield provider
