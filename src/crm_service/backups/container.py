"""The backup file: a stream encrypted in chunks as it is written, and read back the same way.

Layout (every length big-endian)::

    magic      b"CRMBAK\\x00\\x01"
    key block  u16 length + JSON {"backup_id", "master_key_id", "wrapped_key"}
    chunks     u32 length + nonce (12) + AES-256-GCM ciphertext and tag, one per chunk
    manifest   u32 length + nonce (12) + AES-256-GCM ciphertext and tag (JSON)
    trailer    u32 length of the manifest record + b"CRMBEND\\n"

Nothing but ids and the wrapped key is readable without the master key. The backup data key is
fresh per file, wrapped by the master key bound to the backup's id. Each chunk's associated
data is the backup id, its index and whether it is the last one, so chunks cannot be reordered,
dropped, moved between backups or cut off after a chunk boundary without failing; the manifest
(created time, schema revision, organization count, chunk count, SHA-256 of the plaintext,
master key id) is sealed under the same key with the backup id and a digest of the key block,
so it cannot be swapped for another backup's. Readers never release plaintext that did not
authenticate; a restore verifies the whole file before it changes anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crm_service.crypto.master import KeyProvider, KeyUnwrapError

MAGIC = b"CRMBAK\x00\x01"
END = b"CRMBEND\n"
CHUNK_BYTES = 1 << 20  # plaintext per chunk
_NONCE = 12
_MAX_RECORD = CHUNK_BYTES + 1024


class BackupError(Exception):
    """The file is not an intact backup (or cannot be opened); the message is one line."""


@dataclass(frozen=True)
class Manifest:
    backup_id: str
    created_at: str  # RFC 3339, UTC
    database: str  # sqlite | postgresql
    schema_revision: str | None
    organization_count: int
    chunk_count: int
    plaintext_bytes: int
    sha256: str  # of the plaintext stream
    master_key_id: str
    format: str = "crm-backup-v1"


def _wrap_context(backup_id: uuid.UUID) -> bytes:
    return b"crm-backup-key-v1|" + backup_id.bytes


def _chunk_aad(backup_id: uuid.UUID, index: int, final: bool) -> bytes:
    return b"chunk|" + backup_id.bytes + struct.pack(">QB", index, 1 if final else 0)


def _manifest_aad(backup_id: uuid.UUID, key_block: bytes) -> bytes:
    return b"manifest|" + backup_id.bytes + hashlib.sha256(key_block).digest()


class BackupWriter:
    """Encrypts what is written to it, chunk by chunk, into `handle`."""

    def __init__(self, handle: IO[bytes], provider: KeyProvider) -> None:
        self.handle = handle
        self.backup_id = uuid.uuid4()
        self._key = secrets.token_bytes(32)
        self._aead = AESGCM(self._key)
        self.master_key_id, wrapped = provider.wrap(self._key, _wrap_context(self.backup_id))
        self._key_block = json.dumps(
            {
                "backup_id": str(self.backup_id),
                "master_key_id": self.master_key_id,
                "wrapped_key": base64.b64encode(wrapped).decode(),
            },
            sort_keys=True,
        ).encode()
        handle.write(MAGIC + struct.pack(">H", len(self._key_block)) + self._key_block)
        self._buffer = bytearray()
        self._index = 0
        self._digest = hashlib.sha256()
        self._plaintext_bytes = 0

    def _seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        record = nonce + self._aead.encrypt(nonce, data, aad)
        self.handle.write(struct.pack(">I", len(record)) + record)
        return record

    def write(self, data: bytes) -> None:
        self._digest.update(data)
        self._plaintext_bytes += len(data)
        self._buffer += data
        # Keep one full chunk back: only at close is it known which chunk is the last.
        while len(self._buffer) > CHUNK_BYTES:
            self._seal(
                bytes(self._buffer[:CHUNK_BYTES]), _chunk_aad(self.backup_id, self._index, False)
            )
            del self._buffer[:CHUNK_BYTES]
            self._index += 1

    def close(self, **manifest: Any) -> Manifest:
        """Seal the last chunk (flagged final) and the manifest; returns the manifest."""
        self._seal(bytes(self._buffer), _chunk_aad(self.backup_id, self._index, True))
        self._buffer.clear()
        sealed = Manifest(
            backup_id=str(self.backup_id),
            chunk_count=self._index + 1,
            plaintext_bytes=self._plaintext_bytes,
            sha256=self._digest.hexdigest(),
            master_key_id=self.master_key_id,
            **manifest,
        )
        body = json.dumps(asdict(sealed), sort_keys=True).encode()
        record = self._seal(body, _manifest_aad(self.backup_id, self._key_block))
        self.handle.write(struct.pack(">I", len(record) + 4) + END)
        return sealed


@dataclass
class _Opened:
    backup_id: uuid.UUID
    master_key_id: str
    key_block: bytes
    aead: AESGCM


def _read_exact(handle: IO[bytes], size: int, what: str) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise BackupError(f"truncated: the file ends inside {what}")
    return data


def _open_key_block(handle: IO[bytes], provider: KeyProvider) -> _Opened:
    if handle.read(len(MAGIC)) != MAGIC:
        raise BackupError("not a crm-service backup (wrong magic bytes)")
    (length,) = struct.unpack(">H", _read_exact(handle, 2, "the key block"))
    key_block = _read_exact(handle, length, "the key block")
    try:
        fields = json.loads(key_block)
        backup_id = uuid.UUID(fields["backup_id"])
        wrapped = base64.b64decode(fields["wrapped_key"], validate=True)
        master_key_id = str(fields["master_key_id"])
    except (ValueError, KeyError, TypeError):
        raise BackupError("the key block is damaged") from None
    if not provider.knows(master_key_id):
        raise BackupError(f"the backup's master key {master_key_id} is not in the keyring")
    try:
        key = provider.unwrap(master_key_id, wrapped, _wrap_context(backup_id))
    except KeyUnwrapError:
        raise BackupError(
            "the backup's data key does not authenticate (key block altered)"
        ) from None
    return _Opened(backup_id, master_key_id, key_block, AESGCM(key))


def _records(handle: IO[bytes]) -> Iterator[bytes]:
    """Length-prefixed records up to the trailer (its length word included in the end check)."""
    while True:
        head = handle.read(4)
        if len(head) < 4:
            raise BackupError("truncated: the file ends before its manifest")
        (length,) = struct.unpack(">I", head)
        if length > _MAX_RECORD or length < _NONCE + 16:
            raise BackupError("damaged: a chunk has an impossible length")
        yield _read_exact(handle, length, "a chunk")


def read_stream(path: Path, provider: KeyProvider) -> Iterator[bytes | Manifest]:
    """Yield each chunk's plaintext once it authenticated, then the verified manifest (last).
    Raises BackupError at the first thing that does not authenticate."""
    with path.open("rb") as handle:
        opened = _open_key_block(handle, provider)
        digest = hashlib.sha256()
        index = 0
        final_seen = False
        for record in _records(handle):
            nonce, sealed = record[:_NONCE], record[_NONCE:]
            if not final_seen:
                plain = None
                for final in (False, True):
                    try:
                        plain = opened.aead.decrypt(
                            nonce, sealed, _chunk_aad(opened.backup_id, index, final)
                        )
                    except InvalidTag:
                        continue
                    final_seen = final
                    break
                if plain is None:
                    raise BackupError(
                        f"chunk {index} does not authenticate (changed, reordered or from "
                        "another backup)"
                    )
                digest.update(plain)
                index += 1
                yield plain
                continue
            try:
                body = opened.aead.decrypt(
                    nonce, sealed, _manifest_aad(opened.backup_id, opened.key_block)
                )
            except InvalidTag:
                raise BackupError(
                    "the manifest does not authenticate (changed or from another backup)"
                ) from None
            trailer = handle.read(4 + len(END))
            if trailer[4:] != END or handle.read(1):
                raise BackupError("damaged: bytes after the manifest are not the trailer")
            manifest = Manifest(**json.loads(body))
            if manifest.chunk_count != index or manifest.sha256 != digest.hexdigest():
                raise BackupError("the manifest does not match the chunks (count or checksum)")
            yield manifest
            return


def read_manifest(path: Path, provider: KeyProvider) -> Manifest:
    """The manifest alone, read from the end (for `backup list`); not a verification."""
    with path.open("rb") as handle:
        opened = _open_key_block(handle, provider)
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size < 4 + len(END):
            raise BackupError("truncated: no trailer")
        handle.seek(size - 4 - len(END))
        trailer = handle.read()
        if trailer[4:] != END:
            raise BackupError("truncated: no trailer")
        (length,) = struct.unpack(">I", trailer[:4])
        handle.seek(size - 4 - len(END) - length)
        record = handle.read(length)[4:]
        try:
            body = opened.aead.decrypt(
                record[:_NONCE], record[_NONCE:], _manifest_aad(opened.backup_id, opened.key_block)
            )
        except InvalidTag:
            raise BackupError("the manifest does not authenticate") from None
        return Manifest(**json.loads(body))


def verify(path: Path, provider: KeyProvider) -> Manifest:
    """Authenticate every chunk and the manifest (BackupError otherwise)."""
    for item in read_stream(path, provider):
        if isinstance(item, Manifest):
            return item
    raise BackupError("truncated: the file ends before its manifest")
