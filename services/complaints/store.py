"""Complaints' SQL: complaint events, the derived complaints with their SLA state, the SLA
events they emit, signal counts and crisis alerts.

Every change to a complaint goes through `rederive`: load its events, fold the workflow and
the SLA clocks (pure, `domain.py` and `sla.py`), emit the SLA events due by now (their ids
are deterministic, so a replay or a second instance emits nothing twice), and store the
state with the instant of its next SLA event, which the sweeper waits for.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.complaints import crisis, sla
from services.complaints.domain import (
    Complaint,
    complaint_id_of,
    derive,
    sla_event,
    tier_event,
)
from shared.db import Connection, Pool
from shared.erasure import (
    erase_stored,
    is_erased,
    record_erasures,
    redacted,
    without_erased_data,
)
from shared.events import (
    STORED,
    ClassChanged,
    ComplaintEvent,
    ComplaintOpened,
    CrisisDetected,
    Event,
    InteractionLogged,
    SlaClockStopped,
    SlaEscalation,
    SlaEventData,
    SurveyCsat,
    SurveyNps,
    Topic,
    decode_event,
    new_event,
)
from shared.outbox import append_events

SOURCE = "crm/complaints"
_COLUMNS = [f.name for f in fields(Complaint)]
# Stored events are re-validated on load; they were valid when they arrived.


class ComplaintsProjection:
    name = "complaints"
    # crm.customers for erasures: a complaint's texts are personal data.
    topics: Sequence[str] = (
        Topic.COMPLAINTS,
        Topic.DERIVED,
        Topic.SURVEYS,
        Topic.INTERACTIONS,
        Topic.CUSTOMERS,
    )

    def __init__(self, config: sla.SlaConfig) -> None:
        self._config = config

    async def store(self, conn: Connection, events: list[Event]) -> None:
        events = await without_erased_data(conn, events)
        erased = await record_erasures(conn, events)
        await _erase_stored(conn, erased)
        await erase_stored(conn, erased)  # the service's own log: agents' messages
        touched = await _store_complaint_events(conn, events)
        touched |= await _store_tiers(conn, events)
        await _count_signals(conn, events)
        await rederive(conn, sorted(touched), datetime.now(UTC), self._config)


async def _erase_stored(conn: Connection, erased: dict[str, datetime]) -> None:
    """Complaint texts (descriptions, messages, resolutions) of erased customers go."""
    if not erased:
        return
    rows = await conn.fetch(
        "SELECT complaint_id, event_id, body FROM complaint_events "
        "WHERE body->>'subject' = ANY($1::text[])",
        list(erased),
    )
    changed = []
    for row in rows:
        event = decode_event(row["body"].encode(), STORED)
        if is_erased(event, erased):
            changed.append(
                (row["complaint_id"], row["event_id"], redacted(event).to_bytes().decode())
            )
    if changed:
        await conn.execute(
            "UPDATE complaint_events SET body = u.body FROM unnest($1::text[], $2::text[], "
            "$3::jsonb[]) AS u(cid, eid, body) WHERE complaint_id = u.cid AND event_id = u.eid",
            [c[0] for c in changed],
            [c[1] for c in changed],
            [c[2] for c in changed],
        )


def _is_complaint_event(event: Event) -> bool:
    # The service's own automatic escalations come back from crm.derived and count as steps.
    return event.topic == Topic.COMPLAINTS or isinstance(event.data, SlaEscalation)


async def _store_complaint_events(conn: Connection, events: list[Event]) -> set[str]:
    rows = [
        (cid, e.id, e.time, e.to_bytes().decode())
        for e in events
        if _is_complaint_event(e) and (cid := complaint_id_of(e)) is not None
    ]
    if rows:
        await conn.execute(
            "INSERT INTO complaint_events (complaint_id, event_id, time, body) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[]) "
            "ON CONFLICT DO NOTHING",
            *[[r[i] for r in rows] for i in range(4)],
        )
    return {r[0] for r in rows}


async def _store_tiers(conn: Connection, events: list[Event]) -> set[str]:
    """Record tier changes; return the open complaints whose clocks they retarget."""
    rows = [
        (e.subject, e.time, e.id, e.data.new)
        for e in events
        if e.type == "crm.customer.tier_changed" and isinstance(e.data, ClassChanged)
    ]
    if not rows:
        return set()
    await conn.execute(
        "INSERT INTO customer_tiers (customer_id, time, event_id, tier) "
        "SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[]) "
        "ON CONFLICT DO NOTHING",
        *[[r[i] for r in rows] for i in range(4)],
    )
    open_complaints = await conn.fetch(
        "SELECT complaint_id FROM complaints WHERE customer_id = ANY($1::text[]) "
        "AND status NOT IN ('resolved', 'closed')",
        sorted({r[0] for r in rows}),
    )
    return {r[0] for r in open_complaints}


def signals_of(event: Event) -> list[tuple[str, str]]:
    """The (dimension, value) series an event counts in for crisis detection."""
    data = event.data
    if isinstance(data, ComplaintOpened):
        found = [("category", data.category), ("channel", data.channel)]
        return found + ([("product", data.product)] if data.product else [])
    if isinstance(data, SurveyNps) and data.score <= 6:
        return [("signal", "nps_detractor")]
    if isinstance(data, SurveyCsat) and data.score <= 2:
        return [("signal", "csat_negative")]
    if isinstance(data, InteractionLogged) and data.sentiment == "negative":
        return [("signal", "interaction_negative")]
    return []


async def _count_signals(conn: Connection, events: list[Event]) -> None:
    counts: Counter[tuple[str, str, datetime]] = Counter()
    for event in events:
        hour = event.time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        for dimension, value in signals_of(event):
            counts[(dimension, value, hour)] += 1
    if counts:
        keys = sorted(counts)
        await conn.execute(
            "INSERT INTO signal_counts (dimension, value, hour, count) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[]) "
            "ON CONFLICT (dimension, value, hour) DO UPDATE "
            "SET count = signal_counts.count + EXCLUDED.count",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [counts[k] for k in keys],
        )


# ---- re-derivation and SLA events ---------------------------------------------------------


def _lock_key(complaint_id: str) -> int:
    return zlib.crc32(f"complaint:{complaint_id}".encode())


async def load_history(conn: Connection | Pool, complaint_ids: list[str]) -> dict[str, list[Event]]:
    records = await conn.fetch(
        "SELECT complaint_id, body FROM complaint_events WHERE complaint_id = ANY($1::text[])",
        complaint_ids,
    )
    history: dict[str, list[Event]] = defaultdict(list)
    for r in records:
        history[r["complaint_id"]].append(decode_event(r["body"].encode(), STORED))
    return history


async def _tiers(conn: Connection | Pool, customers: list[str]) -> dict[str, list[Any]]:
    rows = await conn.fetch(
        "SELECT customer_id, time, event_id, tier FROM customer_tiers "
        "WHERE customer_id = ANY($1::text[])",
        customers,
    )
    found: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        found[r["customer_id"]].append(r)
    return found


async def _emitted(conn: Connection | Pool, complaint_ids: list[str]) -> dict[str, set[str]]:
    rows = await conn.fetch(
        "SELECT complaint_id, key FROM sla_emitted WHERE complaint_id = ANY($1::text[])",
        complaint_ids,
    )
    found: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        found[r["complaint_id"]].add(r["key"])
    return found


def sla_state(
    complaint_id: str,
    events: list[Event],
    tiers: list[Any],
    emitted: set[str],
    config: sla.SlaConfig,
) -> sla.SlaState:
    timeline = [e for e in map(sla_event, events) if e is not None]
    timeline += [tier_event(f"tier:{t['event_id']}", t["time"], t["tier"]) for t in tiers]
    state = sla.fold_events(complaint_id, timeline, config)
    return sla.SlaState(**{**state.__dict__, "emitted": frozenset(emitted)})


async def rederive(
    conn: Connection, complaint_ids: list[str], now: datetime, config: sla.SlaConfig
) -> None:
    """Fold, emit the SLA events due by `now`, and store each complaint (in `conn`'s
    transaction; a per-complaint lock keeps a sweeper and a consumer from racing)."""
    if not complaint_ids:
        return
    # One round trip for all the locks, taken in key order so two lockers cannot deadlock.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT unnest($1::bigint[]) AS k "
        "ORDER BY k) AS keys",
        [_lock_key(c) for c in complaint_ids],
    )
    history = await load_history(conn, complaint_ids)
    opened = {cid: evs for cid, evs in history.items() if evs}
    tiers = await _tiers(conn, sorted({evs[0].subject for evs in opened.values()}))
    emitted = await _emitted(conn, list(opened))
    rows, outgoing = [], []
    for complaint_id, events in opened.items():
        complaint = derive(complaint_id, events[0].subject, events)
        state = sla_state(
            complaint_id, events, tiers[complaint.customer_id], emitted[complaint_id], config
        )
        outgoing += sla_events_due(complaint, state, now, config)
        rows.append((complaint, *_schedule(state, now, config)))
    await _emit(conn, outgoing)
    await _save(conn, rows)


def sla_events_due(
    complaint: Complaint, state: sla.SlaState, now: datetime, config: sla.SlaConfig
) -> list[Event]:
    """Warnings, breaches and escalations due by now, and clocks that stopped, as events."""
    found = [_sla_event(complaint, state, e) for e in sla.due_sla_events(state, now, config)]
    for clock in state.clocks:
        key = f"{complaint.complaint_id}:{clock.metric}:{clock.cycle}:stopped:{len(clock.segments)}"
        if clock.phase is sla.Phase.STOPPED and key not in state.emitted:
            found.append(_stopped_event(complaint, state, clock, key))
    return found


def _common(
    complaint: Complaint, state: sla.SlaState, metric: str, cycle: int, target: timedelta
) -> dict[str, Any]:
    return {
        "complaint_id": complaint.complaint_id,
        "metric": metric,
        "cycle": cycle,
        "target_seconds": target.total_seconds(),
        "priority": state.priority.value,
        "tier": state.tier.value,
        "category": complaint.category,
        "channel": complaint.channel,
    }


def _sla_event(complaint: Complaint, state: sla.SlaState, due: sla.SlaEvent) -> Event:
    common = _common(complaint, state, due.metric.value, due.cycle, due.target)
    data: SlaEventData = (
        SlaEscalation(**common, level=due.level or 1)
        if due.kind is sla.SlaEventKind.ESCALATED_AUTO
        else SlaEventData(**common)
    )
    return new_event(
        f"crm.complaint.{due.kind.value}",
        complaint.customer_id,
        data,
        source=SOURCE,
        event_id=f"sla:{due.key}",
        time=due.at,
    )


def _stopped_event(complaint: Complaint, state: sla.SlaState, clock: sla.Clock, key: str) -> Event:
    stopped_at = clock.segments[-1].end or clock.segments[-1].start
    data = SlaClockStopped(
        **_common(complaint, state, clock.metric.value, clock.cycle, clock.target),
        outcome="breached" if clock.breached_at else "met",
        elapsed_seconds=clock.accumulated.total_seconds(),
    )
    return new_event(
        "crm.complaint.sla_clock_stopped",
        complaint.customer_id,
        data,
        source=SOURCE,
        event_id=f"sla:{key}",
        time=stopped_at,
    )


def _schedule(
    state: sla.SlaState, now: datetime, config: sla.SlaConfig
) -> tuple[str, bool, datetime | None, datetime | None]:
    """(tier, breached, next_due_at, next_sla_at) from the clocks as of now."""
    views = sla.clock_views(state, now, config).values()
    running = [v for v in views if v.status is sla.ClockStatus.RUNNING]
    due = [v.due_at for v in running if v.due_at is not None]
    upcoming = [t for v in running for t in (v.warn_at, v.due_at) if t is not None and t > now]
    breached = any(v.status is sla.ClockStatus.BREACHED for v in views)
    return state.tier.value, breached, min(due, default=None), min(upcoming, default=None)


async def _emit(conn: Connection, events: list[Event]) -> None:
    if not events:
        return
    await append_events(conn, events)
    await conn.execute(
        "INSERT INTO sla_emitted (key, complaint_id, kind, at) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) "
        "ON CONFLICT DO NOTHING",
        [e.id.removeprefix("sla:") for e in events],
        [e.data.complaint_id for e in events if isinstance(e.data, ComplaintEvent)],
        [e.type for e in events],
        [e.time for e in events],
    )


async def _save(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    extra = ["tier", "breached", "next_due_at", "next_sla_at"]
    columns = [*_COLUMNS, *extra]
    types = [
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "int",
        "int",
        "timestamptz",
        "int",
        "text",
        "text",
        "bool",
        "timestamptz",
        "timestamptz",
    ]
    values: list[list[Any]] = [[asdict(r[0])[name] for r in rows] for name in _COLUMNS]
    values += [[r[i + 1] for r in rows] for i in range(len(extra))]
    params = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])
    await conn.execute(
        f"INSERT INTO complaints ({', '.join(columns)}) SELECT * FROM unnest({params}) "
        f"ON CONFLICT (complaint_id) DO UPDATE SET {updates}, updated_at = now()",
        *values,
    )


async def due_complaints(conn: Connection, now: datetime, limit: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT complaint_id FROM complaints WHERE next_sla_at <= $1 "
        "ORDER BY complaint_id LIMIT $2",
        now,
        limit,
    )
    return [r[0] for r in rows]


# ---- crisis detection ---------------------------------------------------------------------


async def evaluate_crisis(conn: Connection, now: datetime, config: crisis.CrisisConfig) -> int:
    """Feed every closed hour not yet seen to the detectors; store and emit their alerts.

    Returns the number of alerts. Counts that arrive for an hour already evaluated are kept
    (reports see them) but do not re-run the detector: its state only moves forward.
    """
    state = await conn.fetchrow("SELECT last_hour, detectors FROM crisis_state FOR UPDATE")
    assert state is not None
    last_closed = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=1
    )
    first = (
        state["last_hour"] + timedelta(hours=1)
        if state["last_hour"]
        else await conn.fetchval("SELECT min(hour) FROM signal_counts")
    )
    if first is None or first > last_closed:
        return 0
    rows = await conn.fetch(
        "SELECT dimension, value, hour, count FROM signal_counts WHERE hour BETWEEN $1 AND $2",
        first,
        last_closed,
    )
    by_hour: dict[datetime, dict[crisis.SeriesKey, int]] = defaultdict(dict)
    for r in rows:
        series = crisis.SeriesKey(crisis.Dimension(r["dimension"]), r["value"])
        by_hour[r["hour"]][series] = r["count"]
    detectors = {s.series: s for s in map(crisis.state_from_dict, orjson.loads(state["detectors"]))}
    alerts: list[crisis.CrisisAlert] = []
    hour = first
    while hour <= last_closed:
        detectors, found = crisis.observe_all(detectors, hour, by_hour.get(hour, {}), config)
        alerts += found
        hour += timedelta(hours=1)
    await conn.execute(
        "UPDATE crisis_state SET last_hour = $1, detectors = $2::jsonb",
        last_closed,
        orjson.dumps([crisis.state_to_dict(d) for d in detectors.values()]).decode(),
    )
    await _store_alerts(conn, alerts)
    return len(alerts)


async def _store_alerts(conn: Connection, alerts: list[crisis.CrisisAlert]) -> None:
    if not alerts:
        return
    await conn.executemany(
        "INSERT INTO crisis_alerts (key, dimension, value, window_start, window_end, count,"
        " baseline, score) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        [
            (
                a.key,
                a.series.dimension.value,
                a.series.value,
                a.window_start,
                a.window_end,
                a.count,
                a.baseline,
                a.score,
            )
            for a in alerts
        ],
    )
    events = [
        new_event(
            "crm.crisis.detected",
            f"crisis:{a.series.dimension.value}",
            CrisisDetected(
                dimension=a.series.dimension.value,
                value=a.series.value[:128],
                window_start=a.window_start,
                window_end=a.window_end,
                count=a.count,
                baseline=a.baseline,
                score=a.score,
                decision_interval=a.decision_interval,
            ),
            source=SOURCE,
            event_id=a.key,
            time=a.window_end,
        )
        for a in alerts
    ]
    await append_events(conn, events)


# ---- read side ----------------------------------------------------------------------------


async def load_complaint(pool: Pool, complaint_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM complaints WHERE complaint_id = $1", complaint_id)
    return dict(row) if row else None


async def own_pending(conn: Connection | Pool, complaint_id: str) -> list[Event]:
    """Commands this service stored for the complaint that may not have come back yet."""
    rows = await conn.fetch(
        "SELECT body FROM events WHERE topic = 'crm.complaints' "
        "AND body->'data'->>'complaint_id' = $1",
        complaint_id,
    )
    return [decode_event(r["body"].encode(), STORED) for r in rows]


async def customer_tiers(pool: Pool, customer_id: str) -> list[Any]:
    return (await _tiers(pool, [customer_id]))[customer_id]


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
        SELECT *, {key} AS sort_key FROM complaints
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


async def alerts(pool: Pool, start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT key, dimension, value, window_start, window_end, count, baseline, score,"
        " detected_at FROM crisis_alerts WHERE ($1::timestamptz IS NULL OR window_end >= $1)"
        " AND ($2::timestamptz IS NULL OR window_start <= $2) ORDER BY window_end DESC",
        start,
        end,
    )
    return [dict(r) for r in rows]
