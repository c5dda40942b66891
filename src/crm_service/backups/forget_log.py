"""The forget-log: one line per erasure, kept outside the database (`CRM_BACKUP_DIR/forget.log`)
so it outlives a restore of an older database, which then erases those subjects again.

An entry holds only ids, blind-index HMACs and a time. Entries are chained: each carries
HMAC-SHA256(log key, previous MAC || entry), the log key being 32 random bytes wrapped by the
master key in the log's first line (so only a holder of the master key can extend or alter
the chain). Appends take an exclusive lock on the file, write one line and fsync before the
erasure's transaction commits.

The chain shows an edited, inserted, reordered or removed entry; it cannot show that the last
entries were cut off, so keep the file on storage that is replicated and not rewritable by
whoever can replace the backups.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from crm_service.crypto.master import KeyProvider, KeyUnwrapError

FORMAT = "crm-forget-log-v1"
_WRAP_CONTEXT = b"crm-service forget-log key v1"


class ForgetLogError(Exception):
    """The forget-log is unreadable, or its chain is broken (the message says where)."""


@dataclass(frozen=True)
class ForgetEntry:
    seq: int
    organization_id: uuid.UUID
    subject_id: uuid.UUID
    identifiers: tuple[tuple[str, str], ...]
    erased_at: datetime
    receipt_id: uuid.UUID


def _canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _mac(key: bytes, previous: str, body: dict[str, Any]) -> str:
    return hmac.new(key, previous.encode() + b"\n" + _canonical(body), hashlib.sha256).hexdigest()


def _last_line(handle: Any) -> bytes:
    """The file's last complete line, read backwards from the end."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    position, chunk, tail = end, 4096, b""
    while position > 0:
        step = min(chunk, position)
        position -= step
        handle.seek(position)
        tail = handle.read(step) + tail
        stripped = tail.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    return tail.rstrip(b"\n")


class ForgetLog:
    def __init__(self, path: Path, provider: KeyProvider) -> None:
        self.path = path
        self.provider = provider

    # -- the key -----------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        key = secrets.token_bytes(32)
        master_key_id, wrapped = self.provider.wrap(key, _WRAP_CONTEXT)
        return {
            "format": FORMAT,
            "master_key_id": master_key_id,
            "wrapped_key": base64.b64encode(wrapped).decode(),
        }

    def _key(self, header: dict[str, Any]) -> bytes:
        if header.get("format") != FORMAT:
            raise ForgetLogError(f"{self.path}: not a forget-log (line 1 is no header)")
        try:
            return self.provider.unwrap(
                header["master_key_id"], base64.b64decode(header["wrapped_key"]), _WRAP_CONTEXT
            )
        except (KeyUnwrapError, KeyError, ValueError) as exc:
            raise ForgetLogError(
                f"{self.path}: its key does not open with the configured master keys ({exc})"
            ) from None

    @staticmethod
    def _header_mac(key: bytes, header: dict[str, Any]) -> str:
        return hmac.new(key, _canonical(header), hashlib.sha256).hexdigest()

    # -- writing -----------------------------------------------------------------------------

    def ensure(self) -> None:
        """Start the log (its header) if there is none: a backup exists, so must the log
        that a restore of it checks, even before the first erasure."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(_canonical(self._header()) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def append(
        self,
        *,
        organization_id: uuid.UUID,
        subject_id: uuid.UUID,
        identifiers: list[tuple[str, str]],
        erased_at: datetime,
        receipt_id: uuid.UUID,
    ) -> None:
        """Append one entry and fsync it (raises OSError when it cannot: the erasure's
        transaction then rolls back rather than commit an erasure a restore would forget)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.seek(0, os.SEEK_END)
                if handle.tell() == 0:
                    header = self._header()
                    handle.write(_canonical(header) + b"\n")
                    key = self._key(header)
                    seq, previous = 1, self._header_mac(key, header)
                else:
                    handle.seek(0)
                    header = json.loads(handle.readline())
                    key = self._key(header)
                    last = json.loads(_last_line(handle))
                    if last.get("format") == FORMAT:
                        seq, previous = 1, self._header_mac(key, header)
                    else:
                        seq, previous = int(last["seq"]) + 1, str(last["mac"])
                body = {
                    "seq": seq,
                    "organization_id": str(organization_id),
                    "subject_id": str(subject_id),
                    "identifiers": [list(pair) for pair in sorted(identifiers)],
                    "erased_at": erased_at.isoformat(),
                    "receipt_id": str(receipt_id),
                }
                line = _canonical({**body, "mac": _mac(key, previous, body)})
                handle.write(line + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- reading -----------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.exists()

    def entries(self) -> list[ForgetEntry]:
        """Every entry, the chain verified (ForgetLogError naming the first bad line)."""
        try:
            lines = self.path.read_bytes().split(b"\n")
        except OSError as exc:
            raise ForgetLogError(f"{self.path}: cannot read it ({exc.strerror})") from None
        if lines and lines[-1] == b"":
            lines.pop()
        if not lines:
            return []
        try:
            header = json.loads(lines[0])
        except ValueError:
            raise ForgetLogError(f"{self.path}: line 1 is no header") from None
        key = self._key(header)
        previous = self._header_mac(key, header)
        found: list[ForgetEntry] = []
        for number, raw in enumerate(lines[1:], start=2):
            try:
                data = json.loads(raw)
                body = {name: value for name, value in data.items() if name != "mac"}
                intact = hmac.compare_digest(str(data["mac"]), _mac(key, previous, body))
                expected_seq = len(found) + 1
                if not intact or body["seq"] != expected_seq:
                    raise ValueError
                found.append(
                    ForgetEntry(
                        seq=body["seq"],
                        organization_id=uuid.UUID(body["organization_id"]),
                        subject_id=uuid.UUID(body["subject_id"]),
                        identifiers=tuple((kind, value) for kind, value in body["identifiers"]),
                        erased_at=datetime.fromisoformat(body["erased_at"]),
                        receipt_id=uuid.UUID(body["receipt_id"]),
                    )
                )
            except (ValueError, KeyError, TypeError):
                raise ForgetLogError(
                    f"{self.path}: the chain is broken at line {number} (an entry was edited, "
                    "inserted, removed or reordered)"
                ) from None
            previous = data["mac"]
        return found
