"""Chaos: a realistic mixed stream through ingest while services are SIGKILLed, the broker
restarts (losing its memory) and PostgreSQL stops for seconds; the stream flows for the
whole fault window. At the end every read model (scoring, complaints, reporting) equals the
one computed offline from the event store by the same pure domain functions.

`make chaos` runs it for CHAOS_SECONDS (default 300); `make test` runs a short form.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared import kafka
from shared.settings import CommonSettings
from tests.helpers import (
    Feed,
    ServiceProcess,
    api_client,
    mixed_stream,
    model_differences,
    postgres_outage,
    stored_events,
    wait_until,
)
from tooling.devstack import SERVICES
from tooling.embedded import Broker, Database, free_port, service_environment

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]

SECONDS = float(os.environ.get("CHAOS_SECONDS", "25"))
EVENTS_PER_SECOND = 60  # offered for the whole run: every fault meets traffic
BATCH = 50


class World:
    def __init__(self, root: Path) -> None:
        self.broker = Broker(log_path=root / "broker.log").start()
        self.database = Database(root / "pg").start()
        self.dsn = self.database.create_database("chaos")
        env = service_environment(
            self.broker,
            self.dsn,
            TOPIC_PARTITIONS="4",
            CONSUMER_SESSION_TIMEOUT_MS="6000",
            METADATA_MAX_AGE_MS="1000",
            SLA_ALWAYS_OPEN="true",
            SCORING_RESCORE_SECONDS="5",
        )
        self.services = {
            name: ServiceProcess(name, env, root / "logs", free_port()).start()
            for name, _ in SERVICES
        }
        self.faults: list[str] = []

    async def ready(self) -> None:
        await asyncio.gather(*(s.wait_ready(timeout=120) for s in self.services.values()))

    def close(self) -> None:
        for service in self.services.values():
            service.stop()
        self.broker.stop()
        self.database.stop()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    running = World(tmp_path)
    try:
        await running.ready()
        yield running
    finally:
        running.close()


async def inflict(world: World, until: float, rng: random.Random) -> None:
    """Faults in rotation (so every kind happens in a short run), the victim at random."""
    loop = asyncio.get_running_loop()
    kinds = ["kill", "postgres", "kill", "broker"]
    while loop.time() < until:
        await asyncio.sleep(rng.uniform(1.5, 3.5))
        fault = kinds[len(world.faults) % len(kinds)]
        if fault == "kill":
            name = rng.choice(list(world.services))
            world.services[name].kill()
            world.faults.append(f"SIGKILL {name}")
            world.services[name].start()
        elif fault == "broker":
            world.broker.restart()
            world.faults.append("broker restart (memory lost)")
        else:
            seconds = rng.uniform(3.0, 6.0)
            world.faults.append(f"PostgreSQL stopped {seconds:.1f} s")
            await postgres_outage(world.database, seconds)


async def test_nothing_lost_or_counted_twice_under_faults(world: World) -> None:
    rng = random.Random(2026)
    # The stream is paced to last the whole fault window (the list is only its upper bound),
    # and some batches are sent twice on purpose: duplicates.
    events = mixed_stream(seed=7, count=2 * max(600, int(SECONDS * EVENTS_PER_SECOND)))
    feed = Feed(
        world.services["ingest"].url,
        batch_size=BATCH,
        pause=BATCH / EVENTS_PER_SECOND,
        resend_share=0.1,
        seed=2026,
    )
    faults_over = asyncio.Event()

    async def faults() -> None:
        try:
            await inflict(world, asyncio.get_running_loop().time() + SECONDS, rng)
        finally:
            faults_over.set()

    await asyncio.gather(feed.stream(events, faults_over), faults())
    await world.ready()
    assert any(f.startswith("PostgreSQL") for f in world.faults), world.faults

    stored = await stored_events(world.dsn)
    assert {e.id for e in stored} >= set(feed.accepted)  # every accepted event is stored

    async def settled() -> bool:
        return not await model_differences(world.dsn)

    try:
        await wait_until(settled, timeout=180, what="read models equal to the offline fold")
    except AssertionError:
        diff = await model_differences(world.dsn)
        pytest.fail(
            f"{len(diff)} differences after faults {world.faults}:\n"
            + "\n".join(diff[:30])
            + "\n\n"
            + await evidence(world)
        )
    print(
        f"\nchaos: {len(feed.accepted)} events accepted ({feed.retries} retried posts, "
        f"{len(feed.server_errors)} after a 500), "
        f"faults: {world.faults}"
    )


async def evidence(world: World) -> str:
    """What a failed run leaves to reason with: for every consumer, its stored positions
    against the broker's log ends; the event store and outbox; each service's warnings."""
    conn = await asyncpg.connect(world.dsn)
    try:
        store = await conn.fetchrow(
            "SELECT count(*) AS events, max(seq) AS last, "
            "(SELECT count(*) FROM ingest.outbox) AS pending FROM ingest.events"
        )
        positions = []
        for schema in ("ingest", "scoring", "complaints", "reporting"):
            rows = await conn.fetch(
                f"SELECT consumer, topic, partition, next_offset, epochs "
                f"FROM {schema}.consumer_offsets ORDER BY topic, partition"
            )
            positions += [(schema, dict(r)) for r in rows]
    finally:
        await conn.close()
    ends = await kafka.log_ends(
        CommonSettings(kafka_bootstrap_servers=world.broker.bootstrap, database_url=world.dsn),
        {(r["topic"], r["partition"]): r["next_offset"] for _, r in positions},
    )
    behind = [
        f"  {schema} {r['topic']}/{r['partition']}: {r['next_offset']} of {end}, {r['epochs']}"
        for schema, r in positions
        if (end := ends.get((r["topic"], r["partition"]))) != r["next_offset"]
    ]
    lines = [
        f"event store: {dict(store)}",
        f"consumer positions: {len(positions) - len(behind)} at their log's end, "
        f"{len(behind)} not (next offset of log end, epochs):",
        *behind,
    ]
    async with api_client(timeout=5) as client:
        for service in world.services.values():
            with contextlib.suppress(httpx.HTTPError):
                answer = await client.get(f"{service.url}/readyz")
                lines.append(f"{service.name} /readyz {answer.status_code}: {answer.text[:400]}")
    for service in world.services.values():
        if service.process is not None and service.process.poll() is None:
            service.process.send_signal(signal.SIGUSR1)  # each task's stack into its log

    async def stacks_written() -> bool:
        return all("task stack" in s.log_tail(4000) for s in world.services.values())

    with contextlib.suppress(AssertionError):  # evidence only: report what there is
        await wait_until(stacks_written, timeout=10, what="task stacks in the logs")
    for service in world.services.values():
        warnings = [line for line in service.log_tail(2000).splitlines() if '"INFO"' not in line]
        lines.append(f"{service.name} log, warnings and errors (last 25 of {len(warnings)}):")
        lines += [f"  {line[:300]}" for line in warnings[-25:] if "task stack" not in line]
        stacks = [line for line in warnings if "task stack" in line]
        lines.append(f"{service.name} task stacks:")
        lines += [f"  {line[-1500:]}" for line in stacks]
    return "\n".join(lines)
