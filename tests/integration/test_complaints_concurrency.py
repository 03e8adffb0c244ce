"""One customer's events folded by two complaints instances at once (other systems publish
straight to the topics, and a producer partitioning by another hash can put one customer's
events on two partitions owned by two instances).

Two real PostgreSQL transactions: A stores its batch and does not commit; B stores its
batch on another connection and must wait for A (the customer's lock); then A commits, B
goes on and commits, and the stored complaint is compared with a hand-derived expectation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from services.complaints import sla
from services.complaints.main import SPEC
from services.complaints.projection import ComplaintsProjection
from services.complaints.settings import ComplaintsSettings
from shared import db
from shared.events import Event, ValidationContext, validate_event
from tests.helpers import event, wait_until

pytestmark = pytest.mark.integration

MONDAY_10 = datetime(2026, 3, 2, 10, tzinfo=UTC)  # office hours 09-12, 13-18 (UTC)
CONTEXT = ValidationContext(future_tolerance=timedelta(days=3650))
CUSTOMER = "cust-shared"
CONFIG = ComplaintsSettings().sla_config()


def complaint_step(kind: str, at: datetime, **data: Any) -> Event:
    raw = event(
        f"crm.complaint.{kind}",
        CUSTOMER,
        {"complaint_id": "k-1", **data},
        time=at,
        event_id=f"k-1-{kind}",
    )
    return validate_event(raw, CONTEXT)


OPENED = complaint_step(
    "opened",
    MONDAY_10,
    channel="email",
    category="delivery",
    priority="urgent",
    description="the parcel never came to Main Street 1",
)
RESPONDED = complaint_step("responded", MONDAY_10 + timedelta(minutes=30), agent_id="a-1")
GOLD = validate_event(
    event(
        "crm.customer.tier_changed",
        CUSTOMER,
        {"new": "gold", "as_of": (MONDAY_10 - timedelta(days=1)).isoformat()},
        time=MONDAY_10 - timedelta(days=1),
        event_id="tier-1",
    ),
    CONTEXT,
)
ERASED = validate_event(
    event("crm.customer.erased", CUSTOMER, {}, time=MONDAY_10 + timedelta(hours=1)), CONTEXT
)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    created = await db.create_pool(database_url, SPEC.schema)
    await db.migrate(created, SPEC.schema, *SPEC.migration_directories())
    yield created
    await created.close()


async def waits_on_a_lock(pool: db.Pool, pid: int) -> bool:
    waiting: bool | None = await pool.fetchval(
        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
    )
    return bool(waiting)


async def fold_concurrently(pool: db.Pool, first: list[Event], second: list[Event]) -> None:
    """A stores `first` and holds its transaction open until B, storing `second` on its own
    connection with its own projection, is seen waiting on a lock; then both commit."""
    instance_a, instance_b = ComplaintsProjection(CONFIG), ComplaintsProjection(CONFIG)
    async with pool.acquire() as conn_a, pool.acquire() as conn_b:
        tx_a = conn_a.transaction()
        await tx_a.start()
        await instance_a.store(conn_a, first)

        async def run_b() -> None:
            async with conn_b.transaction():
                await instance_b.store(conn_b, second)

        b_done = asyncio.create_task(run_b())
        try:
            pid_b = conn_b.get_server_pid()
            await wait_until(lambda: waits_on_a_lock(pool, pid_b), what="B waiting for A")
            assert not b_done.done()
        finally:
            await tx_a.commit()
        await asyncio.wait_for(b_done, timeout=30)


async def stored(pool: db.Pool) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM complaints WHERE complaint_id = 'k-1'")
    assert row is not None
    return row


def clock(row: asyncpg.Record, metric: sla.Metric) -> sla.Clock:
    state = sla.state_from_json("k-1", row["sla_state"])
    found = state.current(metric)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param([OPENED], [RESPONDED], id="in-order"),
        pytest.param([RESPONDED], [OPENED], id="late-opening"),
    ],
)
async def test_two_instances_on_one_complaint_take_turns(
    pool: db.Pool, first: list[Event], second: list[Event]
) -> None:
    await fold_concurrently(pool, first, second)
    row = await stored(pool)
    # By hand: urgent, tier unknown (standard targets: first response 1 h, resolution 8 h).
    # Opened Monday 10:00, answered 10:30: acknowledged, first response met after 30 min.
    assert row["status"] == "acknowledged"
    assert row["opened_at"] == MONDAY_10
    assert row["first_response_at"] == MONDAY_10 + timedelta(minutes=30)
    first_response = clock(row, sla.Metric.FIRST_RESPONSE)
    assert first_response.phase is sla.Phase.STOPPED
    assert first_response.accumulated == timedelta(minutes=30)
    assert first_response.breached_at is None
    # Resolution runs on: 10-12 and 13-18 Monday are 7 h, the 8th ends Tuesday 10:00 (long
    # past today: breached).
    resolution = clock(row, sla.Metric.RESOLUTION)
    assert resolution.phase is sla.Phase.RUNNING
    state = sla.state_from_json("k-1", row["sla_state"])
    views = sla.clock_views(state, MONDAY_10 + timedelta(hours=1), CONFIG)
    assert views[sla.Metric.RESOLUTION].due_at == MONDAY_10 + timedelta(days=1)
    assert row["breached"] is True
    # The earliest SLA event owed: the first-response clock stopped at 10:30.
    assert row["next_sla_at"] == MONDAY_10 + timedelta(minutes=30)
    assert (row["last_time"], row["last_id"]) == (RESPONDED.time, RESPONDED.id)


async def test_a_tier_change_folded_at_the_same_time_as_the_opening_counts(
    pool: db.Pool,
) -> None:
    """A folds the customer's move to gold (no complaint yet to retarget), B the opening:
    without a lock on the customer, B reads the tiers before A commits and the complaint
    keeps the standard targets for good."""
    await fold_concurrently(pool, [GOLD], [OPENED])
    row = await stored(pool)
    # By hand: urgent and gold: first response within 30 min, its warning at 80%: 10:24.
    assert row["tier"] == "gold"
    assert clock(row, sla.Metric.FIRST_RESPONSE).target == timedelta(minutes=30)
    assert row["next_sla_at"] == MONDAY_10 + timedelta(minutes=24)


async def test_an_erasure_folded_at_the_same_time_as_the_customers_complaint_redacts_it(
    pool: db.Pool,
) -> None:
    """A folds the erasure, B a complaint opened before it: without a lock on the customer,
    A finds nothing of B's to redact and B does not see A's erasure, and the description
    stays for good."""
    await fold_concurrently(pool, [ERASED], [OPENED])
    body = await pool.fetchval(
        "SELECT body FROM complaint_events WHERE complaint_id = 'k-1' AND event_id = $1",
        OPENED.id,
    )
    data = orjson.loads(body)["data"]
    assert "description" not in data
    assert data["category"] == "delivery"  # the rest of the step stays
