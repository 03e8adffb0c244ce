"""Two scoring instances fold the same customer at once (issue 12, item 5).

One customer's events can sit on several partitions (other producers partition keys with
CRC32, not murmur2) owned by two instances, so two transactions may store batches of the
same customer at the same time. Transaction A stores its batch and stays open while B stores
another batch of the same customer, until B is done or waits on A's locks; then A commits,
then B. The stored model must be what both batches give, worked out by hand, whichever
transaction goes first: a read-then-write fold lets the second overwrite the first, and an
erasure that does not see a concurrent profile event leaves personal data behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from services.scoring import rescore
from services.scoring.main import SPEC
from services.scoring.settings import ScoringSettings
from shared import db
from shared.consumer import Projection
from shared.events import RECORDED, Event, validate_event
from tests.helpers import event, store_concurrently

pytestmark = pytest.mark.integration


def at(moment: str) -> datetime:
    return datetime.fromisoformat(f"2025-03-{moment}:00+00:00")


def ev(eid: str, type_name: str, subject: str, data: dict[str, Any], when: str) -> Event:
    return validate_event(event(type_name, subject, data, time=at(when), event_id=eid), RECORDED)


def buy(eid: str, subject: str, when: str, amount: str) -> Event:
    data = {"order_id": f"o-{eid}", "amount": amount, "currency": "USD"}
    return ev(eid, "crm.purchase.completed", subject, data, when)


def refund(eid: str, subject: str, when: str, amount: str, order: str) -> Event:
    data = {"order_id": order, "amount": amount, "currency": "USD"}
    return ev(eid, "crm.purchase.refunded", subject, data, when)


def registered(eid: str, subject: str, when: str) -> Event:
    data = {"name": "Xavier Private", "phone": "+86 10 5555 0100"}
    return ev(eid, "crm.customer.registered", subject, data, when)


def erased(eid: str, subject: str, when: str) -> Event:
    return ev(eid, "crm.customer.erased", subject, {}, when)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    found = await db.create_pool(database_url, "scoring")
    await db.migrate(found, "scoring", *SPEC.migration_directories())
    yield found
    await found.close()


def projection() -> Projection:
    made = SPEC.projection(ScoringSettings(timezone="UTC")) if SPEC.projection else None
    assert made is not None
    return made


ORDERS = pytest.mark.parametrize("a_first", [True, False], ids=["A holds", "B holds"])

# x's purchases split over two batches; y only in B.
PURCHASES_A = [buy("a1", "x", "03T10:00", "10.00"), buy("a2", "x", "05T10:00", "20.00")]
PURCHASES_B = [
    buy("b1", "x", "01T09:00", "5.00"),
    refund("b2", "x", "06T09:00", "3.00", "o-a2"),
    buy("b3", "y", "02T09:00", "7.50"),
]
# x: first 03-01 (b1), last 03-05 (a2; a refund is no purchase), 3 purchases,
# 10 + 20 + 5 - 3 = 32 net; y: one purchase of 7.50.
EXPECTED_SUMMARIES = {
    ("x", at("01T09:00"), at("05T10:00"), 3, Decimal("32.00")),
    ("y", at("02T09:00"), at("02T09:00"), 1, Decimal("7.50")),
}


@ORDERS
async def test_purchases_of_one_customer_folded_at_once_add_up(
    pool: db.Pool, a_first: bool
) -> None:
    first, second = (PURCHASES_A, PURCHASES_B) if a_first else (PURCHASES_B, PURCHASES_A)
    waited = await store_concurrently(pool, projection, first, second)
    rows = await pool.fetch(
        "SELECT customer_id, first_purchase_at, last_purchase_at, purchase_count, total_spent"
        " FROM purchase_summaries"
    )
    assert {tuple(r) for r in rows} == EXPECTED_SUMMARIES
    assert not waited  # purchases are facts: folding them takes no lock


async def profile_rows(pool: db.Pool) -> set[str]:
    return {r[0] for r in await pool.fetch("SELECT event_id FROM customer_events")}


# The profile of 03-01 is erased on 03-04; a profile event after the erasure (03-05) starts a
# new relationship and stays.
PROFILE = [registered("p1", "x", "01T10:00")]
ERASURE = [erased("e1", "x", "04T10:00")]
LATER_PROFILE = [registered("p2", "x", "05T10:00")]


@ORDERS
async def test_an_erasure_and_a_profile_event_stored_at_once_leave_no_personal_data(
    pool: db.Pool, a_first: bool
) -> None:
    first, second = (PROFILE, ERASURE) if a_first else (ERASURE, PROFILE)
    waited = await store_concurrently(pool, projection, first + LATER_PROFILE, second)
    assert await profile_rows(pool) == {"p2"}
    erasures = await pool.fetch("SELECT customer_id, erased_at FROM erasures")
    assert {tuple(r) for r in erasures} == {("x", at("04T10:00"))}
    assert waited  # the erasure and the profile event of one customer take turns


async def test_profile_events_of_one_customer_stored_at_once_do_not_wait(pool: db.Pool) -> None:
    waited = await store_concurrently(pool, projection, PROFILE, LATER_PROFILE)
    assert not waited
    assert await profile_rows(pool) == {"p1", "p2"}


@ORDERS
async def test_one_customer_scored_by_two_folds_at_once_has_every_fact(
    pool: db.Pool, database_url: str, a_first: bool
) -> None:
    """After a re-score, each fold scores the customers it changed and stores their rows.
    Two instances folding x at once would each score x from their own transaction's facts:
    the second waits for the first's commit (the scoring stripes), so it sees them."""
    await pool.execute(
        "INSERT INTO purchases (customer_id, source, event_id, order_id, time, day, amount,"
        " is_refund) VALUES ('base', 'tests', 'base-1', 'base-1', $1, $2, 40, false)",
        at("01T08:00"),
        at("01T08:00").date(),
    )
    assert (
        await rescore.rescore(ScoringSettings(timezone="UTC", database_url=database_url))
        is not None
    )
    first, second = (PURCHASES_A, PURCHASES_B) if a_first else (PURCHASES_B, PURCHASES_A)
    waited = await store_concurrently(pool, projection, first, second)
    rows = await pool.fetch(
        "SELECT customer_id, first_purchase_at, last_purchase_at, orders, net_spent"
        " FROM customer_scores WHERE source = 'live'"
    )
    assert {tuple(r) for r in rows} == EXPECTED_SUMMARIES  # by hand, above
    assert waited
