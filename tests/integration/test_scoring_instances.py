"""Two scoring instances share the partitions, and one customer's events are on all of them
(as a producer partitioning keys with CRC32 instead of murmur2 puts them): both instances
fold that customer, and the model is the offline fold of every event (real broker and
PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from services.scoring.main import SPEC
from services.scoring.projection import ScoringProjection
from shared import db, kafka
from shared.consumer import ConsumerRuntime
from shared.events import RECORDED, Topic
from shared.outbox import relay_headers
from shared.settings import CommonSettings
from tests.helpers import purchase, wait_until

pytestmark = pytest.mark.integration

CUSTOMERS = ("x", "y", "z")


@pytest.fixture
async def pools(database_url: str) -> AsyncIterator[tuple[db.Pool, db.Pool]]:
    one = await db.create_pool(database_url, "scoring")
    two = await db.create_pool(database_url, "scoring")
    await db.migrate(one, "scoring", *SPEC.migration_directories())
    yield one, two
    await one.close()
    await two.close()


async def publish_over_partitions(settings: CommonSettings, events: list[dict[str, Any]]) -> None:
    """Event i to partition i mod the partition count, whatever its key."""
    await kafka.ensure_topics(settings)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for seq, event in enumerate(events, start=1):
            await producer.send_and_wait(
                Topic.PURCHASES,
                value=orjson.dumps(event),
                key=event["subject"].encode(),
                partition=seq % settings.topic_partitions,
                headers=relay_headers("elsewhere", seq, 1),
            )
    finally:
        await producer.stop()


def offline(events: list[dict[str, Any]]) -> set[tuple[str, int, Decimal]]:
    """(customer, purchases, total) by hand: every event is a purchase, each counted once."""
    totals: dict[str, tuple[int, Decimal]] = {}
    for e in events:
        n, total = totals.get(e["subject"], (0, Decimal(0)))
        totals[e["subject"]] = (n + 1, total + Decimal(e["data"]["amount"]))
    return {(c, n, total) for c, (n, total) in totals.items()}


async def test_two_instances_fold_one_customer_spread_over_partitions(
    settings: CommonSettings, pools: tuple[db.Pool, db.Pool]
) -> None:
    runtimes = [
        ConsumerRuntime(settings, pool, ScoringProjection(ZoneInfo("UTC")), RECORDED)
        for pool in pools
    ]
    for runtime in runtimes:
        await runtime.start()
    try:
        topics = len({*ScoringProjection.topics, Topic.KEYS})

        async def both_own_partitions() -> bool:
            owned = [runtime.progress()[2] for runtime in runtimes]
            return all(owned) and sum(owned) == topics * settings.topic_partitions

        await wait_until(both_own_partitions, timeout=60, what="the partitions shared out")
        events = [
            purchase(CUSTOMERS[i % len(CUSTOMERS)], f"{i}.{i % 100:02d}") for i in range(1, 301)
        ]
        await publish_over_partitions(settings, events)

        async def folded() -> bool:
            rows = await pools[0].fetch(
                "SELECT customer_id, purchase_count, total_spent FROM purchase_summaries"
            )
            return {tuple(r) for r in rows} == offline(events)

        await wait_until(folded, timeout=60, what="every purchase folded once")
        assert all(runtime.progress()[2] for runtime in runtimes)  # both still folding
    finally:
        for runtime in runtimes:
            await runtime.stop()
