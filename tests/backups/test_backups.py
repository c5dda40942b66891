"""Backups: taken while the service writes, verified, refused when tampered with in any way
(a flipped bit, truncation, reordered chunks, another backup's manifest), restored into an
empty database and read back record by record over HTTP. No backup file holds a value."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from crm_service.backups import container
from crm_service.backups.container import BackupError, BackupWriter
from crm_service.backups.service import (
    RestoreRefused,
    backup_files,
    create_backup,
    describe,
    restore_backup,
    verify_file,
)
from crm_service.cli import _database
from crm_service.clock import Clock
from tests.backups.conftest import fresh_database, provider_of, serving, settings_for
from tests.conftest import TestDatabases, new_org
from tests.privacy.probe import Subject, hits


async def _all(client: Any, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    records, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(path, params=params, headers=headers)).json()
        records += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return records


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("masked_fields", "withheld_fields")}


async def test_backup_while_writing_verify_and_restore_into_an_empty_database(
    kind: str, databases: TestDatabases, tmp_path: Path
) -> None:
    settings = settings_for(await fresh_database(databases, kind), tmp_path / "backups")
    subjects = [Subject.new() for _ in range(3)]
    async with serving(settings) as (app, client):
        org = await new_org(app, client)
        for subject in subjects:
            made = await client.post(
                "/v1/leads",
                json={"first_name": subject.first_name, "last_name": subject.last_name,
                      "email": subject.email, "phone": subject.phone, "company": subject.company},
                headers=org.headers,
            )  # fmt: skip
            assert made.status_code == 201, made.text
        await client.post("/v1/accounts", json={"name": subjects[0].company}, headers=org.headers)
        before = {
            module: await _all(client, f"/v1/{module}", org.headers)
            for module in ("leads", "contacts", "accounts")
        }

        written = [0]

        async def keep_writing() -> None:
            while not done.is_set():
                response = await client.post(
                    "/v1/contacts", json={"last_name": f"During {written[0]}"}, headers=org.headers
                )
                assert response.status_code == 201, response.text
                written[0] += 1

        done = asyncio.Event()
        writer = asyncio.create_task(keep_writing())
        while written[0] == 0:
            await asyncio.sleep(0.01)
        # The writer is mid-request when the backup starts and keeps going after it (on
        # PostgreSQL, pg_dump takes long enough that writes also complete during it).
        backup = await create_backup(settings, provider_of(settings), now=Clock().now())
        after = written[0]
        while written[0] == after:
            await asyncio.sleep(0.01)
        done.set()
        await writer
    manifest = verify_file(backup.path, provider_of(settings))
    assert manifest.organization_count == 1 and manifest.database == kind
    assert manifest.schema_revision is not None
    assert describe(backup.path, provider_of(settings)).manifest == manifest
    assert backup_files(settings.backup_dir) == [backup.path]

    # Nothing readable in the file: no value, no company name, not even a table name.
    blob = backup.path.read_bytes()
    values = [v for s in subjects for v in s.values()] + ["organizations", "CREATE TABLE"]
    assert hits(blob, values) == []

    target = settings_for(
        await fresh_database(databases, kind, migrated=False), settings.backup_dir
    )
    report = await restore_backup(
        target, provider_of(target), lambda: _database(target), backup.path,
        now=Clock().now(), overwrite=False, without_forget_log=False,
    )  # fmt: skip
    assert report.manifest == manifest and report.reapplied == 0
    async with serving(target) as (_, restored):
        for module, records in before.items():
            after = await _all(restored, f"/v1/{module}", org.headers)
            by_id = {record["id"]: _comparable(record) for record in after}
            for record in records:
                assert by_id.get(record["id"]) == _comparable(record), module


async def test_a_restore_over_data_needs_confirmation(
    kind: str, databases: TestDatabases, tmp_path: Path
) -> None:
    settings = settings_for(await fresh_database(databases, kind), tmp_path / "backups")
    async with serving(settings) as (app, client):
        org = await new_org(app, client)
        backup = await create_backup(settings, provider_of(settings), now=Clock().now())
        await client.post("/v1/contacts", json={"last_name": "After"}, headers=org.headers)
    with pytest.raises(RestoreRefused, match="--yes"):
        await restore_backup(
            settings, provider_of(settings), lambda: _database(settings), backup.path,
            now=Clock().now(), overwrite=False, without_forget_log=False,
        )  # fmt: skip
    await restore_backup(
        settings, provider_of(settings), lambda: _database(settings), backup.path,
        now=Clock().now(), overwrite=True, without_forget_log=False,
    )  # fmt: skip
    async with serving(settings) as (_, client):
        contacts = await _all(client, "/v1/contacts", org.headers)
        assert [c for c in contacts if c["last_name"] == "After"] == []


# -- tampering ---------------------------------------------------------------------------------


def _layout(blob: bytes) -> tuple[int, list[tuple[int, int]]]:
    """The key block's end and each (offset, length) record, the manifest last."""
    (key_length,) = struct.unpack(">H", blob[8:10])
    position = 10 + key_length
    start, records = position, []
    end = len(blob) - 4 - len(container.END)
    while position < end:
        (length,) = struct.unpack(">I", blob[position : position + 4])
        records.append((position, 4 + length))
        position += 4 + length
    return start, records


