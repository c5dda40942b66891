"""Sealing what the consent feature keeps about a person (evidence, submissions) under the
data subject's own key, so erasing the subject destroys it with every other copy."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.crypto.codec import FieldContext, open_value, seal, sealed_key_id
from crm_service.crypto.service import key_generation, keyring_for


def new_token() -> tuple[str, str]:
    """A 256-bit random token for a link, and the SHA-256 hash that is all we store of it."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def seal_json(
    session: AsyncSession,
    organization_id: uuid.UUID,
    subject_id: uuid.UUID,
    context: FieldContext,
    payload: dict[str, Any],
    *,
    new_subject: bool = False,
) -> bytes:
    keyring = keyring_for(session, organization_id)
    generation = await key_generation(session, organization_id, for_write=True)
    if new_subject:
        key = await keyring.new_subject_key(subject_id, generation)
    else:
        key = await keyring.subject_key(subject_id, generation)
    return seal(key, json.dumps(payload, sort_keys=True), context)


async def open_json(
    session: AsyncSession, organization_id: uuid.UUID, stored: bytes, context: FieldContext
) -> dict[str, Any] | None:
    """The sealed object, or None when the subject's key was destroyed (erased)."""
    key_id = sealed_key_id(stored)
    if key_id is None:
        return None
    key = (await keyring_for(session, organization_id).keys_by_id([key_id])).get(key_id)
    if key is None:
        return None
    return dict(json.loads(open_value(stored, key, context)))
