"""Reads at a million customers: `python -m bench.scale [CUSTOMERS] [PURCHASES]`.

`make bench` runs this stage with BENCH_SCALE x 1,000,000 customers and x 5,000,000
purchases. The history goes in the way a shop's would: CSV files through `crm import` into
ingest's event store, the relay publishes them, scoring and reporting fold them; then scoring
re-scores as of a day ago (a snapshot for `as_of`) and now, and the reads a front end and the
dashboard make are measured with 64 keep-alive clients, next to a raw HTTP GET measured in
the same stage (the ratio is what we judge: absolute numbers drift on a shared machine).

Nothing here is asserted: speed is reported, never tested.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from bench.loadgen import request_bytes, run_load
from bench.run import SCALE, Stack, raw_http_get, scaled, wait_caught_up
from services.scoring import rescore
from services.scoring.settings import ScoringSettings
from shared import db
from tooling import cli

CLIENTS = 64
DATABASE = "scale"
SEED = 20261130
HISTORY_DAYS = 730  # purchases over the last two years
CUSTOMER_MAPPING = {
    "subject": "CustomerID",
    "name": "Name",
    "time": "Registered",
    "acquisition_channel": "Channel",
}
PURCHASE_MAPPING = {
    "order_id": "OrderID",
    "subject": "Customer",
    "amount": "Total",
    "time": "Placed",
}
CHANNELS = ("web", "store", "app", "partner")
READ_SERVICES = ("scoring", "reporting")


# The read path's targets: (share of the raw HTTP GET rate, p99 in ms); as_of is judged
# against the live lookup's p99 instead (within twice it).
TARGETS = {
    "rfm lookup": (0.10, 100.0),
    "score lookup (live)": (0.10, 100.0),
    "customer view": (0.05, 150.0),
    "daily KPIs with churn and retention (30 days)": (0.03, 250.0),
    "daily KPIs with churn and retention (365 days)": (0.03, 250.0),
}
AS_OF = "score as_of a snapshot date"
LIVE = "score lookup (live)"


def customer_id(n: int) -> str:
    return f"c-{n}"


def write_history(
    workdir: Path, customers: int, purchases: int, now: datetime
) -> tuple[Path, Path, list[int]]:
    """Two CSV files as a shop's export would give them. Purchases fall on customers with
    lognormal weights (a few buy often, many once or never: about a fifth of the base has no
    purchase, as prospects), at times uniform over HISTORY_DAYS, for lognormal amounts
    (median about 60). Returns the files and the customers who bought."""
    rng = np.random.default_rng(SEED)
    registered = now - timedelta(days=HISTORY_DAYS + 30)
    people = workdir / "customers.csv"
    with people.open("w") as out:
        out.write("CustomerID,Name,Registered,Channel\n")
        seconds = rng.integers(0, 30 * 86_400, size=customers)
        for n in range(customers):
            at = (registered + timedelta(seconds=int(seconds[n]))).isoformat()
            out.write(f"{customer_id(n)},Customer {n},{at},{CHANNELS[n % len(CHANNELS)]}\n")
    weights = rng.lognormal(0.0, 1.2, size=customers)
    weights /= weights.sum()
    buyers = rng.choice(customers, size=purchases, p=weights)
    ages = rng.integers(60, HISTORY_DAYS * 86_400, size=purchases)
    cents = np.round(rng.lognormal(np.log(60), 0.8, size=purchases) * 100).astype(np.int64) + 100
    orders = workdir / "purchases.csv"
    with orders.open("w") as out:
        out.write("OrderID,Customer,Total,Placed\n")
        for k in range(purchases):
            at = (now - timedelta(seconds=int(ages[k]))).isoformat()
            amount = int(cents[k])
            out.write(
                f"O-{k},{customer_id(int(buyers[k]))},{amount // 100}.{amount % 100:02d},{at}\n"
            )
    return people, orders, sorted(set(buyers.tolist()))


async def load_history(
    stack: Stack, customers: int, purchases: int
) -> tuple[dict[str, Any], list[int]]:
    """`crm import` of both files, then the wait until every fold has applied them; the
    figures, and the customers who bought."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    people, orders, buyers = write_history(stack.workdir, customers, purchases, now)
    written = time.perf_counter()
    settings = stack.settings(DATABASE)
    await cli.import_file(settings, "customers", people, CUSTOMER_MAPPING)
    await cli.import_file(settings, "purchases", orders, PURCHASE_MAPPING)
    imported = time.perf_counter()
    await wait_caught_up(stack, timeout=4 * 3600)
    folded = time.perf_counter()
    events = customers + purchases
    return {
        "customers": customers,
        "purchases": purchases,
        "csv_seconds": round(written - started, 1),
        "import_seconds": round(imported - written, 1),
        "import_rows_per_s": round(events / (imported - written), 1),
        "folded_seconds": round(folded - written, 1),
        "folded_events_per_s": round(events / (folded - written), 1),
    }, buyers


