"""Complaints' flow, one way: what a batch of events does (erasure, the pure fold of each
touched complaint, store), what the SLA sweep does (emit what fell due, through the outbox)
and what a crisis check does. The pure parts are `fold.py`, `sla.py` and `crisis.py`; the
SQL is `store.py`.

A batch locks the customers it touches before it reads anything (see `store.py`), so one
customer's events folded by two instances at once, or by an instance and the sweeper, come
out as if folded one after the other.

SLA events are emitted by the sweeper only: a fold stores each complaint's state with the
instant of the earliest SLA event it still owes (`next_sla_at`, in the past when one is
already due, e.g. during a catch-up), and the sweeper emits everything due by now. Their ids
are deterministic, so nothing is emitted twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from services.complaints import fold, sla, store
from services.complaints.domain import Complaint
from services.complaints.fold import Folded, TierChange
from shared.db import Connection
from shared.erasure import (
    erase_stored,
    is_erased,
    record_erasures,
    redacted,
    without_erased_data,
)
from shared.events import (
    ERASED_TYPE,
    RECORDED,
    ClassChanged,
    ComplaintEvent,
    ComplaintOpened,
    Event,
    InteractionLogged,
    SurveyCsat,
    SurveyNps,
    Topic,
    decode_event,
)
from shared.outbox import append_events

TIER_CHANGED = "crm.customer.tier_changed"


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
        await store.lock_customers(conn, customers_folded(events))
        events = await without_erased_data(conn, events)
        erased = await record_erasures(conn, events)
        await _erase_complaint_texts(conn, erased)
        await erase_stored(conn, erased)  # the service's own log: agents' messages
        steps = await _store_complaint_events(conn, events)
        tiers = await store.insert_tiers(conn, tier_changes(events))
        await store.add_signal_counts(conn, signal_counts(events))
        await fold_complaints(conn, steps, tiers, datetime.now(UTC), self._config)


def customers_folded(events: Iterable[Event]) -> set[str]:
    """The customers whose stored state a batch reads and writes: complaint steps, tier
    changes, erasures. (Signals are counted by commutative upserts, and the service's own
    warnings and breaches coming back are not steps: no lock needed.)"""
    return {
        e.subject
        for e in events
        if e.type in (ERASED_TYPE, TIER_CHANGED) or fold.complaint_of(e) is not None
    }


def tier_changes(events: Iterable[Event]) -> list[TierChange]:
    return [
        TierChange(e.subject, e.time, e.id, e.data.new)
        for e in events
        if e.type == TIER_CHANGED and isinstance(e.data, ClassChanged)
    ]


async def _erase_complaint_texts(conn: Connection, erased: dict[str, datetime]) -> None:
    """Complaint texts (descriptions, messages, resolutions) of erased customers go."""
    if not erased:
        return
    changed = []
    for row in await store.complaint_bodies_of(conn, list(erased)):
        event = decode_event(row["body"].encode(), RECORDED)
        if is_erased(event, erased):
            body = redacted(event).to_bytes().decode()
            changed.append((row["complaint_id"], row["event_id"], body))
    await store.replace_complaint_bodies(conn, changed)


async def _store_complaint_events(
    conn: Connection, events: Iterable[Event]
) -> dict[str, list[Event]]:
    """Store the batch's complaint steps; return the new ones (a redelivered event is
    applied once) by complaint."""
    steps = [(cid, e) for e in events if (cid := fold.complaint_of(e)) is not None]
    rows = [(cid, e.id, e.time, e.to_bytes().decode()) for cid, e in steps]
    inserted = await store.insert_complaint_events(conn, rows)
    fresh: dict[str, list[Event]] = defaultdict(list)
    for cid, e in steps:
        if (cid, e.id) in inserted:
            inserted.discard((cid, e.id))  # the same event twice in one batch counts once
            fresh[cid].append(e)
    return fresh


def _opened_signals(data: ComplaintOpened) -> list[tuple[str, str]]:
    found = [("category", data.category), ("channel", data.channel)]
    return found + ([("product", data.product)] if data.product else [])


# By the data's exact type: isinstance against pydantic models goes through ABCMeta, and
# this runs for every event of every batch.
_SIGNALS: dict[type, Callable[[Any], list[tuple[str, str]]]] = {
    ComplaintOpened: _opened_signals,
    SurveyNps: lambda data: [("signal", "nps_detractor")] if data.score <= 6 else [],
    SurveyCsat: lambda data: [("signal", "csat_negative")] if data.score <= 2 else [],
    InteractionLogged: lambda data: (
        [("signal", "interaction_negative")] if data.sentiment == "negative" else []
    ),
}


def signals_of(event: Event) -> list[tuple[str, str]]:
    """The (dimension, value) series an event counts in for crisis detection."""
    found = _SIGNALS.get(type(event.data))
    return [] if found is None else found(event.data)


def signal_counts(events: Iterable[Event]) -> Counter[tuple[str, str, datetime]]:
    counts: Counter[tuple[str, str, datetime]] = Counter()
    for event in events:
        signals = signals_of(event)
        if signals:
            hour = event.time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            for dimension, value in signals:
                counts[(dimension, value, hour)] += 1
    return counts


# ---- the fold -----------------------------------------------------------------------------


async def fold_complaints(
    conn: Connection,
    steps: dict[str, list[Event]],
    tiers: list[TierChange],
    now: datetime,
    config: sla.SlaConfig,
) -> None:
    """Apply new complaint steps and tier changes to the stored states: in order, to the
    state; a late step, or a complaint without one, from the history."""
    tiers_by_customer: dict[str, list[TierChange]] = defaultdict(list)
    for tier in tiers:
        tiers_by_customer[tier.customer_id].append(tier)
    retargeted = await store.complaints_of(conn, list(tiers_by_customer)) if tiers else []
    ids = sorted(set(steps) | set(retargeted))
    stored = await store.load_complaints(conn, ids)
    folded: dict[str, Folded] = {}
    again: list[str] = []
    for cid in ids:
        row = stored.get(cid)
        if row is None or row.sla_state is None:
            again.append(cid)
            continue
        start = Folded(row.complaint, sla.state_from_json(cid, row.sla_state), row.last)
        customer_tiers = tiers_by_customer.get(row.complaint.customer_id, [])
        result = fold.apply_in_order(start, steps.get(cid, []), customer_tiers, config)
        if result is None:
            again.append(cid)
        else:
            folded[cid] = result
    folded |= await _rederive(conn, again, steps, stored, config)
    await _save(conn, folded.values(), now, config, new=set(ids) - set(stored))
    await store.replace_steps(conn, _steps_changed(folded, stored))


def _steps_changed(
    folded: dict[str, Folded], stored: dict[str, store.StoredComplaint]
) -> list[Complaint]:
    """The complaints whose handling steps differ from those stored (most batches: none)."""
    return [
        f.complaint
        for cid, f in folded.items()
        if f.complaint.steps != (stored[cid].complaint.steps if cid in stored else ())
    ]


async def _rederive(
    conn: Connection,
    ids: list[str],
    steps: dict[str, list[Event]],
    stored: dict[str, store.StoredComplaint],
    config: sla.SlaConfig,
) -> dict[str, Folded]:
    """The full fold of complaints from their history and their customer's tier changes.
    A complaint first seen in this batch has no history but the batch's steps."""
    if not ids:
        return {}
    known = [cid for cid in ids if cid in stored]
    history = await store.load_history(conn, known) if known else {}
    customers = {
        cid: stored[cid].complaint.customer_id if cid in stored else steps[cid][0].subject
        for cid in ids
    }
    tiers = await store.tiers_of(conn, sorted(set(customers.values())))
    published = await store.published_sla_events(conn, known) if known else {}
    found = {}
    for cid in ids:
        events = history[cid] if cid in stored else steps[cid]
        previous = stored.get(cid)
        emitted, breaches = published.get(cid, (set(), set()))
        if previous is not None and previous.sla_state is not None:
            kept = sla.state_from_json(cid, previous.sla_state)
            emitted, breaches = emitted | kept.emitted, breaches | kept.published_breaches
        start = fold.new_folded(cid, customers[cid], emitted, breaches)
        found[cid] = fold.derive(start, events, tiers.get(customers[cid], []), config)
    return found


