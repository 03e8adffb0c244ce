"""Issuing and revoking API keys (`crm keys`, the dev stack): events in ingest's event store,
which the relay publishes on crm.keys for every service to fold (shared/auth.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from shared.auth import SIGNATURE_ATTRIBUTE, key_event_signature, new_token, token_sha256
from shared.db import Connection
from shared.events import (
    RECORDED,
    ApiKeyIssued,
    ApiKeyRevoked,
    Event,
    Topic,
    decode_event,
    new_event,
    validate_event,
)
from shared.outbox import append_events

KEY_SOURCE = "crm/keys"


async def issue_key(
    conn: Connection,
    name: str,
    scopes: Sequence[str],
    rate_limit: float | None = None,
    *,
    secret: SecretStr | None,
) -> tuple[str, str]:
    """Record a new key in the event store (the relay publishes it): (key id, token)."""
    key_id, token = new_token()
    data = ApiKeyIssued.model_validate(
        {
            "name": name,
            "scopes": sorted(set(scopes)),
            "token_sha256": token_sha256(token),
            "rate_limit": rate_limit,
        }
    )
    event = _signed(
        new_event(
            "crm.apikey.issued",
            key_id,
            data,
            source=KEY_SOURCE,
            event_id=f"apikey:{key_id}:issued",
            time=datetime.now(UTC),
        ),
        secret,
    )
    await append_events(conn, [event])
    return key_id, token


async def revoke_key(
    conn: Connection, key_id: str, reason: str | None = None, *, secret: SecretStr | None
) -> bool:
    """Record the revocation of an issued key; False if no such key was issued."""
    known = await conn.fetchval(
        "SELECT 1 FROM events WHERE type = 'crm.apikey.issued' AND subject = $1", key_id
    )
    if known is None:
        return False
    event = _signed(
        new_event(
            "crm.apikey.revoked",
            key_id,
            ApiKeyRevoked(reason=reason),
            source=KEY_SOURCE,
            # Not derived from the key id: nobody can take the revocation's identity first.
            event_id=f"apikey:{key_id}:revoked:{uuid.uuid4()}",
            time=datetime.now(UTC),
        ),
        secret,
    )
    await append_events(conn, [event])
    return True


def _signed(event: Event, secret: SecretStr | None) -> Event:
    """The event with its signature attribute (see shared/auth.py)."""
    if secret is None:
        raise MissingSecretError(
            "KEY_SIGNING_SECRET is not set: services would refuse the key; set the same "
            "secret (32+ characters) for `crm keys` and every service"
        )
    body = event.to_json_dict()
    body[SIGNATURE_ATTRIBUTE] = key_event_signature(body, secret.get_secret_value())
    return validate_event(body, RECORDED)


class MissingSecretError(RuntimeError):
    """Keys cannot be issued or revoked without KEY_SIGNING_SECRET."""


async def list_keys(conn: Connection) -> list[dict[str, Any]]:
    """Every key issued, oldest first, as its events describe it (no hashes)."""
    rows = await conn.fetch(
        "SELECT body FROM events WHERE topic = $1 ORDER BY seq", Topic.KEYS.value
    )
    return describe([decode_event(r["body"].encode(), RECORDED) for r in rows])


async def is_active(conn: Connection, token: str) -> bool:
    """Whether `token` belongs to a key issued and not revoked in this event store."""
    found = await conn.fetchval(
        "SELECT 1 FROM events i WHERE i.type = 'crm.apikey.issued' "
        "AND i.body -> 'data' ->> 'token_sha256' = $1 AND NOT EXISTS ("
        "SELECT 1 FROM events r WHERE r.type = 'crm.apikey.revoked' AND r.subject = i.subject)",
        token_sha256(token),
    )
    return found is not None


def describe(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Keys from their events (oldest first)."""
    keys: dict[str, dict[str, Any]] = {}
    for event in events:
        entry = keys.setdefault(event.subject, {"key_id": event.subject, "revoked_at": None})
        if isinstance(event.data, ApiKeyIssued):
            entry.update(
                name=event.data.name,
                scopes=list(event.data.scopes),
                rate_limit=event.data.rate_limit,
                issued_at=event.time,
            )
        else:
            revoked: datetime | None = entry["revoked_at"]
            entry["revoked_at"] = event.time if revoked is None else min(revoked, event.time)
    return list(keys.values())
