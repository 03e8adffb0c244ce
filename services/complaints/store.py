"""Complaints' SQL, and nothing else: complaint events, the complaints with their folded
state and schedule, tier changes, the SLA events emitted, signal counts and crisis alerts.
The flow that uses it is `projection.py`.

Everything a fold reads and then writes is keyed by customer (a complaint's events carry its
customer as subject; tier changes and erasures are per customer), and `lock_customers` takes
those keys for the whole transaction before the first read, so two consumers folding one
customer's events from different partitions, or a consumer and the sweeper, take turns.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any

from services.complaints.domain import Complaint, StepDone
from services.complaints.fold import Folded, Position, TierChange
from services.complaints.sla import Schedule, copy_with
from shared.db import Connection, Pool, as_columns, insert_unnest, unnest
from shared.events import RECORDED, Event, decode_event

# A complaint's columns; its steps are rows of complaint_steps.
_COLUMNS = [f.name for f in fields(Complaint) if f.name != "steps"]
_complaint_fields = attrgetter(*_COLUMNS)
_BLANK = Complaint("", "")  # copied from: faster than a frozen dataclass's __init__


def _lock_key(namespace: str, key: str) -> int:
    return zlib.crc32(f"{namespace}:{key}".encode())


async def lock_customers(conn: Connection, customers: Collection[str]) -> None:
    """Transaction-scoped locks on the customers, all in one statement and in key order, so
    that two lockers cannot deadlock."""
    keys = sorted({_lock_key("customer", c) for c in customers})
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k", keys
        )


async def lock_complaint(conn: Connection, complaint_id: str) -> None:
    """Agent commands on one complaint take turns (decide on its state, then append)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key("complaint", complaint_id))


# ---- events -------------------------------------------------------------------------------


async def insert_complaint_events(
    conn: Connection, rows: Sequence[tuple[str, str, datetime, str]]
) -> set[tuple[str, str]]:
    """Store (complaint_id, event_id, time, body) rows; return the keys that were new."""
    if not rows:
        return set()
    inserted = await conn.fetch(
        insert_unnest(
            "complaint_events",
            "complaint_id text",
            "event_id text",
            "time timestamptz",
            "body jsonb",
            then="ON CONFLICT DO NOTHING RETURNING complaint_id, event_id",
        ),
        *as_columns(rows, 4),
    )
    return {(r[0], r[1]) for r in inserted}


async def complaint_bodies_of(conn: Connection, customers: list[str]) -> list[Any]:
    """(complaint_id, event_id, body) of the customers' complaint events."""
    return await conn.fetch(
        "SELECT complaint_id, event_id, body FROM complaint_events "
        "WHERE body->>'subject' = ANY($1::text[])",
        customers,
    )


async def replace_complaint_bodies(
    conn: Connection, changed: Sequence[tuple[str, str, str]]
) -> None:
    if changed:
        await conn.execute(
            f"UPDATE complaint_events SET body = u.body FROM {unnest('text', 'text', 'jsonb')}"
            " AS u(cid, eid, body) WHERE complaint_id = u.cid AND event_id = u.eid",
            *as_columns(changed, 3),
        )


async def load_history(conn: Connection | Pool, complaint_ids: list[str]) -> dict[str, list[Event]]:
    records = await conn.fetch(
        "SELECT complaint_id, body FROM complaint_events WHERE complaint_id = ANY($1::text[])",
        complaint_ids,
    )
    history: dict[str, list[Event]] = defaultdict(list)
    for r in records:
        history[r["complaint_id"]].append(decode_event(r["body"].encode(), RECORDED))
    return history


async def insert_tiers(conn: Connection, tiers: Sequence[TierChange]) -> list[TierChange]:
    """Store tier changes; return those that were new."""
    if not tiers:
        return []
    inserted = await conn.fetch(
        insert_unnest(
            "customer_tiers",
            "customer_id text",
            "time timestamptz",
            "event_id text",
            "tier text",
            then="ON CONFLICT DO NOTHING RETURNING customer_id, time, event_id, tier",
        ),
        *as_columns(((t.customer_id, t.time, t.event_id, t.tier) for t in tiers), 4),
    )
    return [TierChange(*r) for r in inserted]


async def tiers_of(conn: Connection | Pool, customers: list[str]) -> dict[str, list[TierChange]]:
    rows = await conn.fetch(
        "SELECT customer_id, time, event_id, tier FROM customer_tiers "
        "WHERE customer_id = ANY($1::text[])",
        customers,
    )
    found: dict[str, list[TierChange]] = defaultdict(list)
    for r in rows:
        found[r[0]].append(TierChange(*r))
    return found


async def add_signal_counts(conn: Connection, counts: dict[tuple[str, str, datetime], int]) -> None:
    """Add to the hourly counts (commutative: concurrent batches add up in any order; keys
    in order, so two batches wait on each other's rows without deadlock)."""
    if counts:
        keys = sorted(counts)
        await conn.execute(
            insert_unnest(
                "signal_counts",
                "dimension text",
                "value text",
                "hour timestamptz",
                "count int",
                then="ON CONFLICT (dimension, value, hour) DO UPDATE "
                "SET count = signal_counts.count + EXCLUDED.count",
            ),
            *as_columns(((*k, counts[k]) for k in keys), 4),
        )


