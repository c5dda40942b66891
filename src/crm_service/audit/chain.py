"""The MACs that chain audit events: canonical bytes of an event and of a chain head.

Pure functions, shared by the writer and `crm-service audit verify`. Every column of an event
except its MAC enters the MAC, together with the MAC of the event before it in its chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

# The "previous MAC" of a chain's first event.
GENESIS = "0" * 64


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _id(value: uuid.UUID | None) -> str | None:
    return None if value is None else value.hex


def event_mac(key: bytes, event: Any, previous_mac: str) -> str:
    content = {
        "v": 1,
        "id": _id(event.id),
        "organization_id": _id(event.organization_id),
        "shard": event.shard,
        "seq": event.seq,
        "previous": previous_mac,
        "occurred_at": _stamp(event.occurred_at),
        "actor_type": event.actor_type,
        "actor_id": _id(event.actor_id),
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "fields": event.fields,
        "outcome": event.outcome,
        "reason": event.reason,
        "client_ip": event.client_ip,
        "request_id": event.request_id,
    }
    # Events written before target_ids existed have none: leaving the key out keeps their MACs
    # what they were, and adding, removing or editing a list changes the MAC either way.
    if event.target_ids is not None:
        content["target_ids"] = event.target_ids
    message = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, b"crm-audit-event-v1|" + message, hashlib.sha256).hexdigest()


def head_mac(key: bytes, chain: Any) -> str:
    message = "|".join(
        (
            "crm-audit-head-v1",
            chain.organization_id.hex,
            str(chain.shard),
            str(chain.last_seq),
            chain.last_mac,
            str(chain.anchor_seq),
            chain.anchor_mac,
        )
    ).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
