"""Event log, transactional outbox and the relay that publishes it to Kafka.

`append_events` writes events and their outbox rows in the caller's transaction; the
`OutboxRelay` publishes outbox rows in log order and deletes them once acknowledged
(at-least-once: consumers drop redelivered ids). While the broker is down events wait in the
outbox. When the broker has lost its log (a topic vanished, or an acknowledgement comes back
at an offset below one already acknowledged), the relay raises its log epoch and publishes
every event of the affected topics again, so read models can be rebuilt from the broker.

Only one relay per schema publishes at a time (a PostgreSQL advisory lock elects it), so
several instances of a service can run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shared import db, kafka, metrics, tracing
from shared.consumer import EPOCH_HEADER, LOG_HEADER, SEQ_HEADER
from shared.db import Connection
from shared.events import Event
from shared.settings import CommonSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

NOTIFY_CHANNEL = "outbox"
BROKER_TIMEOUT = 10.0  # seconds for a broker call before the relay backs off and retries
STOP_TIMEOUT = 10.0  # seconds shutdown waits for a batch in flight
CONTENT_TYPE = ("content-type", b"application/cloudevents+json")


@dataclass(frozen=True)
class AppendResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # same id, other content
    # Where each stored event (accepted or duplicate) sits in the log: its `seq`.
    positions: dict[tuple[str, str], int] = field(default_factory=dict)


EVENT_STORE_SCHEMA = "ingest"  # ingest's schema holds the event store


def relay_headers(log_name: str, seq: int, epoch: int) -> list[tuple[str, bytes]]:
    """The headers of a record a relay publishes: which log it comes from and where in it
    (consumers dedupe by them, shared/consumer.py), and the log's epoch."""
    return [
        CONTENT_TYPE,
        (EPOCH_HEADER, str(epoch).encode()),
        (LOG_HEADER, log_name.encode()),
        (SEQ_HEADER, str(seq).encode()),
    ]


async def open_event_store(database_url: str) -> db.Pool:
    """A pool on the event store, for the tools that write to it from outside ingest
    (`crm import`, `crm keys`, the dev stack's first key); created if ingest never ran."""
    pool = await db.create_pool(database_url, EVENT_STORE_SCHEMA)
    await db.migrate(pool, EVENT_STORE_SCHEMA, db.OUTBOX_MIGRATIONS)
    return pool


# Stores new events and queues them for the relay with the trace context they were stored
# under, in one statement; identities already stored are left as they are.
_STORE_AND_QUEUE = """
    WITH new AS (
        INSERT INTO events (id, type, source, subject, time, topic, body, content_hash)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                             $5::timestamptz[], $6::text[], $7::jsonb[], $8::bytea[])
        ON CONFLICT (source, id) DO NOTHING
        RETURNING seq, source, id
    ), queued AS (
        INSERT INTO outbox (seq, traceparent) SELECT seq, $9 FROM new
    )
    SELECT seq, source, id FROM new
"""


async def _store_and_queue(conn: Connection, events: Sequence[Event]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        _STORE_AND_QUEUE,
        [e.id for e in events],
        [e.type for e in events],
        [e.envelope.source for e in events],
        [e.subject for e in events],
        [e.time for e in events],
        [str(e.topic) for e in events],
        [e.to_bytes().decode() for e in events],
        [e.content_hash() for e in events],
        tracing.current_traceparent(),
    )
    return rows


async def append_events(conn: Connection, events: Sequence[Event]) -> AppendResult:
    """Store new events and queue them for publishing, in the caller's transaction.

    An id seen before with the same content is a duplicate (stored once); with other content
    it is a conflict. The caller decides whether a conflict aborts its transaction.
    """
    if not events:
        return AppendResult()
    rows = await _store_and_queue(conn, events)
    positions = {(r["source"], r["id"]): r["seq"] for r in rows}
    if len(positions) < len(events):
        return await _classify_existing(conn, events, positions)
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return AppendResult(accepted=[e.id for e in events], positions=positions)


async def archive_events(conn: Connection, events: Sequence[Event]) -> int:
    """Store events that reached the topics without passing through this log (other systems
    publish there directly) and queue them: the relay publishes the stored copy, which is the
    one consumers fold (shared/consumer.py). Known identities are left as they are."""
    if not events:
        return 0
    archived = len(await _store_and_queue(conn, events))
    if archived:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return archived


