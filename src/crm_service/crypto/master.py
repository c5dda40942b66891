"""The key provider: master keys that wrap data keys. A KMS plugs in behind `KeyProvider`.

A local keyring holds one or more 256-bit master keys; the last one wraps new data keys and
the others still unwrap what they wrapped until `crm-service keys rotate --master` has
re-wrapped everything. Master keys come from CRM_MASTER_KEY (one key), CRM_MASTER_KEY_FILE
(a keyring file: one line per key, `<base64 key>` or `<id> <base64 key>` where the id must be
`master_key_id(key)`; `#` comments; the last key active), or, in the embedded development
default only, a keyring generated into ./var/master.key. `crm-service keys init` writes one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crm_service.config import Environment, Settings, SettingsError

logger = structlog.get_logger("crm_service.crypto")

EMBEDDED_KEYRING = Path("var/master.key")
_NONCE_BYTES = 12


class KeyUnwrapError(Exception):
    """A wrapped data key did not authenticate under the named master key."""


class KeyProvider(Protocol):
    """Wraps and unwraps data keys. `context` binds a wrapped key to where it is stored."""

    @property
    def active_key_id(self) -> str: ...

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]: ...

    def unwrap(self, master_key_id: str, wrapped: bytes, context: bytes) -> bytes: ...

    def knows(self, master_key_id: str) -> bool: ...


def master_key_id(key: bytes) -> str:
    """A stable, non-secret name for a master key (a one-way digest of it)."""
    return "mk-" + hashlib.sha256(b"crm-service master key id\x00" + key).hexdigest()[:16]


def decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{source}: not base64") from None
    if len(key) != 32:
        raise SettingsError(f"{source}: a master key is 32 bytes (base64 of 32 random bytes)")
    return key


@dataclass
class LocalKeyring:
    """Master keys held in process memory; the last one is active."""

    keys: dict[str, bytes]
    active: str
    path: Path | None = None  # the keyring file, when rotation may append to it
    loaded_mtime: int | None = None
    # One cipher per master key (its id is a digest of the key, so an id never changes
    # meaning): building one costs more than unwrapping a data key with it.
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, init=False, repr=False)

    def _cipher(self, master_key_id: str) -> AESGCM | None:
        cipher = self._ciphers.get(master_key_id)
        if cipher is None:
            master = self.keys.get(master_key_id)
            if master is None:
                return None
            cipher = self._ciphers[master_key_id] = AESGCM(master)
        return cipher

    def _reload_if_changed(self) -> None:
        """Another process (`keys rotate --master`) may have added a key to the file."""
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return
        if mtime != self.loaded_mtime:
            fresh = _read_keyring_file(self.path)
            self.keys, self.active, self.loaded_mtime = fresh.keys, fresh.active, fresh.loaded_mtime
            self._ciphers = {}  # a key taken out of the file opens nothing from now on

    @property
    def active_key_id(self) -> str:
        return self.active

    def knows(self, master_key_id: str) -> bool:
        return master_key_id in self.keys

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        self._reload_if_changed()
        nonce = os.urandom(_NONCE_BYTES)
        cipher = self._cipher(self.active)
        assert cipher is not None  # the active key is in the keyring
        sealed = cipher.encrypt(nonce, key, context)
        return self.active, nonce + sealed

    def unwrap(self, master_key_id: str, wrapped: bytes, context: bytes) -> bytes:
        if master_key_id not in self.keys:
            self._reload_if_changed()
        cipher = self._cipher(master_key_id)
        if cipher is None:
            raise KeyUnwrapError(f"master key {master_key_id} is not in the keyring")
        try:
            return cipher.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], context)
        except InvalidTag:
            raise KeyUnwrapError("a data key failed authentication") from None

    def add_generated_key(self) -> str:
        """Generate a master key, append it to the keyring file, make it active."""
        if self.path is None:
            raise SettingsError(
                "master key rotation needs a keyring file (CRM_MASTER_KEY_FILE) or a KMS; "
                "CRM_MASTER_KEY holds a single key"
            )
        key = secrets.token_bytes(32)
        key_id = master_key_id(key)
        with self.path.open("a", encoding="ascii") as handle:
            handle.write(f"{key_id} {base64.b64encode(key).decode()}\n")
        self.keys[key_id] = key
        self.active = key_id
        self.loaded_mtime = self.path.stat().st_mtime_ns
        return key_id


def _read_keyring_file(path: Path) -> LocalKeyring:
    source = f"CRM_MASTER_KEY_FILE {path}" if path != EMBEDDED_KEYRING else str(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except OSError as exc:
        raise SettingsError(f"{source}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{source}: not a keyring (it is not ASCII text)") from None
    keys: dict[str, bytes] = {}
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        where = f"{source} line {number}"
        if len(parts) > 2:
            raise SettingsError(f"{where}: expected `<id> <base64 key>` or `<base64 key>`")
        key = decode_key(parts[-1], where)
        key_id = master_key_id(key)
        if len(parts) == 2 and parts[0] != key_id:
            raise SettingsError(
                f"{where}: the id is not this key's (it must be {key_id}, or leave the id out)"
            )
        keys[key_id] = key
    if not keys:
        raise SettingsError(f"{source}: holds no key (`crm-service keys init` writes one)")
    return LocalKeyring(
        keys=keys, active=list(keys)[-1], path=path, loaded_mtime=path.stat().st_mtime_ns
    )


def write_new_keyring(path: Path, *, comment: str) -> str:
    """Write a keyring file holding one new master key (mode 0600); returns the key's id.

    Never overwrites (FileExistsError): replacing a keyring loses every value its keys wrap.
    """
    key = secrets.token_bytes(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        for line in comment.splitlines():
            handle.write(f"# {line}\n")
        handle.write(f"{master_key_id(key)} {base64.b64encode(key).decode()}\n")
    return master_key_id(key)


def _generate_embedded_keyring(path: Path) -> LocalKeyring:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_new_keyring(
        path,
        comment="crm-service master keyring, generated for development. Losing it loses every\n"
        "encrypted value. In production set CRM_MASTER_KEY or CRM_MASTER_KEY_FILE.",
    )
    logger.warning(
        "generated_master_key",
        path=str(path),
        warning="DEVELOPMENT ONLY: a master key was generated on local disk; back it up or "
        "set CRM_MASTER_KEY / CRM_MASTER_KEY_FILE",
    )
    return _read_keyring_file(path)


def key_provider_from_settings(settings: Settings) -> LocalKeyring:
    """The configured master keys; in embedded development, generated on first use."""
    if settings.master_key is not None:
        key = decode_key(settings.master_key.get_secret_value(), "CRM_MASTER_KEY")
        key_id = master_key_id(key)
        return LocalKeyring(keys={key_id: key}, active=key_id)
    if settings.master_key_file is not None:
        return _read_keyring_file(settings.master_key_file)
    if settings.env is Environment.PRODUCTION:  # also refused when settings load
        raise SettingsError("CRM_ENV=production needs CRM_MASTER_KEY or CRM_MASTER_KEY_FILE")
    if EMBEDDED_KEYRING.exists():
        return _read_keyring_file(EMBEDDED_KEYRING)
    return _generate_embedded_keyring(EMBEDDED_KEYRING)
