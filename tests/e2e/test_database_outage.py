"""PostgreSQL stopped for seconds, twice, while a mixed stream flows in through ingest's API:
afterwards every service's read model equals the offline fold of everything ingest accepted,
and scoring and reporting each count exactly the purchases the client saw accepted.

What it guards: a consumer whose batch fails while the database is away has its Kafka
position past that batch. If it applied the next batch before seeking back to the offsets
PostgreSQL holds, that commit would store an offset beyond the failed batch and its events
would be skipped for good, while readiness reports lag 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.conftest import Stack
from tests.helpers import (
    Feed,
    caught_up,
    mixed_stream,
    model_differences,
    start_postgres,
    stop_postgres,
    stored_events,
    wait_until,
)
from tooling.embedded import Database

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]

OUTAGES = 2
OUTAGE_SECONDS = 7.0  # how long PostgreSQL stays down: the fault's shape
ACCEPTED_BETWEEN_OUTAGES = 3000  # events accepted before the outages and after them
PROJECTIONS = ("scoring", "reporting", "complaints")
BACKLOG = 4000  # events accepted while the projections stall, before each outage


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Database]:
    """A PostgreSQL of this test's own: it is stopped and started, which the session's
    server, shared by the other tests, must not be."""
    database = Database(tmp_path / "pg" / "data").start()
    yield database
    database.stop()


@pytest.fixture
def stack_env() -> dict[str, str]:
    # The projections' stall must stay well inside the group session, or the broker takes
    # their partitions away: that would be another fault (a rebalance), not this one.
    return {"CONSUMER_SESSION_TIMEOUT_MS": "20000"}


@pytest.fixture
def database_url(own_postgres: Database) -> str:
    """The stack's database lives on `own_postgres` (overrides the session-wide one)."""
    return own_postgres.create_database("outage")


async def test_postgres_stopped_twice_under_traffic_skips_no_event(
    stack: Stack, own_postgres: Database
) -> None:
    feed = Feed(stack.url("ingest"), batch_size=500, clients=8)
    events = mixed_stream(
        seed=12,
        count=3 * (OUTAGES * (BACKLOG + ACCEPTED_BETWEEN_OUTAGES) + ACCEPTED_BETWEEN_OUTAGES),
    )
    stop = asyncio.Event()
    streaming = asyncio.create_task(feed.stream(events, stop))
    try:
        for _outage in range(OUTAGES):
            await more_accepted(feed, streaming, ACCEPTED_BETWEEN_OUTAGES)
            await outage_while_behind(stack, own_postgres, feed, streaming)
        await more_accepted(feed, streaming, ACCEPTED_BETWEEN_OUTAGES)
    finally:
        stop.set()
        await streaming
    assert feed.retries, "the outages refused no request: they did not hit the traffic"

    urls = [service.url for service in stack.services.values()]
    await wait_until(lambda: caught_up(urls), timeout=180, what="every consumer caught up")
    stored = await stored_events(stack.database_url)
    assert set(feed.accepted) <= {e.id for e in stored}, "an accepted event is not stored"

    purchases = feed.count("crm.purchase.completed")
    opened = feed.count("crm.complaint.opened")

    async def settled() -> bool:
        counts = await counted(stack.database_url)
        equal = not await model_differences(stack.database_url)
        return equal and counts == (purchases, purchases, opened)

    # Caught up by readiness; the last batch may still be committing, and the SLA sweeper
    # keeps emitting escalations the complaints fold then applies: a bounded wait for a
    # moment when every model equals the fold of what is stored.
    try:
        await wait_until(settled, timeout=60, what="read models equal to the offline fold")
    except AssertionError:
        scoring, reporting, complaints = await counted(stack.database_url)
        assert (scoring, reporting) == (purchases, purchases), (
            f"accepted {purchases} purchases; scoring counts {scoring}, reporting {reporting}"
        )
        assert complaints == opened, f"accepted {opened} complaints; complaints has {complaints}"
        diff = await model_differences(stack.database_url)
        assert not diff, f"{len(diff)} differences from the offline fold:\n" + "\n".join(diff[:30])
        raise
    print(
        f"\noutages: {len(feed.accepted)} events accepted, {purchases} purchases; "
        f"{feed.retries} posts retried, {len(feed.server_errors)} of them after a 500"
    )


async def more_accepted(feed: Feed, streaming: asyncio.Task[None], count: int) -> None:
    """Wait until ingest has accepted `count` more events: traffic flows."""
    target = len(feed.accepted) + count

    async def reached() -> bool:
        if streaming.done():
            streaming.result()  # the clients failed: say why
            raise AssertionError("the stream ran out before the target was reached")
        return len(feed.accepted) >= target

    await wait_until(reached, timeout=120, what=f"{target} events accepted")


async def outage_while_behind(
    stack: Stack, database: Database, feed: Feed, streaming: asyncio.Task[None]
) -> None:
    """PostgreSQL stopped while every projection has a backlog to apply, as in a busy hour.
    The projections stall (SIGSTOP) while ingest accepts the backlog and the database stops,
    then resume into the outage: their batches fail with more records fetched behind them."""
    projections = [stack.services[name] for name in PROJECTIONS]
    for service in projections:
        service.pause()
    try:
        await more_accepted(feed, streaming, BACKLOG)
        await asyncio.to_thread(stop_postgres, database)
    finally:
        for service in projections:
            service.resume()
    try:
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage's length, not a synchronisation
    finally:
        await asyncio.to_thread(start_postgres, database)


async def counted(dsn: str) -> tuple[int, int, int]:
    """Purchases scoring and reporting count, complaints the complaints service holds."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT coalesce(sum(purchase_count), 0) FROM scoring.purchase_summaries),"
            " (SELECT coalesce(sum(orders), 0) FROM reporting.sales),"
            " (SELECT count(*) FROM complaints.complaints WHERE opened_at IS NOT NULL)"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])
