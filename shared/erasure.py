"""Right to erasure, the part every service shares.

A `crm.customer.erased` event records the customer in the service's `erasures` table; every
event of that customer up to the erasure instant is then kept without personal data
(`events.redact_body`), whether it was stored before, arrives late, or comes back in a
replay. Events after the erasure instant belong to a new relationship and are kept whole.

Besides the data fields `redact_body` removes, a redacted event loses its CloudEvents
extension attributes (a sender may put anything there) but those the contract reads, and an
interaction's topic and outcome (free text of up to 64 characters, no aggregate uses them).
Kept: ids (the customer's too: late and replayed events are recognised by it), `source`
(identity and order identity are (source, id)), times, amounts, labels, a complaint's
product (crisis detection counts by it), and the erasure event whole (the record of the
erasure). What stays is listed, with reasons, in docs/security.md (Right to erasure).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from shared.auth import SIGNATURE_ATTRIBUTE
from shared.db import Connection
from shared.events import (
    ERASED_TYPE,
    RECORDED,
    SCHEMA_VERSION_ATTRIBUTE,
    Event,
    decode_event,
    redact_body,
    validate_event,
)


async def record_erasures(conn: Connection, events: Sequence[Event]) -> dict[str, datetime]:
    """Store the erasures among `events`; return customer -> erasure instant for them."""
    erased: dict[str, datetime] = {}
    for event in events:
        if event.type == ERASED_TYPE:
            erased[event.subject] = max(erased.get(event.subject, event.time), event.time)
    if erased:
        await conn.execute(
            "INSERT INTO erasures (customer_id, erased_at) "
            "SELECT * FROM unnest($1::text[], $2::timestamptz[]) "
            "ON CONFLICT (customer_id) DO UPDATE "
            "SET erased_at = GREATEST(erasures.erased_at, EXCLUDED.erased_at)",
            list(erased),
            list(erased.values()),
        )
    return erased


async def erasures_for(conn: Connection, customers: Sequence[str]) -> dict[str, datetime]:
    rows = await conn.fetch(
        "SELECT customer_id, erased_at FROM erasures WHERE customer_id = ANY($1::text[])",
        sorted(set(customers)),
    )
    return {r["customer_id"]: r["erased_at"] for r in rows}


def is_erased(event: Event, erasures: dict[str, datetime]) -> bool:
    erased_at = erasures.get(event.subject)
    return erased_at is not None and event.type != ERASED_TYPE and event.time <= erased_at


# Extension attributes a redacted event keeps: those the contract itself interprets.
KEPT_EXTENSIONS = frozenset({SCHEMA_VERSION_ATTRIBUTE, SIGNATURE_ATTRIBUTE, "redacted"})
# Free text that `redact_body` leaves, by event type.
FREE_TEXT = {"crm.interaction.logged": ("topic", "outcome")}


def redacted(event: Event) -> Event:
    extensions = set(event.envelope.model_extra or {}) - KEPT_EXTENSIONS
    body = {k: v for k, v in event.to_json_dict().items() if k not in extensions}
    free_text = FREE_TEXT.get(event.type, ())
    body["data"] = {k: v for k, v in body["data"].items() if k not in free_text}
    return validate_event(redact_body(body), RECORDED)


async def without_erased_data(conn: Connection, events: Sequence[Event]) -> list[Event]:
    """`events` with those of erased customers (up to their erasure) redacted."""
    erasures = await erasures_for(conn, [e.subject for e in events])
    erasures |= {
        e.subject: e.time
        for e in events
        if e.type == ERASED_TYPE and e.time > erasures.get(e.subject, e.time - timedelta(seconds=1))
    }
    if not erasures:
        return list(events)
    return [redacted(e) if is_erased(e, erasures) else e for e in events]


async def erase_stored(conn: Connection, erased: dict[str, datetime]) -> int:
    """Redact the event log (ingest's store, a service's own log) of newly erased customers:
    the relay re-publishes from it, so a replay carries no personal data either."""
    if not erased:
        return 0
    rows = await conn.fetch(
        "SELECT seq, body FROM events WHERE subject = ANY($1::text[]) AND type <> $2",
        list(erased),
        ERASED_TYPE,
    )
    changed = []
    for row in rows:
        event = decode_event(row["body"].encode(), RECORDED)
        if is_erased(event, erased):
            clean = redacted(event)
            changed.append((row["seq"], clean.to_bytes().decode(), clean.content_hash()))
    if changed:
        await conn.execute(
            "UPDATE events SET body = u.body, content_hash = u.hash FROM unnest($1::bigint[], "
            "$2::jsonb[], $3::bytea[]) AS u(seq, body, hash) WHERE events.seq = u.seq",
            [c[0] for c in changed],
            [c[1] for c in changed],
            [c[2] for c in changed],
        )
    return len(changed)
