"""Scoring's fold and store alone, per event: `python -m bench.fold_scoring [N]`.

What the consumer runtime hands the projection (decoded events, batches of 2000 in one
transaction each) without the broker and without the runtime's own decoding, so the figure
is the projection's share of the catch-up cost. Starts an embedded PostgreSQL, applies
scoring's migrations, folds N purchases of 50,000 customers as `make bench` sends them, and
prints the microseconds per event and the CPU time per event of this process and of the
PostgreSQL backend (steady on a busy machine, unlike the wall clock), then the cProfile top
entries of a second pass into emptied tables.

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
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from bench.run import BATCH, purchase_event
from services.scoring.main import SPEC
from services.scoring.settings import ScoringSettings
from shared import db
from shared.consumer import Projection
from shared.events import Event, ValidationContext, validate_event
from tooling.embedded import Database

CONTEXT = ValidationContext(future_tolerance=timedelta(days=1))  # bench times are "now"
KEPT = ("schema_migrations", "consumer_offsets", "applied_events")


def decoded_events(n: int) -> list[Event]:
    """What the runtime would hand over: validated purchase events."""
    return [validate_event(purchase_event(i), CONTEXT) for i in range(n)]


@dataclass
class Timing:
    seconds: float = 0.0  # wall clock
    client_cpu: float = 0.0  # this process
    server_cpu: float = 0.0  # the PostgreSQL backend that ran the transactions

    def line(self, n: int) -> str:
        per = [t / n * 1e6 for t in (self.seconds, self.client_cpu, self.server_cpu)]
        return (
            f"{per[0]:.1f} us/event ({n / self.seconds:,.0f} ev/s); CPU per event:"
            f" client {per[1]:.1f} us, PostgreSQL {per[2]:.1f} us"
        )


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def fold_all(pool: db.Pool, projection: Projection, events: Sequence[Event]) -> Timing:
    """Store every batch in its own transaction, as the runtime does. The CPU times do not
    depend on what else the machine runs, unlike the wall clock."""
    async with pool.acquire() as conn:
        backend = psutil.Process(conn.get_server_pid())
        server, client, started = cpu_seconds(backend), time.process_time(), time.perf_counter()
        for start in range(0, len(events), BATCH):
            async with conn.transaction():
                await projection.store(conn, list(events[start : start + BATCH]))
        return Timing(
            time.perf_counter() - started,
            time.process_time() - client,
            cpu_seconds(backend) - server,
        )


async def reset(pool: db.Pool) -> None:
    """Empty scoring's folded tables, so that every pass inserts into empty tables."""
    tables = await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'scoring'"
        " AND NOT tablename = ANY($1::text[])",
        list(KEPT),
    )
    names = ", ".join(f'scoring."{t["tablename"]}"' for t in tables)
    await pool.execute(f"TRUNCATE {names}")
    await pool.execute("VACUUM ANALYZE")


async def bench(dsn: str, n: int) -> None:
    pool = await db.create_pool(dsn, "scoring", max_size=2)
    try:
        await db.migrate(pool, "scoring", *SPEC.migration_directories())
        assert SPEC.projection is not None
        projection = SPEC.projection(ScoringSettings())
        events = decoded_events(n)
        timing = await fold_all(pool, projection, events)
        print(f"scoring fold+store, {n:,} events in batches of {BATCH}: {timing.line(n)}")
        await reset(pool)
        profile = cProfile.Profile()
        profile.enable()
        timing = await fold_all(pool, projection, events)
        profile.disable()
        print(f"profiled pass: {timing.seconds / n * 1e6:.1f} us/event")
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(15)
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip()))
    finally:
        await pool.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory(prefix="fold-scoring-") as workdir:
        database = Database(Path(workdir) / "pg").start()
        try:
            asyncio.run(bench(database.dsn, n))
        finally:
            database.stop()


if __name__ == "__main__":
    main()