async def record_seen_offsets(conn: Connection, events: Sequence[Event]) -> None:
    """Raise the relay's marks to offsets seen on the topics (by an archiving consumer), so
    that a broker losing events this log archived is noticed like one losing its own."""
    seen: dict[tuple[str, int], int] = {}
    for event in events:
        if event.position is not None:
            topic, partition, offset = event.position
            seen[(topic, partition)] = max(seen.get((topic, partition), -1), offset)
    if seen:
        await raise_marks(conn, seen)


async def raise_marks(conn: Connection, highest: dict[tuple[str, int], int]) -> None:
    """Raise the relay's mark of each (topic, partition) past its highest offset known to be
    on the topic (never lower it: two writers may race)."""
    await conn.execute(
        "INSERT INTO relay_marks (topic, partition, next_offset) "
        "SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) "
        "ON CONFLICT (topic, partition) DO UPDATE "
        "SET next_offset = GREATEST(relay_marks.next_offset, EXCLUDED.next_offset)",
        [t for t, _ in highest],
        [p for _, p in highest],
        [o + 1 for o in highest.values()],
    )


async def _classify_existing(
    conn: Connection, events: Sequence[Event], accepted: dict[tuple[str, str], int]
) -> AppendResult:
    others = [e for e in events if e.identity not in accepted]
    rows = await conn.fetch(
        "SELECT e.seq, e.source, e.id, e.content_hash FROM events e "
        "JOIN unnest($1::text[], $2::text[]) AS u(source, id) USING (source, id)",
        [e.envelope.source for e in others],
        [e.id for e in others],
    )
    stored = {(r["source"], r["id"]): (bytes(r["content_hash"]), r["seq"]) for r in rows}
    duplicates = [e for e in others if stored.get(e.identity, (b"",))[0] == e.content_hash()]
    conflicts = [e.id for e in others if stored.get(e.identity, (b"",))[0] != e.content_hash()]
    if accepted:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return AppendResult(
        accepted=[e.id for e in events if e.identity in accepted],
        duplicates=[e.id for e in duplicates],
        conflicts=conflicts,
        positions={**accepted, **{e.identity: stored[e.identity][1] for e in duplicates}},
    )


async def _bounded(call: Awaitable[T]) -> T:
    """A broker call that gives up after BROKER_TIMEOUT: an aiokafka client can wait for
    good on a broker that went away and came back (aio-libs/aiokafka#176, #517); the relay
    then pauses and leads again with new clients, and the outbox keeps the events."""
    return await asyncio.wait_for(call, BROKER_TIMEOUT)


Acked = dict[tuple[str, int], int]  # (topic, partition) -> an acknowledged offset


async def _send_in_batches(
    producer: AIOKafkaProducer,
    records: list[tuple[str, bytes, bytes, int, str | None]],
    log_name: str,
    epoch: int,
    partition_counts: dict[str, int],
) -> tuple[Acked, Acked]:
    """Publish (topic, key, value, seq, traceparent) records in order per partition, a record
    batch per partition at a time (`send_batch` costs about a quarter of the client CPU of one
    `send` per record on this machine); return the lowest and highest offset acknowledged per
    partition. Partitions are chosen as the producer would: murmur2 of the key (Kafka's
    default partitioner, the Java client's too)."""
    by_partition: dict[tuple[str, int], list[tuple[bytes, bytes, int, str | None]]] = {}
    partitions: dict[str, list[int]] = {}
    for topic, key, value, seq, traceparent in records:
        if topic not in partitions:
            partitions[topic] = sorted(await producer.partitions_for(topic))
            partition_counts[topic] = len(partitions[topic])
        chosen = partitions[topic][kafka.partition_for(key, len(partitions[topic]))]
        by_partition.setdefault((topic, chosen), []).append((key, value, seq, traceparent))
    sent: list[tuple[tuple[str, int], int, asyncio.Future[Any]]] = []
    for (topic, partition), items in by_partition.items():
        batch, count = producer.create_batch(), 0
        for key, value, seq, traceparent in items:
            headers = relay_headers(log_name, seq, epoch)
            if traceparent is not None:
                headers.append((tracing.TRACEPARENT, traceparent.encode()))
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                future = await producer.send_batch(batch, topic, partition=partition)
                sent.append(((topic, partition), count, future))
                batch, count = producer.create_batch(), 0
                batch.append(key=key, value=value, timestamp=None, headers=headers)
            count += 1
        future = await producer.send_batch(batch, topic, partition=partition)
        sent.append(((topic, partition), count, future))
    lowest: Acked = {}
    highest: Acked = {}
    for (where, count, _), ack in zip(
        sent, await asyncio.gather(*(f for _, _, f in sent)), strict=True
    ):
        lowest[where] = min(lowest.get(where, ack.offset), ack.offset)  # a batch's base
        highest[where] = max(highest.get(where, -1), ack.offset + count - 1)
    return lowest, highest


