"""Complaints' fold and store, in process: `python -m bench.fold_complaints [N]`.

What the consumer runtime calls for every batch, `projection.store(conn, events)`, timed on
an embedded PostgreSQL with the complaints' migrations, over N already decoded events in
batches of 2000 (the runtime's default), one transaction per batch. The events are the
catch-up benchmark's complaint openings (bench/run.py) with some follow-up steps of the same
complaints (responses, waits, replies, resolutions) arriving a few batches later, in time
order per complaint as a consumer usually sees them. Prints microseconds per event (wall
clock, and CPU of this process and of the PostgreSQL backend), the time the SLA sweep then
takes to emit what the folds left due (folds emit nothing themselves), and the top of a
cProfile of a second, identical run on a fresh database (the profile slows what it
measures, so the figures come from the run without it).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import pstats
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.run import NOW, complaint_event
from services.complaints.jobs import SWEEP_BATCH
from services.complaints.main import SPEC
from services.complaints.projection import ComplaintsProjection, sweep_due
from services.complaints.settings import ComplaintsSettings
from services.complaints.sla import SlaConfig
from shared import db
from shared.events import RECORDED, Event, ValidationContext, decode_event, validate_event
from shared.service import GC_YOUNG_THRESHOLD
from tooling.embedded import Database

BATCH = 2000
TOP = 25  # profile lines shown
FOLLOW_UP_LAG = 3 * BATCH  # a complaint's next steps come this many events after its opening
CONTEXT = ValidationContext(future_tolerance=timedelta(days=1))


def follow_ups(opened: dict[str, Any]) -> list[dict[str, Any]]:
    """Later steps for some complaints: every 4th is answered, every 8th also waits on the
    customer and hears back, every 16th is resolved."""
    n = int(opened["id"].rsplit("-", 1)[1])
    if n % 4 or n % 40_000 < 100:  # answered, and all of it in the past
        return []
    steps = ["responded"] + (["waiting", "customer_replied"] if n % 8 == 0 else [])
    steps += ["resolved"] if n % 16 == 0 else []
    start = NOW - timedelta(minutes=n % 40_000)
    return [
        opened
        | {
            "id": f"{opened['id']}-{kind}",
            "type": f"crm.complaint.{kind}",
            "time": (start + timedelta(minutes=20 * (i + 1))).isoformat(),
            "data": {"complaint_id": opened["data"]["complaint_id"]},
        }
        for i, kind in enumerate(steps)
    ]


def stream(n: int) -> list[bytes]:
    """n events as stored: openings, each complaint's follow-ups FOLLOW_UP_LAG events later."""
    raw: list[dict[str, Any]] = []
    pending: list[tuple[int, dict[str, Any]]] = []
    k = 0
    while len(raw) < n:
        while pending and pending[0][0] <= len(raw):
            raw.append(pending.pop(0)[1])
        opened = complaint_event(k, prefix="b")
        raw.append(opened)
        pending += [(len(raw) + FOLLOW_UP_LAG, step) for step in follow_ups(opened)]
        k += 1
    return [validate_event(r, CONTEXT).to_bytes() for r in raw[:n]]


async def fresh_pool(database: Database, name: str) -> db.Pool:
    pool = await db.create_pool(database.create_database(name), SPEC.schema)
    await db.migrate(pool, SPEC.schema, *SPEC.migration_directories())
    return pool


def decoded(records: list[bytes]) -> list[Event]:
    """As the consumer runtime hands them over: freshly decoded, nothing cached yet."""
    return [decode_event(r, RECORDED) for r in records]


@dataclass(frozen=True)
class Timing:
    wall: float
    client_cpu: float  # this process
    server_cpu: float  # the PostgreSQL backend that ran the transactions

    def line(self, n: int) -> str:
        per = 1e6 / n
        return (
            f"complaints fold+store: {self.wall * per:.1f} us/event wall, CPU "
            f"{self.client_cpu * per:.1f} us here + {self.server_cpu * per:.1f} us in "
            f"PostgreSQL; {n / self.wall:,.0f} events/s"
        )


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def fold(pool: db.Pool, events: list[Event], projection: ComplaintsProjection) -> Timing:
    """Store `events` batch by batch, one transaction each, as the runtime does. The CPU
    times move much less than the wall clock with what else the machine runs."""
    # The service's collector settings (shared/service.py), and the decoded backlog out of its
    # way: in the runtime only the batch in hand is alive, here all of them are.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)
    gc.freeze()
    async with pool.acquire() as conn:
        backend = psutil.Process(conn.get_server_pid())
        server, client, started = cpu_seconds(backend), time.process_time(), time.perf_counter()
        for begin in range(0, len(events), BATCH):
            async with conn.transaction():
                await projection.store(conn, events[begin : begin + BATCH])
        timing = Timing(
            time.perf_counter() - started,
            time.process_time() - client,
            cpu_seconds(backend) - server,
        )
    gc.unfreeze()
    return timing


async def sweep(pool: db.Pool, config: SlaConfig) -> tuple[int, float]:
    """What the folds left to the sweeper (the SLA events due by now: the openings lie in
    the past, so most clocks are long breached): SLA events emitted, and seconds."""
    started, now = time.perf_counter(), datetime.now(UTC)
    while True:
        async with pool.acquire() as conn, conn.transaction():
            due = await sweep_due(conn, now, SWEEP_BATCH, config)
        if due < SWEEP_BATCH:
            break
    emitted: int = await pool.fetchval("SELECT count(*) FROM sla_emitted")
    return emitted, time.perf_counter() - started


async def measure(
    database: Database, records: list[bytes]
) -> tuple[Timing, tuple[int, float], str]:
    config = ComplaintsSettings().sla_config()
    projection = ComplaintsProjection(config)
    pool = await fresh_pool(database, "fold_plain")
    try:
        timing = await fold(pool, decoded(records), projection)
        swept = await sweep(pool, config)
    finally:
        await pool.close()
    pool = await fresh_pool(database, "fold_profiled")
    profile = cProfile.Profile(time.process_time)  # CPU, not wall: steady on a busy machine
    try:
        events = decoded(records)
        profile.enable()
        await fold(pool, events, projection)
        profile.disable()
    finally:
        await pool.close()
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("tottime").print_stats(TOP)
    stats.sort_stats("cumulative").print_stats(TOP)
    top = "\n".join(line for line in text.getvalue().splitlines() if line.strip())
    return timing, swept, top


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    records = stream(n)
    kinds = sorted({e.type.rsplit(".", 1)[1] for e in decoded(records[: 4 * BATCH])})
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(Path(tmp) / "pg").start()
        try:
            timing, (emitted, swept), top = asyncio.run(measure(database, records))
        finally:
            database.stop()
    print(top)
    print(f"\n{n} events ({', '.join(kinds)}), batches of {BATCH}")
    print(timing.line(n))
    print(
        f"then the SLA sweep: {emitted} SLA events due by now emitted in {swept:.1f} s "
        f"({swept / max(emitted, 1) * 1e6:.1f} us each)"
    )


if __name__ == "__main__":
    main()