async def rescore_twice(dsn: str) -> dict[str, Any]:
    """A re-score as of a day ago (the snapshot `as_of` reads) and one as of now, as the
    scheduler would have made them; their seconds and the history rows each kept."""
    settings = ScoringSettings(database_url=dsn, timezone="UTC")
    pool = await db.create_pool(dsn, "scoring", max_size=2)
    runs = []
    try:
        now = datetime.now(UTC)
        for before in (timedelta(days=1), timedelta()):
            started = time.perf_counter()
            run_id = await rescore.rescore(settings, now - before)
            seconds = time.perf_counter() - started
            kept = await pool.fetchval(
                "SELECT count(*) FROM score_history WHERE run_id = $1", run_id
            )
            runs.append(
                {"as_of": f"now - {before}", "seconds": round(seconds, 1), "history_rows": kept}
            )
    finally:
        await pool.close()
    return {"runs": runs}


async def rescore_runs(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        runs: int = await conn.fetchval("SELECT count(*) FROM scoring.score_runs")
        return runs
    finally:
        await conn.close()


async def wait_for_rescore(dsn: str, runs: int, timeout: float = 3600) -> None:
    """Until scoring has finished a re-score beyond the `runs` it had (bounded)."""
    deadline = time.monotonic() + timeout
    while await rescore_runs(dsn) <= runs and time.monotonic() < deadline:
        await asyncio.sleep(1)


async def database_size(dsn: str) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        size: int = await conn.fetchval("SELECT pg_database_size(current_database())")
        return round(size / 2**30, 2)
    finally:
        await conn.close()


def _base_kpis(start: date, end: date) -> str:
    metrics = "churn_rate,retention_rate,active_customers,lost_customers"
    return f"/v1/kpis?granularity=day&metrics={metrics}&from={start}&to={end}"


def read_cases(customers: int, buyers: list[int]) -> dict[str, tuple[str, Callable[[int], bytes]]]:
    """Each read: the service that answers it and the n-th request. Scores are asked of
    buyers (a prospect's 404 would flatter the figures), the view of anyone; both visited in
    a stride that covers them all (a prime that divides neither count)."""
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    today = datetime.now(UTC).date()
    stride = next(p for p in (7919, 7907, 7901) if customers % p and len(buyers) % p)

    def customer(template: str) -> Callable[[int], bytes]:
        return lambda n: request_bytes("GET", template.format(customer_id(n * stride % customers)))

    def buyer(template: str) -> Callable[[int], bytes]:
        return lambda n: request_bytes(
            "GET", template.format(customer_id(buyers[n * stride % len(buyers)]))
        )

    def kpis(days: int) -> Callable[[int], bytes]:
        request = request_bytes("GET", _base_kpis(today - timedelta(days=days - 1), today))
        return lambda _n: request

    return {
        "rfm lookup": ("scoring", buyer("/v1/customers/{}/rfm")),
        "score lookup (live)": ("scoring", buyer("/v1/customers/{}/score")),
        "customer view": ("scoring", customer("/v1/customers/{}")),
        "score as_of a snapshot date": (
            "scoring",
            buyer("/v1/customers/{}/score?as_of=" + yesterday.isoformat()),
        ),
        "daily KPIs with churn and retention (30 days)": ("reporting", kpis(30)),
        "daily KPIs with churn and retention (365 days)": ("reporting", kpis(365)),
    }


async def measure_reads(
    stack: Stack, customers: int, buyers: list[int], seconds: float, instances: int
) -> dict[str, Any]:
    """Every read against the running instances of its service; the ceiling is a raw GET to
    as many processes of the minimal endpoint."""
    raw = await raw_http_get(CLIENTS, seconds, processes=instances)
    results: dict[str, Any] = {"raw HTTP GET": raw}
    for label, (service, make) in read_cases(customers, buyers).items():
        ports = stack.ports(service)
        await run_load(ports, make, clients=CLIENTS, duration=1)  # warm plans and caches
        load = await run_load(ports, make, clients=CLIENTS, duration=seconds)
        results[label] = load.summary() | {
            "statuses": {str(k): v for k, v in load.statuses.items()}
        }
        print(f"{label} ({instances} instance(s))", results[label], flush=True)
    return results


async def start(stack: Stack, names: tuple[str, ...], *, fresh: bool) -> None:
    # The stage re-scores when it means to (rescore_twice), not on the scheduler's clock.
    await stack.start_services(
        DATABASE, names, fresh=fresh, TIMEZONE="UTC", SCORING_RESCORE_SECONDS="86400"
    )


async def reads_at_scale(stack: Stack, customers: int, purchases: int) -> dict[str, Any]:
    """The whole stage on `stack` (its broker and database already started)."""
    await start(stack, ("ingest", *READ_SERVICES), fresh=True)
    dsn = stack.database.dsn_for(DATABASE)
    loaded, buyers = await load_history(stack, customers, purchases)
    results: dict[str, Any] = {"load": loaded}
    print("scale: loaded", results["load"], flush=True)
    results["rescore"] = await rescore_twice(dsn)
    # A re-score announces every class that changed (crm.derived): reads are measured once
    # reporting has folded those, as they would be between two re-scores.
    started = time.perf_counter()
    await wait_caught_up(stack, timeout=4 * 3600)
    results["rescore"]["derived_folded_seconds"] = round(time.perf_counter() - started, 1)
    print("scale: re-scored", results["rescore"], flush=True)
    results["database_gb"] = await database_size(dsn)
    seconds = 8 * max(SCALE, 0.5)
    results["reads"] = {"1": await measure_reads(stack, customers, buyers, seconds, 1)}
    # Two instances of each read service, as a deployment scales reads out: they share the
    # database and split the topics' partitions (tests/integration/*_concurrency.py).
    runs = await rescore_runs(dsn)
    await start(stack, READ_SERVICES, fresh=False)
    # A scoring instance re-scores the whole base when it starts (minutes at a million
    # customers): measured after it, and after reporting folded what it announced.
    await wait_for_rescore(dsn, runs)
    await wait_caught_up(stack, timeout=4 * 3600)
    results["reads"]["2"] = await measure_reads(stack, customers, buyers, seconds, 2)
    results["peak_rss_mb"] = stack.stop_services()
    return results


def judged(label: str, read: dict[str, Any], reads: dict[str, Any]) -> tuple[str, str]:
    """The target of a read, and whether this run met it (with the measured share)."""
    raw = reads["raw HTTP GET"]["requests_per_s"]
    share = read["requests_per_s"] / raw if raw else 0.0
    if label == AS_OF:
        bound = 2 * reads[LIVE]["p99_ms"]
        met = read["p99_ms"] <= bound
        return f"p99 <= 2x the live lookup's ({bound:,.0f} ms)", "met" if met else "missed"
    least, p99 = TARGETS[label]
    met = share >= least and read["p99_ms"] <= p99
    verdict = f"{share:.1%} of raw; {'met' if met else 'missed'}"
    return (
        f">= {least:.0%} of raw HTTP GET ({raw * least:,.0f} req/s), p99 <= {p99:.0f} ms",
        verdict,
    )


def read_rows(reads: dict[str, Any], base: str, instances: str) -> list[str]:
    raw = reads["raw HTTP GET"]
    lines = [
        f"| raw HTTP GET, {instances}, {CLIENTS} clients | {raw['requests_per_s']:,.0f} req/s, "
        f"p50 {raw['p50_ms']} ms, p99 {raw['p99_ms']} ms | | |"
    ]
    for label, read in reads.items():
        if label == "raw HTTP GET":
            continue
        target, verdict = judged(label, read, reads)
        lines.append(
            f"| {label} at {base}, {instances}, {CLIENTS} clients | "
            f"{read['requests_per_s']:,.0f} req/s, p50 {read['p50_ms']} ms, p99 "
            f"{read['p99_ms']} ms | {target} | {verdict} |"
        )
    return lines


def markdown_rows(r: dict[str, Any]) -> list[str]:
    """The stage's rows of bench/results/latest.md."""
    load, base = r["load"], f"{r['load']['customers']:,} customers"
    lines = [
        f"| history through `crm import`: {base}, {load['purchases']:,} purchases | import "
        f"{load['import_rows_per_s']:,.0f} rows/s; imported and folded by scoring and reporting "
        f"in {load['folded_seconds']:,.0f} s ({load['folded_events_per_s']:,.0f} ev/s); database "
        f"{r['database_gb']} GB | | |"
    ]
    for run in r["rescore"]["runs"]:
        lines.append(
            f"| re-score at {base}, as of {run['as_of']} | {run['seconds']} s, "
            f"{run['history_rows']:,} history rows kept | | |"
        )
    lines.append(
        f"| the two re-scores' derived events folded by reporting | "
        f"{r['rescore']['derived_folded_seconds']} s | | |"
    )
    for instances, reads in r["reads"].items():
        lines += read_rows(reads, base, f"{instances} instance{'s' if instances != '1' else ''}")
    memory = ", ".join(f"{k} {v} MB" for k, v in r["peak_rss_mb"].items())
    lines.append(f"| peak RSS at {base} | {memory} | | |")
    return lines


async def main_async(customers: int, purchases: int) -> None:
    with tempfile.TemporaryDirectory(prefix="crm-scale-") as workdir:
        stack = Stack(Path(workdir))
        try:
            print("\n".join(markdown_rows(await reads_at_scale(stack, customers, purchases))))
        finally:
            stack.close()


def main() -> None:
    args = sys.argv[1:]
    customers = int(args[0]) if args else scaled(1_000_000)
    purchases = int(args[1]) if len(args) > 1 else scaled(5_000_000)
    asyncio.run(main_async(customers, purchases))


if __name__ == "__main__":
    main()
