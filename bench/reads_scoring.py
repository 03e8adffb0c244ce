"""Scoring's reads under load: `python -m bench.reads_scoring [CUSTOMERS] [SECONDS]`.

Starts the broker, PostgreSQL and the scoring service as `make bench` does, loads CUSTOMERS
buyers (default 50,000; 1 to 5 purchases each over two years, some interactions) straight
into scoring's fact tables, re-scores as of three days, one day and five minutes ago and now
(printing the rows each adds to the run history, where one is kept), lets the fold apply a
fresh purchase of 1% of them (so some rows are newer than the last re-score), and then
measures, with 64 keep-alive clients for SECONDS each (default 8): RFM lookup, score lookup
(live), the customer view, score as_of a snapshot date, and score as_of a date before the
first re-score (recomputed). Prints req/s, p50 and p99 per read.

`--profile`: instead of the load, each read 300 times in a row in this process (the app
over ASGI, the same database): wall and CPU time per request (their difference is mostly
the wait for PostgreSQL), and the cProfile entries of scoring's code by cumulative time.

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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]

from bench.loadgen import AUTH, BENCH_TOKEN, request_bytes, run_load
from bench.run import Stack, purchase_event, raw_produce, stored_bytes
from services.scoring import rescore
from services.scoring.settings import ScoringSettings
from shared import db
from shared.auth import token_sha256
from shared.events import Topic
from shared.outbox import relay_headers

CLIENTS = 64
FRESH_SHARE = 100  # one customer in this many gets a purchase through the fold

_PURCHASES = """
INSERT INTO purchases (customer_id, source, event_id, order_id, time, day, amount, is_refund)
SELECT 'c-' || c, 'bench', 'e-' || c || '-' || k, 'o-' || c || '-' || k, t,
       (t AT TIME ZONE 'UTC')::date, (10 + (c * 7 + k * 13) % 200)::numeric, false
FROM generate_series(1, $1::int) c, generate_series(1, 1 + c % 5) k,
     LATERAL (SELECT now() - interval '4 days'
                     - ((c * 37 + k * 101) % 700) * interval '1 day' AS t) x
"""
_INTERACTIONS = """
INSERT INTO interactions (customer_id, source, event_id, time, channel, direction)
SELECT 'c-' || c, 'bench', 'i-' || c, now() - interval '4 days' - (c % 90) * interval '1 day',
       'phone', 'inbound'
