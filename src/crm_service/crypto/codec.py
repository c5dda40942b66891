"""The stored form of a classifiable field value: sealed (AES-256-GCM) or plain, self-described.

    sealed: 0x01 | data key id (16 bytes) | nonce (12 bytes) | ciphertext + tag
    plain:  0x00 | UTF-8 text                      (fields classified `none`)

The associated data binds a sealed value to organization, table, column and row (and to its
own header), so a ciphertext copied to another row, column or organization, or altered in
one bit, fails to open. Because every value says what it is, a value can be read whatever
the field's classification is now, and converting a column is idempotent.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crm_service.errors import CRMError

SEALED_V1 = 0x01
PLAIN = 0x00
_HEADER = 1 + 16 + 12


class StoredValueIntegrityError(CRMError):
    """A stored value failed authentication: tampered, moved, or under a foreign key."""

    status, slug, title = 500, "stored-data-integrity", "Stored data failed its integrity check"


@dataclass(frozen=True)
class DataKey:
    id: uuid.UUID
    material: bytes = field(repr=False)
    generation: int = 1

    @cached_property
    def id_bytes(self) -> bytes:
        return self.id.bytes

    @cached_property
    def aead(self) -> AESGCM:
        # Building the cipher costs more than sealing one short value; build it once a key.
        return AESGCM(self.material)


@dataclass(frozen=True)
class FieldContext:
    """Where a value is stored; the associated data of its ciphertext."""

    organization_id: uuid.UUID
    table: str
    column: str
    row_id: uuid.UUID

    def associated_data(self, header: bytes) -> bytes:
        place = column_place(self.organization_id, self.table, self.column)
        return place + self.row_id.bytes + b"|" + header


def column_place(organization_id: uuid.UUID, table: str, column: str) -> bytes:
    """The first part of the associated data of every value of one column of one
    organization: built once for many rows (an export opens thousands)."""
    return b"|".join((b"crm-field-v1", organization_id.bytes, table.encode(), column.encode(), b""))


def seal(key: DataKey, text: str, context: FieldContext) -> bytes:
    nonce = os.urandom(12)
    header = bytes([SEALED_V1]) + key.id.bytes + nonce
    return header + key.aead.encrypt(nonce, text.encode(), context.associated_data(header))


def store_plain(text: str) -> bytes:
    return bytes([PLAIN]) + text.encode()


def is_sealed(stored: bytes) -> bool:
    return bool(stored) and stored[0] == SEALED_V1


def sealed_key_id(stored: bytes) -> uuid.UUID | None:
    """The data key a sealed value names, or None for a plain value."""
    if not is_sealed(stored):
        return None
    if len(stored) < _HEADER + 16:
        raise StoredValueIntegrityError("A stored value is truncated.")
    return uuid.UUID(bytes=stored[1:17])


def open_value(stored: bytes, key: DataKey, context: FieldContext) -> str:
    place = column_place(context.organization_id, context.table, context.column)
    return open_value_at(stored, key, place + context.row_id.bytes + b"|")


def open_value_at(stored: bytes, key: DataKey, place: bytes) -> str:
    """`open_value` with the associated data up to the value's header already built:
    :func:`column_place` + the row id's bytes + `|` (an export builds the column's part once
    and the row's once per row)."""
    if not stored:
        raise StoredValueIntegrityError("A stored value is empty.")
    if stored[0] == PLAIN:
        return stored[1:].decode()
    if stored[0] != SEALED_V1 or len(stored) < _HEADER + 16:
        raise StoredValueIntegrityError("A stored value has an unknown format.")
    header = stored[:_HEADER]
    if header[1:17] != key.id_bytes:
        raise StoredValueIntegrityError("A stored value names another data key.")
    try:
        plaintext = key.aead.decrypt(header[17:], stored[_HEADER:], place + header)
    except InvalidTag:
        raise StoredValueIntegrityError(
            "A stored value failed authentication (altered, or moved from elsewhere)."
        ) from None
    return plaintext.decode()


def open_row(
    stored_values: list[bytes | None], key: DataKey, places: list[bytes], row_place: bytes
) -> list[str | None]:
    """:func:`open_value_at` for the values of one row under one key (`places[n]` the column
    part of value n's associated data, `row_place` the row's): an export opens a dozen values
    a row, a million rows, so the common case is one loop with nothing looked up twice.
    Anything else (plain, foreign, truncated, failing) takes :func:`open_value_at`, which
    opens it or says what is wrong."""
    decrypt = key.aead.decrypt
    key_id = key.id_bytes
    opened: list[str | None] = []
    for stored, place in zip(stored_values, places, strict=True):
        if stored is None:
            opened.append(None)
        elif stored[:1] == b"\x01" and len(stored) >= _HEADER + 16 and stored[1:17] == key_id:
            try:
                plaintext = decrypt(
                    stored[17:_HEADER], stored[_HEADER:], place + row_place + stored[:_HEADER]
                )
            except InvalidTag:
                open_value_at(stored, key, place + row_place)  # fails again, and says so
                raise
            opened.append(plaintext.decode())
        else:
            opened.append(open_value_at(stored, key, place + row_place))
    return opened
