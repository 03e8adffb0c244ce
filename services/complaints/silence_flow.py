"""Silence after a complaint, and the reach of negative signals, one way.

The complaints consumer does not read purchases, and keeps negative signals only as hourly
counts. A second consumer of the service, `complaints-activity`, reads what a customer does
(purchases, interactions, surveys, complaints, erasures) and folds it into the silence rule
(`silence.py`), and keeps who gave each negative signal through which channel (the reach of
a crisis on the `signal` dimension). The sweeper then emits
`crm.customer.silent_after_complaint` for each window that ended in silence, through the
service's outbox, with a deterministic id: one silence, one event, however often it is found.

The sweeper runs only while this instance's activity consumer has caught up with its
partitions: an act still unread (a purchase behind in its topic) must not let a silence be
signalled that did not happen. An act that reaches the service after its silence was
signalled (days late) cannot take the event back.
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from services.complaints import crisis_store, fold, silence, silence_store
from services.complaints.crisis import Dimension
from services.complaints.projection import signals_of
from services.complaints.resources import ComplaintsResources
from shared.consumer import ConsumerRuntime, ConsumerStatus
from shared.db import Connection, Pool
from shared.events import (
    ERASED_TYPE,
    ComplaintReopened,
    ComplaintResolved,
    CustomerSilentAfterComplaint,
    Event,
    Topic,
    new_event,
)
from shared.outbox import append_events
from shared.service import every, validation_context

log = logging.getLogger(__name__)

SILENT = "crm.customer.silent_after_complaint"
SWEEP_LOCK = zlib.crc32(b"complaints:silence-sweep")
SWEEP_BATCH = 500


class ActivityProjection:
    name = "complaints-activity"
    topics: Sequence[str] = (
        Topic.PURCHASES,
        Topic.INTERACTIONS,
        Topic.SURVEYS,
        Topic.COMPLAINTS,
        Topic.CUSTOMERS,
    )

    def __init__(self, silent_days: int) -> None:
        self._silent_days = silent_days

    async def store(self, conn: Connection, events: list[Event]) -> None:
        await crisis_store.insert_signal_reach(conn, negative_signals(events))
        by_customer = customer_events(events)
        if not by_customer:
            return
        await silence_store.lock_customers(conn, by_customer)
        states = await silence_store.load(conn, by_customer)
        await silence_store.save(
            conn,
            {
                customer: silence.fold(
                    states.get(customer, silence.CustomerSilence()), mine, self._silent_days
                )
                for customer, mine in by_customer.items()
            },
        )


def customer_events(events: Sequence[Event]) -> dict[str, list[Event]]:
    """Per customer, the events the silence rule reads."""
    found: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if (
            e.type == ERASED_TYPE
            or isinstance(e.data, ComplaintResolved | ComplaintReopened)
            or silence.is_activity(e)
        ):
            found[e.subject].append(e)
    return found


def negative_signals(events: Sequence[Event]) -> list[tuple[str, datetime, str, str, str | None]]:
    """(value, time, event_id, customer, channel) of each negative signal, as the complaints
    projection counts them (so the reach covers what the counts cover)."""
    rows = []
    for e in events:
        for dimension, value in signals_of(e):
            if dimension == Dimension.SIGNAL.value:
                channel = getattr(e.data, "channel", None)
                rows.append((value, e.time, e.id, e.subject, channel))
    return rows


# ---- the sweep -----------------------------------------------------------------------------


async def sweep_once(pool: Pool, silent_days: int, now: datetime | None = None) -> int:
    """Emit a signal for every window that ended in silence by now; return how many."""
    now = now or datetime.now(UTC)
    emitted = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK):
                return emitted
            resolved_by = now - timedelta(days=silent_days)
            customers = await silence_store.customers_due(conn, resolved_by, SWEEP_BATCH)
            emitted += await _sweep_customers(conn, customers, silent_days, now)
        if len(customers) < SWEEP_BATCH:
            return emitted


async def _sweep_customers(
    conn: Connection, customers: list[str], silent_days: int, now: datetime
) -> int:
    await silence_store.lock_customers(conn, customers)
    states = await silence_store.load(conn, customers)  # as of now that the locks are held
    signals: list[Event] = []
    remaining = {}
    for customer, state in states.items():
        silent, remaining[customer] = silence.take_due(state, silent_days, now)
        signals += [silence_event(customer, w, silent_days) for w in silent]
    await append_events(conn, signals)  # an id found before is a duplicate, stored once
    await silence_store.save(conn, remaining)
    return len(signals)


def silence_event(customer: str, watch: silence.Watch, silent_days: int) -> Event:
    return new_event(
        SILENT,
        customer,
        CustomerSilentAfterComplaint(
            complaint_id=watch.complaint_id,
            resolved_at=watch.resolved_at,
            silent_days=silent_days,
            last_activity_at=watch.last_activity_before,
        ),
        source=fold.SOURCE,
        event_id=silence.signal_id(customer, watch),
        time=watch.due_at(silent_days),
    )


def caught_up(status: ConsumerStatus) -> bool:
    """Every partition assigned, its log end known, and nothing left to read."""
    known = set(status.lag)
    return bool(status.assigned) and known >= set(status.assigned) and status.total_lag == 0


async def watch_silence(res: ComplaintsResources) -> None:
    """The service task: run the activity consumer, and sweep while it has caught up."""
    settings = res.settings
    days = settings.silence_after_complaint_days
    runtime = ConsumerRuntime(
        settings,
        res.pool,
        ActivityProjection(days),
        validation_context(settings),
        send_dead_letters=False,  # the same records' dead letters are the main consumer's
    )
    res.side_consumers[runtime.name] = runtime  # readiness judges it too
    await runtime.start()
    try:

        async def sweep() -> None:
            found = caught_up(runtime.status) and await sweep_once(res.pool, days)
            if found and res.relay is not None:
                res.relay.notify()

        await every(settings.silence_check_seconds, "silence_sweep", sweep)
    finally:
        await runtime.stop()