FROM generate_series(1, $1::int, 3) c
"""


def purchase_record(customer: str) -> bytes:
    """A purchase of now, as the relay puts it on the topic."""
    raw = purchase_event(0) | {"id": f"fresh-{customer}", "subject": customer, "source": "bench"}
    raw["time"] = datetime.now(UTC).isoformat()
    raw["data"] = raw["data"] | {"order_id": f"fresh-{customer}", "amount": "55.00"}
    return stored_bytes(raw)


async def load(stack: Stack, dsn: str, customers: int) -> list[str]:
    """The facts, three re-scores, and fresh purchases through the fold; the fresh ones."""
    pool = await db.create_pool(dsn, "scoring", max_size=2)
    settings = ScoringSettings(database_url=dsn, timezone="UTC")
    try:
        await pool.execute(_PURCHASES, customers)
        await pool.execute(_INTERACTIONS, customers)
        await pool.execute("UPDATE purchases SET applied_at = now() - interval '1 hour'")
        await pool.execute("UPDATE interactions SET applied_at = now() - interval '1 hour'")
        await pool.execute("VACUUM ANALYZE")
        now = datetime.now(UTC)
        for before in (timedelta(days=3), timedelta(days=1), timedelta(minutes=5), timedelta()):
            run_id = await rescore.rescore(settings, now - before)
            if await pool.fetchval("SELECT to_regclass('score_history') IS NOT NULL"):
                written = await pool.fetchval(
                    "SELECT count(*) FROM score_history WHERE run_id = $1", run_id
                )
                print(f"re-score as of now - {before}: {written} history rows", flush=True)
        fresh = [f"c-{c}" for c in range(1, customers + 1, FRESH_SHARE)]
        values = [purchase_record(customer) for customer in fresh]
        headers = [relay_headers("bench-reads", n, 0) for n in range(1, len(fresh) + 1)]
        keys = [c.encode() for c in fresh]
        await raw_produce(stack.settings(), Topic.PURCHASES, values, keys, headers)
        expected = len(fresh)
        deadline = asyncio.get_running_loop().time() + 120
        while (
            await pool.fetchval(
                "SELECT count(*) FROM purchases WHERE source = 'bench' AND event_id LIKE 'fresh-%'"
            )
            < expected
            and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.5)
        return fresh
    finally:
        await pool.close()


async def measure(port: int, customers: int, seconds: float) -> dict[str, Any]:
    ids = [f"c-{c}" for c in range(1, customers + 1)]
    snapshot_day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    before_runs = (datetime.now(UTC) - timedelta(days=10)).date().isoformat()

    def path(template: str) -> Callable[[int], bytes]:
        return lambda n: request_bytes("GET", template.format(ids[(n * 7919) % len(ids)]))

    cases = {
        "rfm lookup": path("/v1/customers/{}/rfm"),
        "score lookup (live)": path("/v1/customers/{}/score"),
        "customer view": path("/v1/customers/{}"),
        "score as_of a snapshot date": path("/v1/customers/{}/score?as_of=" + snapshot_day),
        "score as_of before the first run": path("/v1/customers/{}/score?as_of=" + before_runs),
    }
    results = {}
    for label, make in cases.items():
        await run_load(port, make, clients=CLIENTS, duration=1)  # warm caches and plans
        found = await run_load(port, make, clients=CLIENTS, duration=seconds)
        results[label] = found.summary() | {"statuses": found.statuses}
        print(label, results[label], flush=True)
    return results


async def database_backends(dsn: str) -> list[psutil.Process]:
    """The PostgreSQL processes serving the database's connections (the service's pool)."""
    conn = await asyncpg.connect(dsn)
    try:
        pids = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [psutil.Process(r["pid"]) for r in pids]


def cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


async def profile(stack: Stack, dsn: str, customers: int) -> None:
    from services.scoring.main import app as scoring_app  # (the subprocess serves the load)

    fields = stack.settings("reads").model_dump() | {
        "timezone": "UTC",
        "database_url": dsn,
        "scoring_rescore_seconds": 86400,
        "admin_key_sha256": token_sha256(BENCH_TOKEN),
    }
    settings = ScoringSettings(**fields)
    app = scoring_app(settings)
    ids = [f"c-{c}" for c in range(1, customers + 1)]
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    before_runs = (datetime.now(UTC) - timedelta(days=10)).date().isoformat()
    cases = {
        "rfm lookup": "/v1/customers/{}/rfm",
        "score lookup (live)": "/v1/customers/{}/score",
        "customer view": "/v1/customers/{}",
        "score as_of a snapshot date": "/v1/customers/{}/score?as_of=" + day,
        "score as_of before the first run": "/v1/customers/{}/score?as_of=" + before_runs,
    }
    pool = await db.create_pool(dsn, "scoring", max_size=1)
    runs = await pool.fetchval("SELECT count(*) FROM score_runs")
    async with app.router.lifespan_context(app):
        # This instance re-scores at start-up, in this process: measured after it.
        while await pool.fetchval("SELECT count(*) FROM score_runs") == runs:
            await asyncio.sleep(0.5)
        await pool.close()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s", headers=AUTH) as c:
            for label, template in cases.items():
                for n in range(20):
                    warm = await c.get(template.format(ids[n * 7919 % len(ids)]))
                    assert warm.status_code in (200, 404), warm.text
                backends = await database_backends(dsn)
                server = sum(map(cpu_seconds, backends))
                wall, cpu = time.perf_counter(), time.process_time()
                for n in range(300):
                    await c.get(template.format(ids[(n + 20) * 7919 % len(ids)]))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                server = sum(map(cpu_seconds, backends)) - server
                profiler = cProfile.Profile()
                profiler.enable()
                for n in range(300):
                    await c.get(template.format(ids[(n + 20) * 7919 % len(ids)]))
                profiler.disable()
                text = io.StringIO()
                stats = pstats.Stats(profiler, stream=text).sort_stats("cumulative")
                stats.print_stats("services/scoring", 10)
                print(
                    f"## {label}, per request: wall {wall / 0.3:.2f} ms, CPU: this process"
                    f" (app and client) {cpu / 0.3:.2f} ms, PostgreSQL {server / 0.3:.2f} ms"
                )
                print("\n".join(line for line in text.getvalue().splitlines() if line.strip()))


async def main_async(customers: int, seconds: float, profiling: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="reads-scoring-") as workdir:
        stack = Stack(Path(workdir))
        try:
            await stack.start_services(
                "reads", ("scoring",), TIMEZONE="UTC", SCORING_RESCORE_SECONDS="86400"
            )
            dsn = stack.database.dsn_for("reads")
            await load(stack, dsn, customers)
            if profiling:
                await profile(stack, dsn, customers)
            else:
                await measure(stack.port("scoring"), customers, seconds)
        finally:
            stack.close()


def main() -> None:
    profiling = "--profile" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--profile"]
    customers = int(args[0]) if args else 50_000
    seconds = float(args[1]) if len(args) > 1 else 8.0
    asyncio.run(main_async(customers, seconds, profiling))


if __name__ == "__main__":
    main()