# ---- complaints and their folded state ----------------------------------------------------


@dataclass(frozen=True)
class StoredComplaint:
    complaint: Complaint
    sla_state: bytes | None  # sla.state_to_json; None: re-derive from the history
    last: Position | None


async def complaints_of(conn: Connection, customers: list[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT complaint_id FROM complaints WHERE customer_id = ANY($1::text[])", customers
    )
    return [r[0] for r in rows]


async def load_complaints(conn: Connection, complaint_ids: list[str]) -> dict[str, StoredComplaint]:
    rows = await conn.fetch(
        f"SELECT {', '.join(_COLUMNS)}, sla_state, last_time, last_id FROM complaints "
        "WHERE complaint_id = ANY($1::text[])",
        complaint_ids,
    )
    width = len(_COLUMNS)
    steps = await steps_of(conn, complaint_ids) if rows else {}
    return {
        r[0]: StoredComplaint(
            copy_with(
                _BLANK, **dict(zip(_COLUMNS, r[:width], strict=True)), steps=steps.get(r[0], ())
            ),
            r[width],
            None if r[width + 1] is None else (r[width + 1], r[width + 2]),
        )
        for r in rows
    }


_SAVED_TYPES = [
    *("text", "text", "text", "text", "text", "text", "text"),  # complaint_id .. product
    *("timestamptz", "timestamptz", "timestamptz", "timestamptz"),  # opened_at .. closed_at
    *("int", "int", "timestamptz", "int", "text"),  # escalation_level .. before_waiting
    "timestamptz",  # reopened_at
    *("text", "bool", "timestamptz", "timestamptz"),  # tier, breached, next_due_at, next_sla_at
    *("bytea", "timestamptz", "text"),  # sla_state, last_time, last_id
]
_SAVED = [*_COLUMNS, "tier", "breached", "next_due_at", "next_sla_at"]
_SAVED += ["sla_state", "last_time", "last_id"]


async def save_complaints(
    conn: Connection, saved: Sequence[tuple[Folded, bytes, Schedule]], new: Collection[str]
) -> None:
    """Write each complaint's workflow state, schedule and folded SLA state: the `new` ones
    (no row yet; their customers are locked, so nobody else inserts them) with one COPY, the
    others with one update."""
    rows = [
        (
            *_complaint_fields(f.complaint),
            str(f.clocks.tier),
            plan.breached,
            plan.next_due_at,
            plan.next_sla_at,
            state,
            *(f.last or (None, None)),
        )
        for f, state, plan in saved
    ]
    inserted = [r for r in rows if r[0] in new]
    if inserted:
        await conn.copy_records_to_table("complaints", records=inserted, columns=_SAVED)
    updated = [r for r in rows if r[0] not in new]
    if updated:
        changes = ", ".join(f"{c} = u.{c}" for c in _SAVED[1:])
        await conn.execute(
            f"UPDATE complaints SET {changes}, updated_at = now() "
            f"FROM {unnest(*_SAVED_TYPES)} AS u({', '.join(_SAVED)}) "
            "WHERE complaints.complaint_id = u.complaint_id",
            *as_columns(updated, len(_SAVED)),
        )


async def steps_of(
    conn: Connection | Pool, complaint_ids: list[str]
) -> dict[str, tuple[StepDone, ...]]:
    """Each complaint's steps done, in time order (as the fold recorded them)."""
    rows = await conn.fetch(
        "SELECT complaint_id, step, cycle, started_at, done_at FROM complaint_steps "
        "WHERE complaint_id = ANY($1::text[]) ORDER BY complaint_id, seq",
        complaint_ids,
    )
    found: dict[str, list[StepDone]] = defaultdict(list)
    for r in rows:
        found[r[0]].append(StepDone(r[1], r[2], r[3], r[4]))
    return {cid: tuple(steps) for cid, steps in found.items()}


async def replace_steps(conn: Connection, complaints: Sequence[Complaint]) -> None:
    """Store the complaints' steps in place of what was stored for them (a late event can
    change a recorded step, so they are written whole)."""
    if not complaints:
        return
    await conn.execute(
        "DELETE FROM complaint_steps WHERE complaint_id = ANY($1::text[])",
        [c.complaint_id for c in complaints],
    )
    rows = [
        (c.complaint_id, seq, s.step, s.cycle, s.started_at, s.done_at)
        for c in complaints
        for seq, s in enumerate(c.steps)
    ]
    if rows:
        await conn.copy_records_to_table(
            "complaint_steps",
            records=rows,
            columns=["complaint_id", "seq", "step", "cycle", "started_at", "done_at"],
        )


async def steps_done_between(pool: Pool, start: datetime, end: datetime) -> list[StepDone]:
    """The steps completed in [start, end), every complaint's."""
    rows = await pool.fetch(
        "SELECT step, cycle, started_at, done_at FROM complaint_steps "
        "WHERE done_at >= $1 AND done_at < $2",
        start,
        end,
    )
    return [StepDone(*r) for r in rows]


async def due_complaints(conn: Connection, now: datetime, limit: int) -> list[tuple[str, str]]:
    """(complaint_id, customer_id) of complaints with an SLA event due by now."""
    rows = await conn.fetch(
        "SELECT complaint_id, customer_id FROM complaints WHERE next_sla_at <= $1 "
        "ORDER BY complaint_id LIMIT $2",
        now,
        limit,
    )
    return [(r[0], r[1]) for r in rows]


PublishedSla = tuple[set[str], set[tuple[str, datetime]]]


async def published_sla_events(
    conn: Connection | Pool, complaint_ids: list[str]
) -> dict[str, PublishedSla]:
    """Per complaint, the keys of the SLA events emitted and (key, instant) of its breaches
    among them: a published breach stands even if a late event would make its clock met."""
    rows = await conn.fetch(
        "SELECT complaint_id, key, kind, at FROM sla_emitted WHERE complaint_id = ANY($1::text[])",
        complaint_ids,
    )
    found: dict[str, PublishedSla] = defaultdict(lambda: (set(), set()))
    for r in rows:
        keys, breaches = found[r[0]]
        keys.add(r[1])
        if r[2] == "crm.complaint.sla_breached":
            breaches.add((r[1], r[3]))
    return found


async def record_emitted(
    conn: Connection, emitted: Sequence[tuple[str, str, str, datetime]]
) -> None:
    """(key, complaint_id, kind, at) of SLA events appended to the outbox."""
    if emitted:
        await conn.execute(
            insert_unnest(
                "sla_emitted", "key text", "complaint_id text", "kind text", "at timestamptz"
            ),
            *as_columns(emitted, 4),
        )


# ---- crisis detection ---------------------------------------------------------------------


async def crisis_state_for_update(conn: Connection) -> Any:
    """(last_hour, detectors) of the detectors, locked until the transaction ends."""
    return await conn.fetchrow("SELECT last_hour, detectors FROM crisis_state FOR UPDATE")


async def first_signal_hour(conn: Connection) -> datetime | None:
    first: datetime | None = await conn.fetchval("SELECT min(hour) FROM signal_counts")
    return first


async def signal_counts_between(conn: Connection, first: datetime, last: datetime) -> list[Any]:
    return await conn.fetch(
        "SELECT dimension, value, hour, count FROM signal_counts WHERE hour BETWEEN $1 AND $2",
        first,
        last,
    )


async def save_crisis_state(conn: Connection, last_hour: datetime, detectors: str) -> None:
    await conn.execute(
        "UPDATE crisis_state SET last_hour = $1, detectors = $2::jsonb", last_hour, detectors
    )


# ---- read side ----------------------------------------------------------------------------


async def load_complaint(pool: Pool, complaint_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {_SHOWN} FROM complaints WHERE complaint_id = $1", complaint_id
    )
    return dict(row) if row else None


async def own_pending(conn: Connection | Pool, complaint_id: str) -> list[Event]:
    """Commands this service stored for the complaint that may not have come back yet."""
    rows = await conn.fetch(
        "SELECT body FROM events WHERE topic = 'crm.complaints' "
        "AND body->'data'->>'complaint_id' = $1",
        complaint_id,
    )
    return [decode_event(r["body"].encode(), RECORDED) for r in rows]


async def customer_tiers(pool: Pool, customer_id: str) -> list[TierChange]:
    return (await tiers_of(pool, [customer_id]))[customer_id]


# What readers see of a complaint (not its folded state).
_SHOWN = ", ".join([*_COLUMNS, "tier", "breached", "next_due_at", "next_sla_at", "updated_at"])

_PRIORITY_RANK = (
    "CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END"
)


async def queue(
    pool: Pool,
    *,
    status: str | None,
    breached: bool | None,
    due_before: datetime | None,
    priority: str | None,
    tier: str | None,
    limit: int,
    after: tuple[float, str] | None,
) -> list[dict[str, Any]]:
    """Most urgent first: the earliest deadline of a running clock (breached ones are
    earliest), complaints without a running clock last; keyset-paged on (deadline, id)."""
    key = "coalesce(extract(epoch FROM next_due_at), 'Infinity'::float8)"
    rows = await pool.fetch(
        f"""
        SELECT {_SHOWN}, {key} AS sort_key FROM complaints
        WHERE ($1::text IS NULL OR status = $1) AND ($2::bool IS NULL OR breached = $2)
          AND ($3::timestamptz IS NULL OR next_due_at < $3)
          AND ($4::text IS NULL OR priority = $4) AND ($5::text IS NULL OR tier = $5)
          AND ($6::float8 IS NULL OR ({key}, complaint_id) > ($6::float8, $7::text))
        ORDER BY {key}, complaint_id
        LIMIT $8
        """,
        status,
        breached,
        due_before,
        priority,
        tier,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [dict(r) for r in rows]
