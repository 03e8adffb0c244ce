"""Issuing and revoking API keys (`crm keys`, the dev stack): events in ingest's event store,
which the relay publishes on crm.keys for every service to fold (shared/auth.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
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
from tooling import registry

KEY_SOURCE = "crm/keys"


async def issue_key(
    conn: Connection,
    name: str,
    scopes: Sequence[str],
    rate_limit: float | None = None,
    *,
    secret: SecretStr | None,
    expires_at: datetime | None = None,
    made: tuple[str, str] | None = None,
) -> tuple[str, str]:
    """Record a new key in the event store (the relay publishes it): (key id, token).
    `made`: a (key id, token) from `new_token()` to issue instead of a fresh one."""
    key_id, token = made or new_token()
    data = ApiKeyIssued.model_validate(
        {
            "name": name,
            "scopes": sorted(set(scopes)),
            "token_sha256": token_sha256(token),
            "rate_limit": rate_limit,
            "expires_at": expires_at,
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
    """Every key issued, oldest first, as its events describe it (no hashes), with its last
    use as the services noted it."""
    rows = await conn.fetch(
        "SELECT body FROM events WHERE topic = $1 ORDER BY seq", Topic.KEYS.value
    )
    described = describe([decode_event(r["body"].encode(), RECORDED) for r in rows])
    last_used = await last_uses(conn)
    for key in described:
        key["last_used_at"] = last_used.get(key["key_id"])
    return described


# The schemas whose services note when a key was used (each in its own api_keys table).
SERVICE_SCHEMAS = registry.NAMES  # each service's schema is named after it


async def last_uses(conn: Connection) -> dict[str, datetime]:
    """Each key's latest use across the services' schemas this connection may read: a
    schema it may not read (a deployment with one database role per service) or a service
    never started is skipped, so the time shown is the latest the reader can see."""
    latest: dict[str, datetime] = {}
    for schema in SERVICE_SCHEMAS:
        try:
            rows = await conn.fetch(
                f'SELECT key_id, last_used_at FROM "{schema}".api_keys '
                "WHERE last_used_at IS NOT NULL"
            )
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            continue  # that service never ran here, or not since last-use existed
        except asyncpg.InsufficientPrivilegeError:
            continue
        for row in rows:
            seen = latest.get(row["key_id"])
            latest[row["key_id"]] = max(seen, row["last_used_at"]) if seen else row["last_used_at"]
    return latest


async def is_active(conn: Connection, token: str) -> bool:
    """Whether `token` belongs to a key issued, not revoked and not expired in this event
    store."""
    found = await conn.fetchval(
        "SELECT 1 FROM events i WHERE i.type = 'crm.apikey.issued' "
        "AND i.body -> 'data' ->> 'token_sha256' = $1 "
        "AND coalesce((i.body -> 'data' ->> 'expires_at')::timestamptz > now(), true) "
        "AND NOT EXISTS (SELECT 1 FROM events r "
        "WHERE r.type = 'crm.apikey.revoked' AND r.subject = i.subject)",
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
                expires_at=event.data.expires_at,
            )
        else:
            revoked: datetime | None = entry["revoked_at"]
            entry["revoked_at"] = event.time if revoked is None else min(revoked, event.time)
    return list(keys.values())
