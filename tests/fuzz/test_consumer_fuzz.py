"""Hostile records on every topic the consumers read, by both ways records arrive.

Other systems publish to our topics directly, so anything can arrive: random bytes,
truncated JSON, wrong types, huge fields, unknown event types, future schema versions.
Published straight to a topic, each such record is judged once, by the gateway (ingest's
archive): it lands in crm.deadletter once, with its reason and the original bytes, and the
good events after it on the same partition reach every consumer of the topic through the
gateway's copy. Carrying a relay's headers (as if a log had published it), each is judged
by every consumer of the topic on its bytes alone, with the same outcome. No consumer may
fail a batch or stop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from services.complaints.main import SPEC as COMPLAINTS
from services.reporting.main import SPEC as REPORTING
from services.scoring.main import SPEC as SCORING
from shared.consumer import MAX_DEAD_LETTER_BYTES
from shared.events import SOURCE_TOPICS, Topic
from shared.outbox import relay_headers
from tests.fuzz.corpus import SEED, at_the_limits, good_event, hostile
from tests.helpers import ServiceProcess, api_client, produce_raw, read_topic, wait_until
from tooling.embedded import Broker, free_port, service_environment

pytestmark = pytest.mark.e2e

# The consumers under test and the topics each reads (their projections' own list).
CONSUMERS: dict[str, tuple[Topic, ...]] = {
    spec.name: tuple(Topic(t) for t in spec.projection(spec.settings_type()).topics)
    for spec in (SCORING, COMPLAINTS, REPORTING)
}
GATEWAY = "ingest-archive"
# Refused by the gateway for its clock, not for its bytes: a record a log published with such
# a time is folded by every consumer alike (the gateway accepted it when it was not ahead).
CLOCK_JUDGED = frozenset({"time a day ahead"})
FAKE_LOG = "fuzz-log"  # records published with a relay's headers carry this log name


# What a dead letter's reason says for some of the hostile records (by label prefix).
REASONS = {
    "empty": "not JSON",
    "random bytes": "not JSON",
    "invalid UTF-8": "not JSON",
    "nested": "not JSON",
    "JSON array": "must be a JSON object",
    "unknown type": "unknown event type",
    "future schema version": "unsupported schema version",
    "schema version of superscripts": "unsupported schema version",
    "time in year 9999": "time",
    "id with NUL": "NUL",
    "negative quantity": "data.items.0.quantity",
    "data.amount negative": "data.amount",
    "data.amount NaN": "data.amount",
}


@dataclass
class Consumers:
    broker: Broker
    database_url: str
    services: dict[str, ServiceProcess]


@pytest.fixture
async def consumers(broker: Broker, database_url: str, tmp_path: Path) -> AsyncIterator[Consumers]:
    env = service_environment(
        broker,
        database_url,
        TOPIC_PARTITIONS="3",
        CONSUMER_SESSION_TIMEOUT_MS="6000",
        METADATA_MAX_AGE_MS="1000",
        SCORING_RESCORE_SECONDS="3600",
    )
    services = {
        name: ServiceProcess(name, env, tmp_path, free_port()) for name in [*CONSUMERS, "ingest"]
    }
    try:
        for service in services.values():
            service.start()
        await asyncio.gather(*(s.wait_ready(timeout=120) for s in services.values()))
        yield Consumers(broker, database_url, services)
    finally:
        for service in services.values():
            service.stop()


async def publish(
    bootstrap: str, topic: Topic, values: list[bytes | None], key: bytes, first_seq: int = 0
) -> None:
    """Publish in order on one partition (one key), tombstones included; large records too
    (other systems' producers may allow up to the broker's limit). With `first_seq`, each
    record carries a relay's headers, numbered from it."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, max_request_size=4 << 20
    )
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic,
                value=value,
                key=key,
                headers=relay_headers(FAKE_LOG, first_seq + n, 1) if first_seq else None,
            )
            for n, value in enumerate(values)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def applied(stack: Consumers, consumer: str, log_name: str, seq: int | None) -> bool:
    """Whether the consumer applied the record numbered `seq` in `log_name`."""
    if seq is None:
        return False
    conn = await asyncpg.connect(stack.database_url)
    try:
        found = await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {consumer}.applied_events WHERE consumer = $1"
            " AND log = $2 AND $3 = ANY(seqs)) OR EXISTS (SELECT 1 FROM"
            f" {consumer}.log_marks WHERE consumer = $1 AND log = $2 AND mark >= $3)",
            consumer,
            log_name,
            seq,
        )
        return bool(found)
    finally:
        await conn.close()


