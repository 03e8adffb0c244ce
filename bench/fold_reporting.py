"""Reporting's fold and store alone, per event: `python -m bench.fold_reporting [N]`.

What the consumer runtime hands the projection (decoded events, batches of 2000 in one
transaction each) without the broker and without the runtime's own decoding, so the figure
is the projection's share of the catch-up cost. Starts an embedded PostgreSQL, applies
reporting's migrations, folds N events (purchases of 50,000 customers as `make bench` sends
them, and one complaint opening per ten purchases), and prints the microseconds per event,
the client's CPU share of them, then the cProfile top entries of a second pass.

Nothing is asserted: speed is reported, never tested.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.run import BATCH, complaint_event, purchase_event
from services.reporting.main import SPEC
from services.reporting.projection import ReportingProjection
from services.reporting.settings import ReportingSettings
from shared import db
from shared.consumer import Projection
from shared.embedded import Database
from shared.events import Event, ValidationContext, validate_event

COMPLAINT_EVERY = 10  # one complaint opening per this many purchases
CONTEXT = ValidationContext(future_tolerance=timedelta(days=1))  # bench times are "now"


def decoded_events(n: int) -> list[Event]:
    """What the runtime would hand over: validated events, purchases with some complaints."""
    events = []
    for i in range(n):
        if i % COMPLAINT_EVERY == COMPLAINT_EVERY - 1:
            events.append(validate_event(complaint_event(i), CONTEXT))
        else:
            events.append(validate_event(purchase_event(i), CONTEXT))
    return events


async def fold_all(pool: db.Pool, projection: Projection, events: Sequence[Event]) -> float:
    """Store every batch in its own transaction, as the runtime does; seconds taken."""
    started = time.perf_counter()
    async with pool.acquire() as conn:
        for start in range(0, len(events), BATCH):
            async with conn.transaction():
                await projection.store(conn, list(events[start : start + BATCH]))
    return time.perf_counter() - started


async def reset(pool: db.Pool) -> None:
    """Empty reporting's tables, so that every pass inserts the same rows into empty tables."""
    tables = await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'reporting'"
        " AND tablename NOT IN ('schema_migrations', 'consumer_offsets', 'applied_events')"
    )
    names = ", ".join(f'reporting."{t["tablename"]}"' for t in tables)
    await pool.execute(f"TRUNCATE {names}")
    await pool.execute("VACUUM ANALYZE")


async def bench(dsn: str, n: int) -> None:
    pool = await db.create_pool(dsn, "reporting", max_size=2)
    try:
        await db.migrate(pool, "reporting", SPEC.migrations, db.CONSUMER_MIGRATIONS)
        projection = ReportingProjection(ZoneInfo(ReportingSettings().timezone))
        events = decoded_events(n)
        cpu = time.process_time()
        seconds = await fold_all(pool, projection, events)
        cpu = time.process_time() - cpu
        print(
            f"reporting fold+store: {seconds / n * 1e6:.1f} us/event ({n / seconds:,.0f} ev/s),"
            f" of which client CPU {cpu / n * 1e6:.1f} us; {n:,} events in batches of {BATCH}"
        )
        await reset(pool)
        profile = cProfile.Profile()
        profile.enable()
        seconds = await fold_all(pool, projection, events)
        profile.disable()
        print(f"profiled pass: {seconds / n * 1e6:.1f} us/event")
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(15)
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip()))
    finally:
        await pool.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory(prefix="fold-reporting-") as workdir:
        database = Database(Path(workdir) / "pg").start()
        try:
            asyncio.run(bench(database.dsn, n))
        finally:
            database.stop()


if __name__ == "__main__":
    main()
