"""The stored form of a value: AES-256-GCM with its key named and its place bound."""

from __future__ import annotations

import secrets
import uuid

import pytest

from crm_service.crypto.codec import (
    DataKey,
    FieldContext,
    StoredValueIntegrityError,
    open_value,
    seal,
    sealed_key_id,
    store_plain,
)
from crm_service.crypto.master import KeyUnwrapError, LocalKeyring, master_key_id

KEY = DataKey(id=uuid.uuid4(), material=secrets.token_bytes(32))
PLACE = FieldContext(uuid.uuid4(), "contacts", "email", uuid.uuid4())


def test_sealed_values_round_trip_and_never_repeat() -> None:
    first, second = seal(KEY, "ada@example.com", PLACE), seal(KEY, "ada@example.com", PLACE)
    assert first != second, "a fresh nonce per value"
    assert first[0] == 0x01 and sealed_key_id(first) == KEY.id
    assert b"ada" not in first
    assert open_value(first, KEY, PLACE) == open_value(second, KEY, PLACE) == "ada@example.com"


@pytest.mark.parametrize(
    "elsewhere",
    [
        FieldContext(uuid.uuid4(), PLACE.table, PLACE.column, PLACE.row_id),
        FieldContext(PLACE.organization_id, "leads", PLACE.column, PLACE.row_id),
        FieldContext(PLACE.organization_id, PLACE.table, "phone", PLACE.row_id),
        FieldContext(PLACE.organization_id, PLACE.table, PLACE.column, uuid.uuid4()),
    ],
)
def test_a_value_opens_only_where_it_was_sealed(elsewhere: FieldContext) -> None:
    with pytest.raises(StoredValueIntegrityError):
        open_value(seal(KEY, "secret", PLACE), KEY, elsewhere)


def test_altered_truncated_or_foreign_key_values_fail() -> None:
    stored = seal(KEY, "secret", PLACE)
    for position in (0 + 20, len(stored) - 1, 30):
        altered = bytearray(stored)
        altered[position] ^= 0x01
        with pytest.raises(StoredValueIntegrityError):
            open_value(bytes(altered), KEY, PLACE)
    with pytest.raises(StoredValueIntegrityError):
        open_value(stored[:40], KEY, PLACE)
    other = DataKey(id=uuid.uuid4(), material=secrets.token_bytes(32))
    with pytest.raises(StoredValueIntegrityError):
        open_value(stored, other, PLACE)
    with pytest.raises(StoredValueIntegrityError):
        open_value(b"\x07whatever", KEY, PLACE)


def test_plain_values_describe_themselves() -> None:
    assert store_plain("Acme Ltd") == b"\x00Acme Ltd"
    assert sealed_key_id(store_plain("Acme Ltd")) is None
    assert open_value(store_plain("Acme Ltd"), KEY, PLACE) == "Acme Ltd"


def test_wrapped_data_keys_are_bound_to_their_context() -> None:
    master = secrets.token_bytes(32)
    keyring = LocalKeyring(keys={master_key_id(master): master}, active=master_key_id(master))
    key_id, wrapped = keyring.wrap(KEY.material, b"context-a")
    assert keyring.unwrap(key_id, wrapped, b"context-a") == KEY.material
    with pytest.raises(KeyUnwrapError):
        keyring.unwrap(key_id, wrapped, b"context-b")
    with pytest.raises(KeyUnwrapError):
        keyring.unwrap("mk-unknown", wrapped, b"context-a")
