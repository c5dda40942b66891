"""Fuzz the running service from its committed OpenAPI document (the contract gate's second half).

A fresh organization in a throw-away SQLite database, `crm-service serve` on a free loopback
port, then Schemathesis signed in as the organization's administrator, with the checks and
bounds of schemathesis.toml. Exits with Schemathesis's status: non-zero on any failure.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SPEC = ROOT / "openapi" / "openapi.json"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
ADMIN_EMAIL = "fuzz-admin@example.com"
# The service is on this machine: no proxy from the environment stands in between.
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"fuzz: the service exited with {server.returncode} before answering")
        try:
            with LOOPBACK.open(f"{base_url}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    sys.exit("fuzz: the service did not answer /healthz within 60 s")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="crm-fuzz-") as workdir:
        password = secrets.token_urlsafe(18)
        env = {
            **os.environ,
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
            "CRM_ENV": "development",
            "CRM_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/crm.db",
            "CRM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "CRM_BOOTSTRAP_PASSWORD": password,
            "CRM_LOG_LEVEL": "WARNING",
            # The forget-log is sealed under this run's master key: a throw-away one too, not
            # the checkout's (an earlier run's would not open with this key).
            "CRM_BACKUP_DIR": f"{workdir}/backups",
            # The fuzzer signs in with random emails from 127.0.0.1, and signs in again from
            # there: the per-address limit (tests/auth/test_throttle.py) would answer its
            # re-login 429.
            "CRM_SIGN_IN_ADDRESS_FAILURES": "1000000",
            # The fuzzer's failed sign-ins need not also be slowed down.
            "CRM_SIGN_IN_FAILURE_SECONDS": "0",
            # The fuzzer's one session makes thousands of requests a minute; a signed-in
            # session's burst (tests/oauth/test_rate_limits.py) would answer them 429.
            "CRM_SESSION_RATE_LIMIT_BURST": "1000000",
        }
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        log_path = Path(workdir) / "service.log"
        with open(log_path, "wb") as log:
            bootstrap = subprocess.run(
                [BIN / "crm-service", "bootstrap", "--org-name", "Fuzz"]
                + ["--admin-email", ADMIN_EMAIL],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            if bootstrap.returncode != 0:
                sys.exit(f"fuzz: bootstrap failed:\n{log_path.read_text(errors='replace')}")
            server = subprocess.Popen(
                [BIN / "crm-service", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_until_up(base_url, server)
                result = subprocess.run(
                    [
                        BIN / "st",
                        "--config-file",
                        CONFIG,
                        "run",
                        SPEC,
                        "--url",
                        base_url,
                        *sys.argv[1:],
                    ],
                    env={**env, "CRM_FUZZ_EMAIL": ADMIN_EMAIL, "CRM_FUZZ_PASSWORD": password},
                    # The config names its hooks file relative to itself.
                    cwd=CONFIG.parent,
                )
            finally:
                server.terminate()
                server.wait(timeout=30)
        if result.returncode != 0:
            # The service's own account of the run (request lines and errors, no values).
            tail = log_path.read_text(errors="replace").splitlines()[-40:]
            print("fuzz: last lines of the service's log:", *tail, sep="\n", file=sys.stderr)
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
