"""The master-key file an operator writes: `keys init`, and the format the README documents."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from crm_service.config import Settings
from crm_service.crypto.master import key_provider_from_settings
from tests.test_cli import PASSWORD, bootstrap, run

README = Path(__file__).resolve().parents[2] / "README.md"


def test_keys_init_writes_a_private_keyring_the_service_uses(tmp_path: Path) -> None:
    keyring = tmp_path / "master.keys"

    written = run(tmp_path, "keys", "init", "--file", str(keyring))

    assert written.returncode == 0, written.stderr
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    key_id = re.search(r"master key (mk-[0-9a-f]{16})", written.stderr)
    assert key_id is not None, written.stderr
    created = bootstrap(tmp_path, CRM_MASTER_KEY_FILE=str(keyring), CRM_BOOTSTRAP_PASSWORD=PASSWORD)
    assert created.returncode == 0, created.stderr
    status = run(tmp_path, "keys", "status", CRM_MASTER_KEY_FILE=str(keyring))
    assert json.loads(status.stdout)["active_master_key"] == key_id[1]
    assert not (tmp_path / "var" / "master.key").exists()  # nothing generated beside it


def test_keys_init_never_overwrites_a_keyring(tmp_path: Path) -> None:
    keyring = tmp_path / "master.keys"
    assert run(tmp_path, "keys", "init", "--file", str(keyring)).returncode == 0
    before = keyring.read_bytes()

    again = run(tmp_path, "keys", "init", "--file", str(keyring))

    assert again.returncode == 1
    assert "Traceback" not in again.stderr
    assert f"{keyring} already exists; nothing was written" in again.stderr
    assert keyring.read_bytes() == before


def test_the_format_the_readme_documents_is_accepted(tmp_path: Path) -> None:
    section = README.read_text().split("### The master-key file", 1)[1]
    example = section.split("```text\n", 1)[1].split("```", 1)[0]
    keyring = tmp_path / "example.keys"
    keyring.write_text(example)

    provider = key_provider_from_settings(Settings(master_key_file=keyring))

    documented_id = next(
        line.split()[0] for line in example.splitlines() if line and not line.startswith("#")
    )
    assert provider.active_key_id == documented_id