@dataclass
class RelayStatus:
    running: bool = False  # False once the relay's task ended (it never should while serving)
    leader: bool = False
    connected: bool = False
    pending: int = 0
    epoch: int = 0
    last_error: str | None = None


class OutboxRelay:
    def __init__(
        self,
        settings: CommonSettings,
        pool: asyncpg.Pool,
        schema: str,
        *,
        batch_size: int = 5000,
        check_interval: float = 2.0,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._lock_key = zlib.crc32(f"outbox-relay:{schema}".encode())
        self._log_name = schema  # named in every record it publishes (relay_headers)
        self._canary = f"{kafka.RELAY_CANARY_PREFIX}{schema}"  # only this log's relay writes it
        self._batch_size = batch_size
        self._check_interval = check_interval
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._marks: dict[tuple[str, int], int] = {}
        self.status = RelayStatus()
        # Partitions per topic as the broker last told the relay: what a receipt names.
        self.partition_counts: dict[str, int] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    def notify(self) -> None:
        """Publish soon: called by the service after it committed new events."""
        self._wakeup.set()

    async def stop(self) -> None:
        """Finish the batch in flight (bounded), then stop: unacknowledged rows stay in the
        outbox and are published by the next leader."""
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, STOP_TIMEOUT)
            except TimeoutError:
                log.warning("outbox relay did not stop in time; cancelled")

    async def _run(self) -> None:
        self.status.running = True
        try:
            await self._relay_until_stopped()
        finally:
            self.status.running = False

    async def _relay_until_stopped(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self._pool.acquire() as leader_conn:
                    if not await leader_conn.fetchval(
                        "SELECT pg_try_advisory_lock($1)", self._lock_key
                    ):
                        self.status.leader = False
                        await self._sleep(1.0)
                        continue
                    self.status.leader = True
                    try:
                        await self._lead(leader_conn)
                    finally:
                        await leader_conn.execute("SELECT pg_advisory_unlock($1)", self._lock_key)
            except (Exception, asyncio.CancelledError) as error:
                # Broker or database outage: events wait in the outbox.
                if isinstance(error, asyncio.CancelledError) and not kafka.cancelled_from_inside():
                    raise  # the relay is being stopped
                if isinstance(error, asyncio.CancelledError):
                    log.warning("a broker call was cancelled under the relay", exc_info=True)
                self.status.connected = False
                self.status.last_error = f"{type(error).__name__}: {error}"
                log.warning("outbox relay paused", extra={"error": self.status.last_error})
                with contextlib.suppress(Exception):  # the backlog still grows: keep it known
                    await self._refresh_pending()
                await self._sleep(1.0)

    async def _lead(self, leader_conn: Connection) -> None:
        await leader_conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        producer = kafka.producer(self._settings)
        admin = kafka.admin(self._settings)
        try:
            # aiokafka retries a bootstrap for as long as the broker is away; bound it, so
            # the backlog stays counted and shutdown stays prompt while it is.
            await asyncio.wait_for(producer.start(), BROKER_TIMEOUT)
            await asyncio.wait_for(admin.start(), BROKER_TIMEOUT)
            await self._load_marks()
            await self._check_canary(producer, admin)
            await self._check_log_ends(admin)
            self.status.connected = True
            self.status.last_error = None  # readiness shows the present, not a past outage
            last_check = time.monotonic()
            while not self._stopping.is_set():
                # Before every batch: a producer with cached metadata would otherwise write
                # into topics a restarted broker no longer has (Tansu accepts such writes,
                # then collides with them once the topic is re-created).
                await self._recreate_lost_topics(admin)
                published = await self._publish_batch(producer)
                if time.monotonic() - last_check > self._check_interval:
                    await self._check_canary(producer, admin)
                    await self._check_log_ends(admin)
                    await self._refresh_pending()  # also while busy: load shedding reads it
                    last_check = time.monotonic()
                if published < self._batch_size:
                    await self._refresh_pending()
                    await self._sleep(self._check_interval)
        finally:
            with contextlib.suppress(Exception):
                await leader_conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), BROKER_TIMEOUT)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.close(), BROKER_TIMEOUT)

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    async def _load_marks(self) -> None:
        rows = await self._pool.fetch("SELECT topic, partition, next_offset FROM relay_marks")
        self._marks = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        self.status.epoch = await self._pool.fetchval("SELECT epoch FROM relay_state")

    async def _refresh_pending(self) -> None:
        pending = await self._pool.fetchval("SELECT count(*) FROM outbox")
        self.status.pending = pending
        metrics.OUTBOX_PENDING.set(pending)

    async def _publish_batch(self, producer: AIOKafkaProducer) -> int:
        rows = await self._pool.fetch(
            "SELECT o.seq, o.traceparent, e.topic, e.subject, e.body "
            "FROM outbox o JOIN events e USING (seq) "
            "ORDER BY o.seq LIMIT $1",
            self._batch_size,
        )
        if not rows:
            return 0
        lowest, highest = await _bounded(
            _send_in_batches(
                producer,
                [
                    (
                        r["topic"],
                        r["subject"].encode(),
                        r["body"].encode(),
                        r["seq"],
                        r["traceparent"],
                    )
                    for r in rows
                ],
                self._log_name,
                self.status.epoch,
                self.partition_counts,
            )
        )
        await self._load_marks()  # fresh: an archiving consumer raises marks in the table too
        went_back = {t for (t, p), low in lowest.items() if low < self._marks.get((t, p), 0)}
        await self._acknowledge([r["seq"] for r in rows], highest)
        metrics.EVENTS_PUBLISHED.inc(len(rows))
        if went_back:
            await self._republish(went_back, "acknowledged offsets went backwards")
        return len(rows)

    async def _acknowledge(self, seqs: list[int], highest: dict[tuple[str, int], int]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", seqs)
            await raise_marks(conn, highest)
        for key, offset in highest.items():
            self._marks[key] = max(self._marks.get(key, 0), offset + 1)

    async def _recreate_lost_topics(self, admin: AIOKafkaAdminClient) -> None:
        """Topics we had published to that are gone mean the broker lost its data."""
        created = await _bounded(kafka.ensure_topics_with(admin, self._settings, kafka.ALL_TOPICS))
        if created:
            await self._load_marks()
        lost = {t for t in created if any(topic == t for topic, _ in self._marks)}
        if lost:
            await self._republish(lost, "topics had disappeared from the broker")

    async def _check_canary(self, producer: AIOKafkaProducer, admin: AIOKafkaAdminClient) -> None:
        """A broker that lost its logs is noticed by a topic only this relay writes, holding a
        record since it first led: gone or empty means lost, even where other producers have
        since written past our marks on the shared topics (a log end above the mark hides it)."""
        await _bounded(kafka.ensure_topics_with(admin, self._settings, [self._canary]))
        ends = await _bounded(kafka.log_ends(self._settings, {(self._canary, 0): 0}))
        if ends.get((self._canary, 0), 0) > 0:
            return
        if self._marks:  # it had published: what it published is gone
            topics = {topic for topic, _ in self._marks}
            await self._republish(topics, "the relay's canary topic is empty")
        await _bounded(
            producer.send_and_wait(
                self._canary, value=b"", key=self._log_name.encode(), partition=0
            )
        )

    async def _check_log_ends(self, admin: AIOKafkaAdminClient) -> None:
        """Compare each partition's log end with the offsets the broker acknowledged to us.

        The log end is the high watermark of a fetch, correct on Kafka and on Tansu (whose
        ListOffsets answer is not). A log shorter than what the broker acknowledged means it
        lost data, whoever re-created the topic since.
        """
        await self._recreate_lost_topics(admin)
        await self._load_marks()  # an archiving consumer raises marks in the table too
        marked = {tp: mark for tp, mark in self._marks.items() if mark > 0}
        if not marked:
            return
        ends = await _bounded(kafka.log_ends(self._settings, marked))
        lost = {topic for (topic, p), mark in marked.items() if ends.get((topic, p), mark) < mark}
        if lost:
            await self._republish(lost, "the broker's log is shorter than what it acknowledged")

    async def _republish(self, topics: set[str], why: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            epoch = await conn.fetchval("UPDATE relay_state SET epoch = epoch + 1 RETURNING epoch")
            queued = await conn.fetchval(
                "WITH q AS (INSERT INTO outbox (seq) SELECT seq FROM events "
                "WHERE topic = ANY($1::text[]) ON CONFLICT DO NOTHING RETURNING 1) "
                "SELECT count(*) FROM q",
                sorted(topics),
            )
            await conn.execute(
                "DELETE FROM relay_marks WHERE topic = ANY($1::text[])", sorted(topics)
            )
        self._marks = {k: v for k, v in self._marks.items() if k[0] not in topics}
        self.status.epoch = epoch
        log.warning(
            "broker lost data; publishing the event log again",
            extra={"topics": sorted(topics), "why": why, "events": queued, "epoch": epoch},
        )