def _multi_chunk_backup(path: Path, provider: Any, size: int) -> None:
    with path.open("wb") as handle:
        writer = BackupWriter(handle, provider)
        for _ in range(size // 65536):
            writer.write(os.urandom(65536))
        writer.close(
            created_at="2026-12-02T00:00:00+00:00", database="sqlite",
            schema_revision="test", organization_count=0,
        )  # fmt: skip


@pytest.fixture
def two_backups(tmp_path: Path) -> tuple[Path, Path, Any]:
    settings = settings_for("sqlite+aiosqlite:///unused.db", tmp_path)
    provider = provider_of(settings)
    first, second = tmp_path / "a.crmbak", tmp_path / "b.crmbak"
    _multi_chunk_backup(first, provider, 3 * container.CHUNK_BYTES + 100_000)
    _multi_chunk_backup(second, provider, 2 * container.CHUNK_BYTES)
    return first, second, provider


def _tampered(name: str, first: Path, second: Path) -> bytes:
    blob = bytearray(first.read_bytes())
    start, records = _layout(bytes(blob))
    if name == "flip":
        offset, length = records[1]
        blob[offset + length // 2] ^= 0x01
        return bytes(blob)
    if name == "truncate_inside":
        return bytes(blob[: len(blob) - 5000])
    if name == "truncate_at_chunk":
        offset, _ = records[2]
        return bytes(blob[:offset])
    if name == "drop_last_chunk":
        final_chunk, manifest = records[-2][0], records[-1][0]
        return bytes(blob[:final_chunk]) + bytes(blob[manifest:])
    if name == "reorder":
        (o0, l0), (o1, l1) = records[0], records[1]
        return (
            bytes(blob[:o0])
            + bytes(blob[o1 : o1 + l1])
            + bytes(blob[o0 : o0 + l0])
            + bytes(blob[o1 + l1 :])
        )
    if name == "swap_manifest":
        other = second.read_bytes()
        _, theirs = _layout(other)
        return bytes(blob[: records[-1][0]]) + other[theirs[-1][0] :]
    if name == "swap_key_block":
        other = second.read_bytes()
        other_start, _ = _layout(other)
        return other[:other_start] + bytes(blob[start:])
    raise AssertionError(name)


TAMPERING = {
    "flip": "chunk 1 does not authenticate",
    "truncate_inside": "truncated",
    "truncate_at_chunk": "truncated",
    "drop_last_chunk": "does not authenticate",
    "reorder": "chunk 0 does not authenticate",
    "swap_manifest": "manifest does not authenticate",
    "swap_key_block": "chunk 0 does not authenticate",
}


@pytest.mark.parametrize("name", sorted(TAMPERING))
def test_verify_refuses_every_tampering(
    name: str, two_backups: tuple[Path, Path, Any], tmp_path: Path
) -> None:
    first, second, provider = two_backups
    assert verify_file(first, provider).chunk_count == 4
    broken = tmp_path / "broken.crmbak"
    broken.write_bytes(_tampered(name, first, second))
    with pytest.raises(BackupError, match=TAMPERING[name]):
        verify_file(broken, provider)