async def stored_seq(stack: Consumers, event: dict[str, Any]) -> int | None:
    """The number the gateway gave an event published straight to a topic, once stored."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        seq: int | None = await conn.fetchval(
            "SELECT seq FROM ingest.events WHERE source = $1 AND id = $2",
            event["source"],
            event["id"],
        )
        return seq
    finally:
        await conn.close()


def relayed(event: dict[str, Any]) -> dict[str, Any]:
    """The same event under another id, for the relay path."""
    return {**event, "id": f"{event['id']}-relayed"}


async def test_hostile_records_are_dead_lettered_and_the_next_good_one_applied(
    consumers: Consumers,
) -> None:
    bootstrap = consumers.broker.bootstrap
    rng = random.Random(SEED)
    topics = sorted({t for ts in CONSUMERS.values() for t in ts})
    sent = {topic: hostile(topic, rng) for topic in topics}
    soon = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()  # within the tolerance
    # What must be applied: (consumer, the event, how it arrives: relayed under a number of
    # FAKE_LOG, or straight to its topic and then through the gateway).
    wanted: list[tuple[str, dict[str, Any], int | None]] = []
    seq = 1
    for topic in topics:
        key = f"fuzz-{topic.value.split('.')[1]}".encode()
        good = [*at_the_limits(topic, soon), good_event(topic, "after")]
        readers = [name for name, reads in CONSUMERS.items() if topic in reads]
        if topic in SOURCE_TOPICS:  # straight to the topic: the gateway judges
            await publish(bootstrap, topic, [*sent[topic].values()], key)
            await produce_raw(bootstrap, topic, [orjson.dumps(e) for e in good], key=key)
            wanted += [(name, e, None) for name in readers for e in good]
        values = [*sent[topic].values(), *(orjson.dumps(relayed(e)) for e in good)]
        await publish(bootstrap, topic, values, key, first_seq=seq)
        numbers = range(seq + len(sent[topic]), seq + len(values))
        wanted += [
            (name, relayed(e), n) for name in readers for e, n in zip(good, numbers, strict=True)
        ]
        seq += len(values)

    # The events at the limits and the good events after the hostile ones are applied by every
    # consumer of their topic, either way.
    for name, good, number in wanted:

        async def done(n: str = name, e: dict[str, Any] = good, k: int | None = number) -> bool:
            if k is not None:
                return await applied(consumers, n, FAKE_LOG, k)
            return await applied(consumers, n, "ingest", await stored_seq(consumers, e))

        await wait_until(done, timeout=120, what=f"{name} to apply {good['id']}")

    # Every hostile record is dead-lettered by every consumer of its topic, with a reason,
    # where it came from, and its bytes (cut, and marked so, only beyond the size a dead
    # letter can carry).
    sources = {
        topic.value: {(r.partition, r.offset): r for r in await read_topic(bootstrap, topic)}
        for topic in topics
    }
    labels = {
        (topic.value, value): label for topic in topics for label, value in sent[topic].items()
    }
    expected = {
        (name, topic.value, label)
        for name, reads in CONSUMERS.items()
        for topic in reads
        for label in sent[topic]
        if label not in CLOCK_JUDGED
    } | {(GATEWAY, t.value, label) for t in topics if t in SOURCE_TOPICS for label in sent[t]}
    found: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def all_dead_lettered() -> bool:
        for record in await read_topic(bootstrap, Topic.DEADLETTER, timeout=30):
            headers = {k: v.decode() for k, v in record.headers}
            topic = headers["crm-source-topic"]
            where = (int(headers["crm-source-partition"]), int(headers["crm-source-offset"]))
            original = sources[topic][where]
            label = labels.get((topic, original.value), f"a good record: {headers['crm-error']}")
            found[(headers["crm-consumer"], topic, label)] = (record, original)
        return expected <= set(found)

    try:
        await wait_until(all_dead_lettered, timeout=120, what="every hostile record dead-lettered")
    except AssertionError:
        raise AssertionError(f"not dead-lettered: {sorted(expected - set(found))}") from None
    assert set(found) == expected, f"dead-lettered, but not hostile: {set(found) - expected}"
    for (name, topic, label), (record, original) in found.items():
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["crm-error"], f"{name} gave no reason for {label!r} on {topic}"
        if "crm-truncated" in headers:
            assert len(original.value) > MAX_DEAD_LETTER_BYTES, label
            assert original.value.startswith(record.value), label
            assert int(headers["crm-truncated"]) == len(original.key) + len(original.value)
        else:
            assert record.value == original.value, f"{label!r}: not the original bytes"
            assert record.key == original.key, label
        for words, reason in REASONS.items():
            if label.startswith(words):
                assert reason in headers["crm-error"], (name, label, headers["crm-error"])

    # Nothing crashed, no batch failed and was retried, and every consumer is still ready.
    async with api_client(timeout=10) as client:
        for name, service in consumers.services.items():
            if name == "ingest":
                continue
            assert service.process is not None, name
            assert service.process.poll() is None, f"{name} exited: {service.log_tail()}"
            readiness = (await client.get(f"{service.url}/readyz")).json()
            assert readiness["ready"], (name, readiness)
            assert readiness["consumer"]["last_error"] is None, (name, readiness)
            log = (service.log_dir / f"{name}.log").read_text(errors="replace")
            assert "consumer batch failed" not in log, f"{name}: {service.log_tail()}"
