"""The consumer runtime's guarantees on the real broker and PostgreSQL: a verdict that depends
on a record's bytes only, and bounded dedupe state that still applies every event once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from shared import db, kafka
from shared.consumer import ConsumerRuntime
from shared.db import Connection
from shared.events import Event, Topic, ValidationContext
from shared.outbox import relay_headers
from shared.settings import CommonSettings
from tests.helpers import purchase, read_topic, wait_until
from tooling.embedded import Broker

pytestmark = pytest.mark.integration
SCHEMA = "eventpath"


class Tally:
    """The smallest fold: purchases and their amounts per customer, added up."""

    name = "tally"
    topics: Sequence[str] = (Topic.PURCHASES,)

    async def store(self, conn: Connection, events: list[Event]) -> None:
        await conn.executemany(
            "INSERT INTO tally (subject, n, total) VALUES ($1, 1, $2) ON CONFLICT (subject) "
            "DO UPDATE SET n = tally.n + 1, total = tally.total + EXCLUDED.total",
            [(e.subject, e.data.amount) for e in events],  # type: ignore[attr-defined]
        )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    created = await db.create_pool(database_url, SCHEMA)
    await db.migrate(created, SCHEMA, db.CONSUMER_MIGRATIONS)
    await created.execute(
        "CREATE TABLE tally (subject text PRIMARY KEY, n int NOT NULL, total numeric NOT NULL)"
    )
    yield created
    await created.close()


async def publish(
    settings: CommonSettings, events: list[dict[str, Any]], first_seq: int, epoch: int
) -> None:
    """Publish as a relay does: each record names its log and its number there."""
    await kafka.ensure_topics(settings)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for seq, event in enumerate(events, start=first_seq):
            await producer.send_and_wait(
                Topic.PURCHASES,
                value=orjson.dumps(event),
                key=event["subject"].encode(),
                headers=relay_headers("test-log", seq, epoch),
            )
    finally:
        await producer.stop()


async def tally(pool: db.Pool) -> dict[str, tuple[int, Decimal]]:
    rows = await pool.fetch("SELECT subject, n, total FROM tally")
    return {r["subject"]: (r["n"], r["total"]) for r in rows}


def expected(events: list[dict[str, Any]]) -> dict[str, tuple[int, Decimal]]:
    """The offline fold: every distinct event once."""
    by_id = {(e["source"], e["id"]): e for e in events}
    totals: dict[str, tuple[int, Decimal]] = {}
    for e in by_id.values():
        n, total = totals.get(e["subject"], (0, Decimal(0)))
        totals[e["subject"]] = (n + 1, total + Decimal(e["data"]["amount"]))
    return totals


async def test_a_consumer_judges_by_the_bytes_only(settings: CommonSettings, pool: db.Pool) -> None:
    """A purchase in USD whose time is two minutes ahead of this consumer's clock, folded by a
    consumer whose deployment reports in CNY and tolerates no future time: the gateway
    accepted it, so every consumer folds it, whatever its own clock and settings say."""
    own = settings.model_copy(update={"reporting_currency": "CNY", "future_tolerance_seconds": 0})
    ahead = datetime.now(UTC) + timedelta(minutes=2)
    event = purchase("cust-bytes", "12.50", time=ahead)
    await publish(own, [event], first_seq=1, epoch=1)
    runtime = ConsumerRuntime(own, pool, Tally(), ValidationContext("CNY", timedelta(0)))
    await runtime.start()
    try:
        await wait_until(
            lambda: _equals(pool, expected([event])), what="the event folded, not dead-lettered"
        )
    finally:
        await runtime.stop()
    assert await read_topic(own.kafka_bootstrap_servers, Topic.DEADLETTER) == []


async def _equals(pool: db.Pool, want: dict[str, tuple[int, Decimal]]) -> bool:
    return await tally(pool) == want


async def test_dedupe_state_is_bounded_and_every_event_is_applied_once(
    settings: CommonSettings, broker: Broker, pool: db.Pool
) -> None:
    """Ids leave the dedupe window and become one mark per partition and log; re-sent and
    re-published records (after the window, and after the broker lost its log) change
    nothing, and new ones are applied."""
    short = settings.model_copy(update={"dedupe_window_seconds": 2})
    first = [purchase(f"cust-{i % 7}", f"{i}.25") for i in range(1, 61)]
    await publish(short, first, first_seq=1, epoch=1)
    runtime = ConsumerRuntime(short, pool, Tally(), ValidationContext())
    await runtime.start()
    try:
        await wait_until(lambda: _equals(pool, expected(first)), what="the first events")

        async def window_emptied() -> bool:
            remembered = await pool.fetchval("SELECT count(*) FROM applied_events")
            marks = await pool.fetch("SELECT partition, log, mark FROM log_marks")
            return remembered == 0 and len(marks) >= 1 and all(r["mark"] > 0 for r in marks)

        await wait_until(window_emptied, what="ids folded into marks")
        marks = await pool.fetch("SELECT topic, partition, log, mark, high FROM log_marks")
        # Bounded: one mark per partition the log published to, whatever the history.
        assert len(marks) <= short.topic_partitions
        assert {r["log"] for r in marks} == {"test-log"}
        assert max(r["mark"] for r in marks) == len(first)
        assert all(r["mark"] == r["high"] for r in marks)

        # The relay re-sends what it published (at-least-once), long after the window.
        await publish(short, first, first_seq=1, epoch=1)
        # The broker loses its log; the relay publishes its whole log again, then new events.
        broker.restart()
        later = [purchase(f"cust-{i % 5}", f"{i}.50") for i in range(1, 41)]
        await publish(short, first + later, first_seq=1, epoch=2)
        await wait_until(
            lambda: _equals(pool, expected(first + later)), timeout=60, what="the new events"
        )
        folded = await pool.fetchval(
            "SELECT sum(next_offset) FROM consumer_offsets WHERE topic = $1", Topic.PURCHASES
        )
        assert folded == len(first) + len(later)  # read up to the end of the new log
    finally:
        await runtime.stop()
    assert await tally(pool) == expected(first + later)


async def replace_log(settings: CommonSettings, topic: str) -> None:
    """The topic's log is lost and begins again empty (as after an unclean leader election,
    or a broker that keeps its logs in memory), while the consumer group lives on."""
    admin = kafka.admin(settings)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        await kafka.ensure_topics_with(admin, settings, [topic])
    finally:
        await admin.close()


async def test_a_log_published_again_is_read_from_its_start(
    settings: CommonSettings, pool: db.Pool
) -> None:
    """The broker loses a log while the consumer is busy, and before the consumer fetches
    again the relay has published the log again and new events after it, past the position
    the consumer had in the old log (which held every record twice: an at-least-once
    re-send). The consumer must not go on from its old position in the new log: the new
    events below it would be skipped. The raised log epoch tells it to re-read."""
    first = [purchase(f"cust-{i % 7}", f"{i}.25") for i in range(1, 61)]
    await publish(settings, first, first_seq=1, epoch=1)
    await publish(settings, first, first_seq=1, epoch=1)  # re-sent: the old log is long
    runtime = ConsumerRuntime(settings, pool, Tally(), ValidationContext())
    await runtime.start()
    try:

        async def at_the_end() -> bool:
            read, end, _ = runtime.progress()
            return end is not None and read == end == 2 * len(first)

        await wait_until(at_the_end, what="the old log read to its end")
        assert await tally(pool) == expected(first)
        later = [purchase(f"cust-{i % 5}", f"{i}.50") for i in range(1, 101)]
        async with runtime.paused():  # the consumer is busy with a batch meanwhile
            await replace_log(settings, Topic.PURCHASES)
            await publish(settings, first + later, first_seq=1, epoch=2)
        await wait_until(
            lambda: _equals(pool, expected(first + later)), timeout=60, what="every new event"
        )
    finally:
        await runtime.stop()