async def _save(
    conn: Connection,
    folded: Iterable[Folded],
    now: datetime,
    config: sla.SlaConfig,
    new: Collection[str] = (),
) -> None:
    saved = [(f, sla.state_to_json(f.clocks), sla.schedule(f.clocks, now, config)) for f in folded]
    await store.save_complaints(conn, saved, new)


# ---- the SLA sweep ------------------------------------------------------------------------


async def sweep_due(conn: Connection, now: datetime, limit: int, config: sla.SlaConfig) -> int:
    """Emit the SLA events due by now of up to `limit` complaints; return how many complaints
    were due."""
    due = await store.due_complaints(conn, now, limit)
    if not due:
        return 0
    await store.lock_customers(conn, {customer for _, customer in due})
    ids = [cid for cid, _ in due]
    stored = await store.load_complaints(conn, ids)  # as of now that the locks are held
    states = {
        cid: Folded(row.complaint, sla.state_from_json(cid, row.sla_state), row.last)
        for cid, row in stored.items()
        if row.sla_state is not None
    }
    states |= await _rederive(conn, [c for c in stored if c not in states], {}, stored, config)
    already = await store.published_sla_events(conn, ids)  # kept across a rebuild of the states
    outgoing: list[Event] = []
    swept = []
    for cid, folded in states.items():
        keys, breaches = already.get(cid, (set(), set()))
        clocks = sla.copy_with(
            folded.clocks,
            emitted=folded.clocks.emitted | keys,
            published_breaches=folded.clocks.published_breaches | breaches,
        )
        found = fold.sla_events_due(folded.complaint, clocks, now, config)
        clocks = fold.mark_published(clocks, found)
        outgoing += found
        swept.append(Folded(folded.complaint, clocks, folded.last))
    await append_events(conn, outgoing)
    await store.record_emitted(
        conn,
        [
            (fold.emitted_key(e), e.data.complaint_id, e.type, e.time)
            for e in outgoing
            if isinstance(e.data, ComplaintEvent)
        ],
    )
    await _save(conn, swept, now, config)
    return len(due)
