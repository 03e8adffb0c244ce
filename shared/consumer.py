"""The one consumer runtime: poll, decode, dedupe, apply, store offsets, dead-letter.

A service hands it a `Projection` (its topics and a `store` that writes a batch of fresh
events); the runtime owns everything else. Exactly-once effect comes from two rules:

1. The next offset of every partition is written in the same PostgreSQL transaction as the
   read-model rows, and on assignment the consumer seeks to it (Kafka's own committed
   offsets are never used).
2. An event delivered twice (the outbox relay is at-least-once, and re-publishes its whole
   log after a broker loss) is applied once. Identity is (source, id); every record a relay
   publishes names its log and the event's number there (headers `crm-log`, `crm-seq`; a
   store holds each identity once, so the two name the same event), and a relay publishes
   in order. Per (partition, log) the consumer keeps `high`, the largest number it applied
   (a record above it is new without a look-up: the common case costs no dedupe query), and
   `mark`, at or below which everything was applied. A record between the two (a re-send, a
   re-publish, an event whose transaction committed late) is looked up among the numbers
   applied in the last `DEDUPE_WINDOW_SECONDS`, kept as one row per batch in the read
   model's transaction; older rows are folded into the mark. So the state grows with the
   window and the partitions, not with history. Retention rule: a record below the mark is
   taken as applied, so anything that would arrive out of order (a broker-loss re-publish
   filling in behind a record published just after the loss) must arrive within the window.

Only records published by a log are folded. Records other systems publish straight to the
topics carry no such headers: the gateway (ingest's archive, a projection with
`judges_direct_records`) judges them, with the clock and settings, stores what it accepts and
publishes that; every other consumer skips them and folds the published copy. So the verdict
of a consumer on a record depends on its bytes only, and all consumers agree.

A broker that lost its log (the embedded broker keeps topics in memory) is detected per
partition and the partition is re-read from its start; rule 2 makes that safe:
- on assignment we seek to the last applied record and compare its fingerprint (the value's
  hash and the relay's log epoch header): a different record means a different log;
- a partition whose high watermark is below the position we need means a shorter log (a
  Kafka broker answers OffsetOutOfRange instead, and `auto_offset_reset` handles it);
- a record whose log epoch (header `crm-epoch`) is above the one the position was reached
  with means its relay published the log again: the broker lost it, and the new log may
  have grown past our position before we noticed it was shorter (a restarted broker is
  filled again within milliseconds), so what it holds before the position is unread. The
  epochs go with the stored offsets, so this holds across restarts and rebalances too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from opentelemetry.trace import Link

from shared import kafka, metrics, tracing
from shared.auth import key_event_refusal, store_key_events
from shared.cloudevents_binding import decode_record, is_binding_header
from shared.db import Connection
from shared.events import (
    RECORDED,
    SOURCE_TOPICS,
    Event,
    FieldError,
    InvalidEvent,
    Topic,
    ValidationContext,
)
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

EPOCH_HEADER = "crm-epoch"
LOG_HEADER = "crm-log"  # the event store (schema) whose relay published the record
SEQ_HEADER = "crm-seq"  # the event's sequence number in that store
PRUNE_SECONDS = 30.0  # at most this long between folds of expired applied ids into marks
STOP_TIMEOUT = 10.0  # seconds shutdown waits for the batch in flight and for the broker
LEASE_CHECK_SECONDS = 5.0  # how often an idle consumer checks that its claims still hold
# A dead letter carries the original key and value when they fit in this many bytes, which
# keeps it under Kafka's default 1 MiB message limit with its headers; a larger record is cut
# to it (header crm-truncated: the original size) and stays whole at its source offset.
MAX_DEAD_LETTER_BYTES = 1_000_000
MAX_REASON_BYTES = 4000


class Projection(Protocol):
    """What a service gives the runtime."""

    name: str  # the consumer group, and the key of its offsets and applied ids
    topics: Sequence[str]
    # Optional attribute `judges_direct_records = True` (the gateway): the projection gets the
    # records published straight to the topics, validated with the clock and settings, and
    # skips what a log published; `judge(event) -> FieldError | None` may refuse more.

    async def store(self, conn: Connection, events: list[Event]) -> None:
        """Fold `events` (new ids only, in partition order) into the read model, in `conn`'s
        open transaction."""


def origin(record: ConsumerRecord[bytes, bytes]) -> tuple[str, int] | None:
    """The (log, sequence number) a relay wrote into the record's headers; None for a record
    published straight to the topic. Raises ValueError for a malformed header."""
    log_name = seq = None
    for key, value in record.headers:
        if key == LOG_HEADER:
            log_name = value.decode()
        elif key == SEQ_HEADER:
            seq = int(value)
    if seq is None:
        return None
    if not log_name or seq < 1:
        raise ValueError("crm-seq needs a crm-log and a positive number")
    return log_name, seq


def log_epoch(record: ConsumerRecord[bytes, bytes]) -> tuple[str, int] | None:
    """The (log, epoch) of a record a relay published; None for any other record (a
    malformed header is left to `origin`, which dead-letters the record)."""
    log_name = epoch = None
    for key, value in record.headers:
        if key == LOG_HEADER:
            log_name = value.decode(errors="replace")
        elif key == EPOCH_HEADER and value.isdigit():
            epoch = int(value)
    if log_name is None or epoch is None:
        return None
    return log_name, epoch


def fingerprint(record: ConsumerRecord[bytes, bytes]) -> bytes:
    epoch = next((v for k, v in record.headers if k == EPOCH_HEADER), b"")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(epoch)
    digest.update(b"\x00")
    digest.update(record.value or b"")
    return digest.digest()


@dataclass(frozen=True)
class _Position:
    """Where a partition stands after a batch: the next offset, the fingerprint of the last
    record, and the epoch of each log its records came from (as of that record)."""

    next_offset: int
    fingerprint: bytes
    epochs: dict[str, int]


@dataclass
class _Expected:
    """A partition whose last applied record must be checked before going on."""

    next_offset: int
    fingerprint: bytes | None


@dataclass
class ConsumerStatus:
    running: bool = False
    assigned: list[str] = field(default_factory=list)
    lag: dict[str, int] = field(default_factory=dict)
    last_poll: float = 0.0
    last_error: str | None = None  # the type of the last error, never its text
    consecutive_failures: int = 0  # attempts at the same batch that failed in a row

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())


@dataclass(frozen=True)
class LogMark:
    """Per (partition, log): every record numbered at or below `mark` was applied; none
    above `high` was."""

    mark: int = 0
    high: int = 0


NO_MARK = LogMark()


@dataclass
class _Prepared:
    """A polled batch, decoded, waiting for its commit."""

    generation: int  # of the positions it was read at (see ConsumerRuntime._seek_to_stored)
    started: float
    events: list[Event] = field(default_factory=list)
    dead: list[tuple[ConsumerRecord[bytes, bytes], str]] = field(default_factory=list)
    positions: dict[TopicPartition, _Position] = field(default_factory=dict)
    skipped: int = 0
    links: list[Link] = field(default_factory=list)  # to the traces of its records (tracing on)


class Fenced(Exception):
    """This instance's claim on a partition was taken over: its batch must not commit."""


