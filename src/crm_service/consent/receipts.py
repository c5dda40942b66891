"""Signed consent receipts (ISO/IEC TS 27560-shaped), one per ledger event.

Each organization has an Ed25519 key; the private half is sealed under the organization's
key, the public half is published as a JWK Set at the public `GET
/consent/receipt-keys/{organization_id}`. A receipt is a JWS in compact serialization
(RFC 7515, `alg` Ed25519 as RFC 9864 names it, `kid` naming the key) whose payload is the receipt's
JSON: anyone holding the receipt verifies it with any JOSE library and that public key,
without asking the service or sharing a secret.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.consent.models import ConsentEvent, ConsentPurpose, ConsentSigningKey
from crm_service.consent.repository import SigningKeyRepository
from crm_service.crypto.codec import FieldContext
from crm_service.crypto.service import open_organization_secret, seal_organization_secret
from crm_service.db.tenancy import Organization
from crm_service.errors import NotFound

RECEIPT_TYPE = "consent-receipt+jws"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _context(organization_id: uuid.UUID, key_id: uuid.UUID) -> FieldContext:
    return FieldContext(organization_id, "consent_signing_keys", "private_sealed", key_id)


async def _signing_key(
    session: AsyncSession, organization_id: uuid.UUID, now: datetime
) -> tuple[ConsentSigningKey, Ed25519PrivateKey]:
    repository = SigningKeyRepository(session, organization_id)
    record = await repository.current()
    if record is None:
        private = Ed25519PrivateKey.generate()
        key_id = uuid.uuid4()
        raw = private.private_bytes_raw()
        record = ConsentSigningKey(
            id=key_id,
            organization_id=organization_id,
            public_key=private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
            private_sealed=await seal_organization_secret(
                session, organization_id, raw.hex(), _context(organization_id, key_id)
            ),
            created_at=now,
        )
        await repository.add(record)
        return record, private
    opened = await open_organization_secret(
        session, organization_id, record.private_sealed, _context(organization_id, record.id)
    )
    assert opened is not None, "the organization's key is never destroyed"
    return record, Ed25519PrivateKey.from_private_bytes(bytes.fromhex(opened))


def jwk_of(record: ConsentSigningKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(record.public_key),
        "kid": str(record.id),
        "use": "sig",
        "alg": "Ed25519",
    }


async def public_keys(session: AsyncSession, organization_id: uuid.UUID) -> dict[str, Any]:
    """The organization's JWK Set (404 for an organization that never issued a receipt)."""
    record = await SigningKeyRepository(session, organization_id).current()
    if record is None:
        raise NotFound("This organization has issued no consent receipts.")
    return {"keys": [jwk_of(record)]}


def receipt_body(
    *,
    event: ConsentEvent,
    purpose: ConsentPurpose,
    organization: Organization,
    issued_at: datetime,
) -> dict[str, Any]:
    """The receipt, in the vocabulary of ISO/IEC TS 27560 (consent record information
    structure): record, subject (by pseudonymous id only), controller, purpose, notice,
    the event (state, time, channel) and the legal basis."""
    return {
        "schema": "ISO/IEC TS 27560:2023 consent record",
        "record_id": str(event.id),
        "issued_at": issued_at.isoformat(),
        "subject": {"id": str(event.subject_id), "record": f"{event.module}/{event.record_id}"},
        "controller": {"id": str(organization.id), "name": organization.name},
        "purpose": {
            "id": str(purpose.id),
            "key": purpose.key,
            "version": purpose.version,
            "name": purpose.name,
            "description": purpose.description,
        },
        "notice": {"version": event.notice_version, "url": purpose.notice_url},
        "event": {
            "state": event.status,
            "time": event.recorded_at.isoformat(),
            "channel": event.channel,
            "recorded_by": "data_subject"
            if event.recorded_by_id is None and event.recorded_by_client_id is None
            else "controller_staff",
        },
        "legal_basis": "GDPR Art. 6(1)(a) consent",
    }


async def sign(
    session: AsyncSession, organization_id: uuid.UUID, body: dict[str, Any], now: datetime
) -> tuple[str, str]:
    """The compact JWS of `body`, and the key id it was signed with."""
    record, private = await _signing_key(session, organization_id, now)
    header = {"alg": "Ed25519", "kid": str(record.id), "typ": RECEIPT_TYPE}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    )
    signature = private.sign(signing_input.encode())
    return signing_input + "." + _b64url(signature), str(record.id)
