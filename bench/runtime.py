"""The consumer runtime's own ceiling: `python -m bench.runtime [N]`.

Publishes N purchase records as a relay does (with `crm-log`/`crm-seq` headers) to an
embedded broker, then folds them with a projection that stores nothing, so what is measured
is the runtime alone: fetch, decode and validate, dedupe, offsets, in one transaction per
batch. Timed from the first committed batch (start-up excluded). Prints events/s; pass
`--default-gc` to keep Python's default collector threshold (the services raise it).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.run import purchase_event, stored_bytes
from shared import db, kafka
from shared.consumer import ConsumerRuntime
from shared.db import Connection
from shared.events import Event, Topic, ValidationContext
from shared.outbox import relay_headers
from shared.service import GC_YOUNG_THRESHOLD
from shared.settings import CommonSettings
from tooling.embedded import Broker, Database


class Nothing:
    name = "nothing"
    topics: Sequence[str] = (Topic.PURCHASES,)

    async def store(self, conn: Connection, events: list[Event]) -> None:
        return None


async def publish(settings: CommonSettings, count: int) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        pending = []
        for n in range(count):
            value = stored_bytes(purchase_event(n, prefix="rt"))
            pending.append(
                await producer.send(
                    Topic.PURCHASES,
                    value=value,
                    key=f"cust-{n % 50_000}".encode(),
                    headers=relay_headers("bench", n + 1, 1),
                )
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def fold(settings: CommonSettings, count: int) -> float:
    pool = await db.create_pool(settings.database_url, "nothing")
    await db.migrate(pool, "nothing", db.CONSUMER_MIGRATIONS)
    runtime = ConsumerRuntime(settings, pool, Nothing(), ValidationContext())
    await runtime.start()
    try:
        started, first = 0.0, 0
        while True:
            read = int(
                await pool.fetchval("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets")
            )
            if read and not started:
                started, first = time.perf_counter(), read
            if read >= count:
                return (count - first) / (time.perf_counter() - started)
            await asyncio.sleep(0.02)
    finally:
        await runtime.stop()
        await pool.close()


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        broker = Broker().start()
        database = Database(Path(scratch) / "data").start()
        try:
            settings = CommonSettings(
                kafka_bootstrap_servers=broker.bootstrap, database_url=database.dsn
            )
            await kafka.ensure_topics(settings)
            await publish(settings, count)
            print(f"runtime alone: {await fold(settings, count):,.0f} events/s ({count:,} records)")
        finally:
            broker.stop()
            database.stop()


if __name__ == "__main__":
    if "--default-gc" not in sys.argv:
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    asyncio.run(main(int(numbers[0]) if numbers else 100_000))