async def claim_leases(
    conn: Connection, consumer: str, owner: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Take over `partitions` for `owner`; return the generation of each claim."""
    rows = await conn.fetch(
        """
        INSERT INTO partition_leases (consumer, topic, partition, owner, generation)
        SELECT $1, t, p, $2, 1 FROM unnest($3::text[], $4::int[]) AS u(t, p)
        ON CONFLICT (consumer, topic, partition) DO UPDATE
        SET owner = EXCLUDED.owner, generation = partition_leases.generation + 1
        RETURNING topic, partition, generation
        """,
        consumer,
        owner,
        [tp.topic for tp in partitions],
        [tp.partition for tp in partitions],
    )
    return {TopicPartition(r["topic"], r["partition"]): r["generation"] for r in rows}


async def check_leases(
    conn: Connection, consumer: str, owner: str, claims: dict[TopicPartition, int]
) -> None:
    """Raise Fenced unless every claim still holds; lock the claims until the transaction
    ends, so a takeover waits for this commit and then sees its offsets."""
    held = await conn.fetchval(
        """
        SELECT count(*) FROM (
            SELECT 1 FROM partition_leases l
            JOIN unnest($3::text[], $4::int[], $5::bigint[]) AS u(t, p, g)
              ON l.topic = u.t AND l.partition = u.p
            WHERE l.consumer = $1 AND l.owner = $2 AND l.generation = u.g
            FOR SHARE OF l
        ) AS still_ours
        """,
        consumer,
        owner,
        [tp.topic for tp in claims],
        [tp.partition for tp in claims],
        list(claims.values()),
    )
    if held != len(claims):
        raise Fenced(f"{len(claims) - held} partition(s) taken over by another instance")


class ConsumerRuntime:
    def __init__(
        self,
        settings: CommonSettings,
        pool: asyncpg.Pool,
        projection: Projection,
        validation: ValidationContext,
        *,
        group: str | None = None,
        send_dead_letters: bool = True,
    ) -> None:
        """`group`: the Kafka consumer group, by default the projection's name (a rebuild
        reads with a group of its own into a shadow schema). `send_dead_letters`: False when
        re-reading records whose dead letters were sent already (a rebuild)."""
        self._settings = settings
        self._pool = pool
        self._projection = projection
        self._validation = validation
        self._group = group or projection.name
        self._send_dead_letters = send_dead_letters
        self._last_lease_check = time.monotonic()
        self._halted = False
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()  # a rebalance waits for the batch in flight
        self._expected: dict[TopicPartition, _Expected] = {}
        self._epochs: dict[TopicPartition, dict[str, int]] = {}  # per partition, log -> epoch
        self._next: dict[TopicPartition, int] = {}
        self._last_truncation_check = 0.0
        self._owner = f"{self._projection.name}-{uuid.uuid4()}"
        self._leases: dict[TopicPartition, int] = {}
        self._rewind_needed = False
        self._logs: dict[tuple[TopicPartition, str], LogMark] = {}
        self._generation = 0  # raised at every seek to the stored offsets
        self._last_prune = time.monotonic()
        self._judges_direct = bool(getattr(projection, "judges_direct_records", False))
        self._judge: Callable[[Event], FieldError | None] | None = getattr(
            projection, "judge", None
        )
        self.status = ConsumerStatus()
        self._committed = asyncio.Event()  # set, then replaced, at every commit

    @property
    def name(self) -> str:
        return self._projection.name

    @property
    def topics(self) -> frozenset[str]:
        """The topics whose events this runtime folds into the read model."""
        return frozenset(self._projection.topics)

    async def next_commit(self, timeout: float) -> None:
        """Return at this instance's next commit, or after `timeout` seconds (another
        instance's commits are not seen here: callers look at the stored marks)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._committed.wait(), timeout)

    async def start(self) -> None:
        await kafka.ensure_topics(self._settings)
        self._producer = kafka.producer(self._settings)
        await self._producer.start()
        self._consumer = kafka.consumer(self._settings, self._group)
        await self._consumer.start()
        # Every service folds the API keys into its own schema (shared/auth.py).
        topics = sorted({*self._projection.topics, Topic.KEYS})
        self._consumer.subscribe(topics, listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.name}")

    async def stop(self) -> None:
        """Finish the batch in flight, commit it, and leave the group, in bounded time: what
        is not committed is read again by the next owner."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, STOP_TIMEOUT)
            except TimeoutError:
                log.warning(
                    "consumer did not stop in time; cancelled", extra={"consumer": self.name}
                )
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), STOP_TIMEOUT)

    async def _run(self) -> None:
        assert self._consumer is not None
        self.status.running = True
        backoff = 0.1
        in_flight: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                try:
                    if self._rewind_needed:
                        # The position is past a batch that did not commit: nothing may be
                        # applied until it is back at the offsets PostgreSQL holds, or the next
                        # commit would store an offset beyond the failed batch, skipping it.
                        await self._rewind_to_committed()
                        self._rewind_needed = False
                    batches = await self._consumer.getmany(
                        timeout_ms=200, max_records=self._settings.consumer_max_batch
                    )
                    self.status.last_poll = time.monotonic()
                    # Decoding this batch (CPU here) overlaps the previous batch's commit (work
                    # in PostgreSQL); the commits themselves stay one at a time, in order.
                    prepared = self._prepare(batches) if batches else None
                    if in_flight is not None:
                        task, in_flight = in_flight, None
                        await task
                    if self._halted:
                        break
                    await self._housekeeping(set(batches), idle=prepared is None)
                    if prepared is not None:
                        in_flight = asyncio.create_task(self._store(prepared))
                    elif not self.status.total_lag:
                        self._succeeded()  # nothing is left that could fail
                    backoff = 0.1
                except Fenced as fenced:
                    # A rebalance gave our partitions to another instance; its assignment to
                    # us is on its way. Nothing of this batch was written.
                    log.warning(
                        "batch fenced off", extra={"consumer": self.name, "why": str(fenced)}
                    )
                    await _settled(in_flight)
                    in_flight = None
                    self._rewind_needed = True
                except (Exception, asyncio.CancelledError) as error:
                    # The loop must survive a database or broker outage.
                    if isinstance(error, asyncio.CancelledError) and (
                        not kafka.cancelled_from_inside()
                    ):
                        raise  # the runtime is being stopped
                    await _settled(in_flight)
                    in_flight = None
                    self._rewind_needed = True
                    self._failed(error)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            if in_flight is not None:  # shutdown: the batch in flight commits (or fails) first
                with contextlib.suppress(Exception):
                    await in_flight
            self.status.running = False

    async def _housekeeping(self, polled: set[TopicPartition], *, idle: bool) -> None:
        """Between two commits: claims, expired ids, truncated logs, lag."""
        async with self._batch_lock:
            if idle:
                await self._check_leases_when_idle()
            await self._prune_when_due()
            await self._check_truncation(polled)
            self._update_lag()

    def _succeeded(self) -> None:
        self.status.last_error = None
        self.status.consecutive_failures = 0
        metrics.CONSUMER_FAILURES.labels(self.name).set(0)

    def _failed(self, error: BaseException) -> None:
        """Count a failed attempt; the full text goes to the log only (it may name hosts and
        users), the status keeps the error's type for readiness."""
        self.status.last_error = type(error).__name__
        self.status.consecutive_failures += 1
        metrics.CONSUMER_FAILURES.labels(self.name).set(self.status.consecutive_failures)
        log.exception(
            "consumer batch failed; retrying",
            extra={"consumer": self.name, "attempt": self.status.consecutive_failures},
        )

    def _prepare(
        self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> _Prepared:
        """Decode a polled batch (pure CPU, no await: nothing else runs meanwhile)."""
        prepared = _Prepared(self._generation, time.perf_counter())
        for tp, records in batches.items():
            records = self._verified(tp, records)
            if self._epoch_rose(tp, records):
                continue  # re-read from its start: nothing of this partition is applied now
            for record in records:
                try:
                    event = self._decoded(tp, record)
                except InvalidEvent as error:
                    prepared.dead.append((record, str(error)))
                    continue
                except Exception as error:  # decoding is pure: a retry would fail the same way
                    log.exception("cannot decode a record", extra={"consumer": self.name})
                    reason = f"cannot decode: {type(error).__name__}: {error}"
                    prepared.dead.append((record, reason))
                    continue
                if event is None:
                    prepared.skipped += 1
                else:
                    prepared.events.append(event)
            if records:
                prepared.positions[tp] = _Position(
                    records[-1].offset + 1, fingerprint(records[-1]), dict(self._epochs[tp])
                )
        if tracing.enabled():
            prepared.links = tracing.links(_trace_contexts(batches, prepared.events))
        return prepared

    async def _store(self, prepared: _Prepared) -> None:
        """Commit a decoded batch, unless the positions it was read at no longer hold."""
        async with self._batch_lock:
            if self._halted or prepared.generation != self._generation or not prepared.positions:
                return  # a rebalance or rewind seeked since: its records will be read again
            # Dead letters are sent before the offsets commit: a crash in between re-sends
            # them (at-least-once to the dead-letter topic) but never loses one.
            await self._dead_letter(prepared.dead)
            count = len(prepared.events)
            with tracing.consumer_span(self.name, count, prepared.links):
                fresh = await self._commit(prepared.events, prepared.positions)
            for tp, position in prepared.positions.items():
                self._next[tp] = position.next_offset
        self._committed.set()
        self._committed = asyncio.Event()
        self._succeeded()
        self._count(prepared.events, fresh, prepared.dead)
        if prepared.skipped:
            metrics.RECORDS_SKIPPED.labels(self.name).inc(prepared.skipped)
        metrics.BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - prepared.started)

    def _decoded(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> Event | None:
        """The record's event, or None for a record this consumer does not fold (see the
        module docstring); raises InvalidEvent for one to dead-letter."""
        try:
            published = origin(record)
        except ValueError as error:
            raise InvalidEvent([FieldError("headers", str(error))]) from None
        gateway = self._judges_direct and tp.topic != Topic.KEYS
        if published is None and not gateway and tp.topic not in SOURCE_TOPICS:
            raise InvalidEvent([FieldError("headers", f"only the services publish to {tp.topic}")])
        if gateway == (published is not None):
            return None  # the gateway's to judge, or (for the gateway) stored already
        if published is not None and published[1] <= self._mark_of(tp, published[0]).mark:
            return None  # applied, before the window it would be remembered in
        # Either content mode: records other systems publish may be CloudEvents binary mode.
        event = decode_record(
            record.value,
            record.headers,
            self._validation if gateway else RECORDED,
            position=(tp.topic, tp.partition, record.offset),
            origin=published,
        )
        if event.topic != tp.topic:
            raise InvalidEvent(
                [FieldError("type", f"{event.type} belongs on {event.topic}, not {tp.topic}")]
            )
        refusal = self._judge(event) if gateway and self._judge is not None else None
        if tp.topic == Topic.KEYS:
            refusal = key_event_refusal(event, self._settings.key_signing_secret)
        if refusal is not None:
            raise InvalidEvent([refusal])
        return event

    def _verified(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Drop the already-applied record we seeked to, or restart a partition whose log
        is not the one we applied."""
        expected = self._expected.pop(tp, None)
        if expected is None or not records:
            return records
        first = records[0]
        if first.offset == expected.next_offset - 1 and fingerprint(first) == expected.fingerprint:
            return records[1:]
        self._restart_partition(tp, f"record at {first.offset} differs from the one applied")
        return []

    def _epoch_rose(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        """Whether a record comes from a log published again since the position was reached
        (its relay raised the log's epoch: the broker had lost it); then the partition is
        re-read from its start. A consumer that went on reading at its old position in the
        new log (it notices a shorter log only while the log is shorter) would skip what the
        new log holds before that position."""
        known = self._epochs.setdefault(tp, {})
        for record in records:
            stamp = log_epoch(record)
            if stamp is None:
                continue
            log_name, epoch = stamp
            before = known.get(log_name)
            if before is None or epoch > before:
                known[log_name] = epoch
            if before is not None and epoch > before:
                self._restart_partition(
                    tp, f"log {log_name} was published again (epoch {before} to {epoch})"
                )
                return True
        return False

    def _restart_partition(self, tp: TopicPartition, why: str) -> None:
        assert self._consumer is not None
        log.warning(
            "partition log differs from the one applied (broker data loss?); re-reading it",
            extra={"consumer": self.name, "topic": tp.topic, "partition": tp.partition, "why": why},
        )
        metrics.LOG_RESETS.labels(self.name, tp.topic).inc()
        self._expected.pop(tp, None)
        self._next[tp] = 0
        self._consumer.seek(tp, 0)

    async def _commit(
        self, events: list[Event], positions: dict[TopicPartition, _Position]
    ) -> list[Event]:
        unique = _first_of_each(events)
        async with self._pool.acquire() as conn, conn.transaction():
            await check_leases(
                conn, self.name, self._owner, {tp: self._leases.get(tp, -1) for tp in positions}
            )
            fresh, highs = await self._first_application(conn, unique)
            keys = [e for e in fresh if e.topic == Topic.KEYS]
            if keys:
                await store_key_events(conn, keys)
                fresh = [e for e in fresh if e.topic != Topic.KEYS]
            if fresh:
                await self._projection.store(conn, fresh)
            await conn.execute(
                """
                INSERT INTO consumer_offsets
                    (consumer, topic, partition, next_offset, fingerprint, epochs)
                SELECT $1, t, p, o, f, e
                FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bytea[], $6::jsonb[])
                     AS u(t, p, o, f, e)
                ON CONFLICT (consumer, topic, partition) DO UPDATE
                SET next_offset = EXCLUDED.next_offset, fingerprint = EXCLUDED.fingerprint,
                    epochs = EXCLUDED.epochs, updated_at = now()
                """,
                self.name,
                [tp.topic for tp in positions],
                [tp.partition for tp in positions],
                [p.next_offset for p in positions.values()],
                [p.fingerprint for p in positions.values()],
                [orjson.dumps(p.epochs).decode() for p in positions.values()],
            )
        for where, high in highs.items():  # committed: now they count
            self._logs[where] = replace(self._mark_of(*where), high=high)
        return fresh

    def _mark_of(self, tp: TopicPartition, log_name: str) -> LogMark:
        return self._logs.get((tp, log_name), NO_MARK)

    async def _first_application(
        self, conn: Connection, events: list[Event]
    ) -> tuple[list[Event], dict[tuple[TopicPartition, str], int]]:
        """The events (distinct identities) not applied before, and the new `high` of each
        (partition, log); remembers them in `conn`'s transaction."""
        groups: dict[tuple[TopicPartition, str], list[Event]] = {}
        for event in events:
            if event.origin is not None and event.position is not None:
                where = (TopicPartition(*event.position[:2]), event.origin[0])
                groups.setdefault(where, []).append(event)
        applied: set[tuple[TopicPartition, str, int]] = set()
        behind = {
            w: [seq_of(e) for e in g if seq_of(e) <= self._mark_of(*w).high]
            for w, g in groups.items()
        }
        if any(behind.values()):
            applied = await _applied_among(conn, self.name, behind)
        fresh: list[Event] = []
        rows: list[tuple[str, int, str, list[int]]] = []
        for (tp, log_name), group in groups.items():
            mark = self._mark_of(tp, log_name).mark  # may have risen since the batch decoded
            new = [
                e for e in group if seq_of(e) > mark and (tp, log_name, seq_of(e)) not in applied
            ]
            fresh.extend(new)
            if new:
                rows.append((tp.topic, tp.partition, log_name, sorted(seq_of(e) for e in new)))
        await _remember(conn, self.name, rows)
        highs = {
            (TopicPartition(t, p), n): max(seqs[-1], self._mark_of(TopicPartition(t, p), n).high)
            for t, p, n, seqs in rows
        }
        # Records published straight to a topic reach only the gateway, whose store dedupes.
        fresh_ids = {e.identity for e in fresh}
        return [e for e in events if e.origin is None or e.identity in fresh_ids], highs

    async def _prune_when_due(self) -> None:
        """Fold applied ids older than the window into the marks of their (partition, log),
        for the partitions this instance holds (so no other instance applies one of them
        while its id goes)."""
        now = time.monotonic()
        interval = min(PRUNE_SECONDS, self._settings.dedupe_window_seconds / 4)
        if now - self._last_prune < interval or not self._leases:
            return
        self._last_prune = now
        async with self._pool.acquire() as conn, conn.transaction():
            await check_leases(conn, self.name, self._owner, self._leases)
            rows = await conn.fetch(
                """
                WITH gone AS (
                    DELETE FROM applied_events a
                    USING unnest($2::text[], $3::int[]) AS held(topic, partition)
                    WHERE a.consumer = $1 AND a.topic = held.topic
                      AND a.partition = held.partition
                      AND a.applied_at < now() - make_interval(secs => $4)
                    RETURNING a.topic, a.partition, a.log, a.high
                )
                UPDATE log_marks m SET mark = GREATEST(m.mark, g.high)
                FROM (SELECT topic, partition, log, max(high) AS high FROM gone
                      GROUP BY topic, partition, log) AS g
                WHERE m.consumer = $1 AND m.topic = g.topic AND m.partition = g.partition
                  AND m.log = g.log
                RETURNING m.topic, m.partition, m.log, m.mark
                """,
                self.name,
                [tp.topic for tp in self._leases],
                [tp.partition for tp in self._leases],
                float(self._settings.dedupe_window_seconds),
            )
        for r in rows:
            where = (TopicPartition(r["topic"], r["partition"]), r["log"])
            self._logs[where] = replace(self._mark_of(*where), mark=r["mark"])

    def progress(self) -> tuple[int, int | None, int]:
        """(records read, log ends, partitions) over the partitions assigned to this instance;
        the log ends are unknown (None) until every partition has been fetched once."""
        if self._consumer is None:
            return 0, None, 0
        assigned = self._consumer.assignment()
        read = sum(self._next.get(tp, 0) for tp in assigned)
        ends = [self._consumer.highwater(tp) for tp in assigned]
        end = None if None in ends else sum(e for e in ends if e is not None)
        return read, end, len(assigned)

    def partition_count(self) -> int:
        """Partitions of the topics this runtime reads, as the broker's metadata says."""
        if self._consumer is None:
            return 0
        return sum(
            len(self._consumer.partitions_for_topic(topic) or ())
            for topic in self._consumer.subscription()
        )

    async def _check_leases_when_idle(self) -> None:
        """An idle consumer learns that its claims were taken (a rebuild swapped its schema in
        with offsets of its own) without waiting for its next batch to be refused."""
        now = time.monotonic()
        if now - self._last_lease_check < LEASE_CHECK_SECONDS or self._consumer is None:
            return
        self._last_lease_check = now
        assigned = self._consumer.assignment()
        claims = {tp: g for tp, g in self._leases.items() if tp in assigned}
        if claims:
            async with self._pool.acquire() as conn, conn.transaction():
                await check_leases(conn, self.name, self._owner, claims)

    async def _dead_letter(self, dead: list[tuple[ConsumerRecord[bytes, bytes], str]]) -> None:
        if not dead or not self._send_dead_letters:
            return
        assert self._producer is not None
        futures = []
        for record, reason in dead:
            key, value, headers = dead_letter(record, reason, self.name)
            futures.append(
                await self._producer.send(Topic.DEADLETTER, value=value, key=key, headers=headers)
            )
            log.warning(
                "dead-lettered a record",
                extra={
                    "consumer": self.name,
                    "topic": record.topic,
                    "offset": record.offset,
                    "reason": reason[:500],
                },
            )
        # Bounded: a send that never completes would hold the batch, and readiness, for good;
        # a timeout fails the batch, which is then retried.
        await asyncio.wait_for(asyncio.gather(*futures), STOP_TIMEOUT)

    def _count(self, events: list[Event], fresh: list[Event], dead: list[Any]) -> None:
        for topic, count in Counter(event.topic for event in fresh).items():
            metrics.EVENTS_APPLIED.labels(self.name, topic).inc(count)
        if len(events) > len(fresh):
            metrics.EVENTS_DUPLICATE.labels(self.name).inc(len(events) - len(fresh))
        for topic, count in Counter(record.topic for record, _ in dead).items():
            metrics.EVENTS_DEADLETTERED.labels(self.name, topic).inc(count)

    async def _check_truncation(self, polled: set[TopicPartition]) -> None:
        """A partition whose log ends before the position we need was truncated (broker loss).

        Checked for idle partitions about once a second: the high watermark comes with every
        fetch response, even an empty one, so this costs no request.
        """
        now = time.monotonic()
        if now - self._last_truncation_check < 1.0:
            return
        self._last_truncation_check = now
        assert self._consumer is not None
        for tp in self._consumer.assignment() - polled:
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            expected = self._expected.get(tp)
            needed = expected.next_offset if expected else self._next.get(tp, 0)
            if highwater < needed:
                self._restart_partition(tp, f"log ends at {highwater}, we need {needed}")

    def _update_lag(self) -> None:
        assert self._consumer is not None
        lag: dict[str, int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            value = max(highwater - self._next.get(tp, 0), 0)
            lag[f"{tp.topic}/{tp.partition}"] = value
            metrics.CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(value)
        self.status.lag = lag

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No batch is applied while the block runs (the one in flight commits first)."""
        async with self._batch_lock:
            yield

    def halt(self) -> None:
        """Within `paused()`: apply nothing more, ever (then `stop()`)."""
        self._halted = True
        self._stopping.set()

    async def _rewind_to_committed(self) -> None:
        """After a failed batch, go back to what PostgreSQL says was applied (raises while
        the database is away: the caller retries before applying anything)."""
        async with self._batch_lock:
            if self._halted:
                return
            await self._seek_to_stored(self._consumer.assignment() if self._consumer else set())

    async def _seek_to_stored(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        async with self._pool.acquire() as conn, conn.transaction():
            # Claim first: a stale owner's commit in flight finishes before the claim, and
            # its offsets are then read below; any later commit of it is refused.
            self._leases = await claim_leases(conn, self.name, self._owner, sorted(assigned))
            rows = await conn.fetch(
                "SELECT topic, partition, next_offset, fingerprint, epochs "
                "FROM consumer_offsets WHERE consumer = $1",
                self.name,
            )
            marks = await conn.fetch(
                "SELECT topic, partition, log, mark, high FROM log_marks WHERE consumer = $1",
                self.name,
            )
        self._generation += 1  # batches decoded before this seek are not committed
        stored = {TopicPartition(r["topic"], r["partition"]): r for r in rows}
        self._logs = {
            (TopicPartition(r["topic"], r["partition"]), r["log"]): LogMark(r["mark"], r["high"])
            for r in marks
        }
        self._expected.clear()
        for tp in assigned:
            row = stored.get(tp)
            # What the stored position was reached with: what this process learnt past it
            # (a batch decoded but not committed) does not hold for a re-read from there.
            self._epochs[tp] = orjson.loads(row["epochs"]) if row is not None else {}
            if row is None or row["next_offset"] == 0:
                self._next[tp] = 0
                self._consumer.seek(tp, 0)
                continue
            next_offset = row["next_offset"]
            self._next[tp] = next_offset
            self._expected[tp] = _Expected(next_offset, row["fingerprint"])
            self._consumer.seek(tp, next_offset - 1)
        self.status.assigned = sorted(f"{tp.topic}/{tp.partition}" for tp in assigned)


def dead_letter(
    record: ConsumerRecord[bytes, bytes], reason: str, consumer: str
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Key, value and headers of the dead letter of `record`."""
    key, value = record.key, record.value
    size = len(key or b"") + len(value or b"")
    headers = [
        ("crm-error", reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore").encode()),
        ("crm-source-topic", record.topic.encode()),
        ("crm-source-partition", str(record.partition).encode()),
        ("crm-source-offset", str(record.offset).encode()),
        ("crm-consumer", consumer.encode()),
    ]
    # A record in CloudEvents binary mode keeps its attributes in headers: without them the
    # dead letter could neither be read nor replayed.
    headers += [(name, value) for name, value in record.headers if is_binding_header(name)]
    if size > MAX_DEAD_LETTER_BYTES:
        key = key[:1024] if key is not None else None
        value = value[: MAX_DEAD_LETTER_BYTES - len(key or b"")] if value is not None else None
        headers.append(("crm-truncated", str(size).encode()))
    return key, value, headers


def _trace_contexts(
    batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], events: list[Event]
) -> Iterator[str | bytes | None]:
    """The trace contexts a batch carries: the relay's record headers, then the CloudEvents
    distributed tracing extension of events whose producer set one."""
    for records in batches.values():
        for record in records:
            for name, value in record.headers:
                if name == tracing.TRACEPARENT:
                    yield value
    for event in events:
        extension = (event.envelope.model_extra or {}).get(tracing.TRACEPARENT)
        if isinstance(extension, str):
            yield extension


def _first_of_each(events: list[Event]) -> list[Event]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for event in events:
        if event.identity not in seen:
            seen.add(event.identity)
            unique.append(event)
    return unique


async def _settled(task: asyncio.Task[None] | None) -> None:
    """Let a commit in flight end before a rewind; the rewind reads what it stored, so its
    own failure needs no handling here (it is logged)."""
    if task is not None:
        try:
            await task
        except Exception:
            log.warning("a batch in flight failed too", exc_info=True)


def seq_of(event: Event) -> int:
    assert event.origin is not None
    return event.origin[1]


async def _applied_among(
    conn: Connection, consumer: str, behind: dict[tuple[TopicPartition, str], list[int]]
) -> set[tuple[TopicPartition, str, int]]:
    """Which of the numbers (at or below `high`, above the mark) were applied in the window."""
    wanted = [(where, seq) for where, seqs in behind.items() for seq in seqs]
    rows = await conn.fetch(
        """
        SELECT DISTINCT w.topic, w.partition, w.log, w.seq
        FROM unnest($2::text[], $3::int[], $4::text[], $5::bigint[])
             AS w(topic, partition, log, seq)
        JOIN applied_events a
          ON a.consumer = $1 AND a.topic = w.topic AND a.partition = w.partition
         AND a.log = w.log AND a.high >= w.seq AND a.low <= w.seq
        WHERE w.seq = ANY(a.seqs)
        """,
        consumer,
        [tp.topic for (tp, _), _ in wanted],
        [tp.partition for (tp, _), _ in wanted],
        [log_name for (_, log_name), _ in wanted],
        [seq for _, seq in wanted],
    )
    return {(TopicPartition(r["topic"], r["partition"]), r["log"], r["seq"]) for r in rows}


async def _remember(
    conn: Connection, consumer: str, rows: list[tuple[str, int, str, list[int]]]
) -> None:
    """One row per (partition, log) for the batch's numbers, and the raised `high`s."""
    if not rows:
        return
    await conn.execute(
        """
        WITH batch AS (
            SELECT * FROM unnest($2::text[], $3::int[], $4::text[], $5::bigint[], $6::bigint[],
                                 $7::text[]) AS b(topic, partition, log, low, high, seqs)
        ), kept AS (
            INSERT INTO applied_events (consumer, topic, partition, log, low, high, seqs)
            SELECT $1, topic, partition, log, low, high, seqs::bigint[] FROM batch
            ON CONFLICT (consumer, topic, partition, log, high) DO UPDATE
            SET seqs = applied_events.seqs || EXCLUDED.seqs,
                low = LEAST(applied_events.low, EXCLUDED.low)
        )
        INSERT INTO log_marks (consumer, topic, partition, log, high)
        SELECT $1, topic, partition, log, high FROM batch
        ON CONFLICT (consumer, topic, partition, log) DO UPDATE
        SET high = GREATEST(log_marks.high, EXCLUDED.high)
        """,
        consumer,
        [t for t, _, _, _ in rows],
        [p for _, p, _, _ in rows],
        [n for _, _, n, _ in rows],
        [seqs[0] for _, _, _, seqs in rows],
        [seqs[-1] for _, _, _, seqs in rows],
        ["{" + ",".join(map(str, seqs)) + "}" for _, _, _, seqs in rows],
    )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: ConsumerRuntime) -> None:
        self._runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Wait for the batch in flight to commit; its offsets are then in PostgreSQL.
        async with self._runtime._batch_lock:
            self._runtime.status.assigned = []
            for tp in revoked:  # another instance reports these partitions' lag now
                with contextlib.suppress(KeyError):
                    metrics.CONSUMER_LAG.remove(self._runtime.name, tp.topic, str(tp.partition))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._runtime._batch_lock:
            if self._runtime._halted:
                return
            await self._runtime._seek_to_stored(assigned)
        log.info(
            "partitions assigned",
            extra={"consumer": self._runtime.name, "count": len(assigned)},
        )
