"""Two reporting instances fold the same customer at once (issue 12, item 5).

One customer's events can sit on several partitions (other producers partition keys with
CRC32, not murmur2) owned by two instances, so two transactions may store batches touching
the same rows at the same time. Here transaction A stores its batch and stays open while B
stores another batch over the same rows; then both commit. Every read-model row and KPI
must equal the hand-computed fold of both batches, whichever goes first: a read-then-write
fold would let the second writer overwrite the first one's update.

The second transaction sees the first one's commit once it has waited for its first shared
row, so a race can show only in the first table where the batches meet: one scenario per
table makes each table that first one, and one scenario meets everywhere and checks KPIs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.reporting.kpi import Granularity
from services.reporting.main import SPEC
from services.reporting.metrics import Dimension
from services.reporting.settings import ReportingSettings
from shared import db
from shared.consumer import Projection
from tests.helpers import event, store_concurrently
from tests.integration.test_reporting_store import MARCH, WINDOW, kpis, pool, validated

pytestmark = pytest.mark.integration
__all__ = ["pool"]  # the fixture: a migrated reporting schema on a fresh database

D = Decimal
MARCH_1, MARCH_3 = date(2025, 3, 1), date(2025, 3, 3)
BAG_AND_SHOES = [
    {"sku": "s1", "category": "shoes", "quantity": 2, "unit_price": "30"},
    {"sku": "b1", "category": "bag", "quantity": 1, "unit_price": "40"},
]


def at(moment: str) -> datetime:
    return datetime.fromisoformat(f"2025-03-{moment}:00+00:00")


def ev(eid: str, type_name: str, subject: str, data: dict[str, Any], when: str) -> Any:
    return event(type_name, subject, data, time=at(when), event_id=eid)


def buy(eid: str, subject: str, when: str, amount: str, channel: str, order: str, **kw: Any) -> Any:
    data = {"order_id": order, "amount": amount, "currency": "USD", "channel": channel, **kw}
    return ev(eid, "crm.purchase.completed", subject, data, when)


def complaint(eid: str, what: str, when: str, **data: Any) -> Any:
    return ev(eid, f"crm.complaint.{what}", "c1", {"complaint_id": "k1", **data}, when)


# Batch A: for every keyed fact below, A holds the value that must win when it is the later
# (or earlier) one, and B the other, so the winner never depends on who commits last.
BATCH_A = [
    buy("a1", "c1", "03T10:00", "100.00", "web", "oa", items=BAG_AND_SHOES),
    buy("a2", "c1", "03T12:00", "10.00", "web", "shared"),  # B completes it earlier
    buy("a3", "c2", "03T11:00", "7.00", "web", "oc2a"),
    ev("a4", "crm.customer.updated", "c1", {"acquisition_channel": "partner"}, "02T10:00"),
    ev(
        "a5",
        "crm.interaction.logged",
        "c1",
        {"channel": "email", "direction": "inbound", "sentiment": "negative"},
        "03T13:00",
    ),
    ev("a6", "crm.survey.nps", "c1", {"score": 9, "channel": "email"}, "03T14:00"),
    ev(
        "a7",
        "crm.customer.tier_changed",
        "c1",
        {"new": "gold", "as_of": "2025-03-03T05:00:00+00:00"},
        "03T05:00",
    ),
    complaint("a8", "opened", "03T11:00", channel="hotline", category="delivery"),
    complaint("a9", "resolved", "04T10:00"),
    complaint("a10", "reopened", "04T12:00"),
    complaint(
        "a11",
        "sla_clock_stopped",
        "03T12:00",
        metric="first_response",
        cycle=0,
        target_seconds=3600,
        outcome="met",
        elapsed_seconds=3000,
    ),
    complaint("a12", "sla_breached", "04T09:00", metric="resolution", cycle=0, target_seconds=3600),
]
BATCH_B = [
    buy("b1", "c1", "03T09:00", "10.00", "web", "shared"),
    buy("b2", "c1", "03T16:00", "20.00", "web", "ob2"),
    buy("b3", "c1", "03T15:00", "50.00", "app", "ob3"),
    buy("b4", "c1", "01T09:00", "5.00", "web", "ob4"),
    buy("b5", "c2", "03T17:00", "3.00", "web", "oc2b"),
    ev(
        "b6",
        "crm.customer.registered",
        "c1",
        {"name": "C1", "acquisition_channel": "web"},
        "01T10:00",
    ),
    ev(
        "b7",
        "crm.interaction.logged",
        "c1",
        {"channel": "email", "direction": "inbound", "sentiment": "positive"},
        "03T18:00",
    ),
    ev("b8", "crm.survey.nps", "c1", {"score": 9, "channel": "email"}, "03T19:00"),
    ev(
        "b9",
        "crm.customer.tier_changed",
        "c1",
        {"new": "potential", "as_of": "2025-03-03T01:00:00+00:00"},
        "03T01:00",
    ),
    complaint("b10", "opened", "03T08:00", channel="email", category="price_billing"),
    complaint("b11", "resolved", "05T10:00"),
    complaint(
        "b12",
        "sla_clock_stopped",
        "03T13:00",
        metric="first_response",
        cycle=0,
        target_seconds=3600,
        outcome="breached",
        elapsed_seconds=7200,
    ),
    complaint("b13", "sla_breached", "04T08:00", metric="resolution", cycle=0, target_seconds=3600),
]

# The rows both batches give, worked out by hand.
EXPECTED_ROWS: dict[str, set[tuple[Any, ...]]] = {
    # c1 web on 03-03: a1 100 + a2 10 + b1 10 + b2 20 (every completion is an order).
    "SELECT day, customer_id, channel, orders, revenue FROM sales": {
        (MARCH_3, "c1", "web", 4, D("140.00")),
        (MARCH_3, "c1", "app", 1, D("50.00")),
        (MARCH_1, "c1", "web", 1, D("5.00")),
        (MARCH_3, "c2", "web", 2, D("10.00")),
    },
    # a1: line totals 60 shoes, 40 bag; the others have no items.
    "SELECT day, customer_id, category, orders, revenue FROM category_sales": {
        (MARCH_3, "c1", "shoes", 1, D("60")),
        (MARCH_3, "c1", "bag", 1, D("40")),
        (MARCH_3, "c1", "unknown", 4, D("90.00")),
        (MARCH_1, "c1", "unknown", 1, D("5.00")),
        (MARCH_3, "c2", "unknown", 2, D("10.00")),
    },
    "SELECT day, customer_id FROM daily_buyers": {
        (MARCH_1, "c1"),
        (MARCH_3, "c1"),
        (MARCH_3, "c2"),
    },
    # The first completion of order "shared" is b1 (09:00), not a2 (12:00).
    "SELECT customer_id, order_id, event_id FROM orders WHERE order_id = 'shared'": {
        ("c1", "shared", "b1")
    },
    # First purchase: the least day; acquisition channel: the latest update (a4, 03-02).
    "SELECT customer_id, first_purchase_day, acquisition_channel FROM customers": {
        ("c1", MARCH_1, "partner"),
        ("c2", MARCH_3, None),
    },
    "SELECT day, customer_id, channel, interactions, negative FROM interactions": {
        (MARCH_3, "c1", "email", 2, 1)
    },
    "SELECT day, customer_id, kind, channel, score, responses FROM survey_answers": {
        (MARCH_3, "c1", "nps", "email", 9, 2)
    },
    # The latest class change of 03-03 is a7 (05:00).
    "SELECT customer_id, kind, day, value FROM customer_classes": {("c1", "tier", MARCH_3, "gold")},
    # Earliest opening b10; latest resolution b11 (03-05) and reopening a10 (03-04).
    "SELECT complaint_id, customer_id, opened_by, channel, category, last_resolved_at,"
    " last_reopened_at FROM complaints": {
        ("k1", "c1", "b10", "email", "price_billing", at("05T10:00"), at("04T12:00"))
    },
    # The latest stop of the clock (b12), the earliest breach of the cycle (b13).
    "SELECT complaint_id, metric, event_id, outcome, elapsed_seconds FROM sla_clocks": {
        ("k1", "first_response", "b12", "breached", 7200.0)
    },
    "SELECT complaint_id, metric, event_id, breached_at FROM sla_breaches": {
        ("k1", "resolution", "b13", at("04T08:00"))
    },
}

# March's KPIs from those rows: revenue 140 + 50 + 5 + 10; c1 has 6 orders, c2 has 2 (both
# repeat, both new); NPS 2 x 9 = 100 % promoters; k1 opened in March and resolved now (its
# last resolution follows its reopening); its first-response clock stopped breached.
EXPECTED_KPIS = {
    "revenue": "205.00",
    "orders": 8,
    "buyers": 2,
    "new_buyers": 2,
    "repeat_purchase_rate": 1.0,
    "nps": 100.0,
    "nps_responses": 2,
    "interactions": 2,
    "complaints_opened": 1,
    "resolution_rate": 1.0,
    "sla_compliance": 0.0,
    "sla_breaches": 1,
}
EXPECTED_BY_CHANNEL = {"web": ("155.00", 7), "app": ("50.00", 1)}


def tier_summary(eid: str, as_of: str, customers: int) -> Any:
    data = {
        "as_of": f"2025-03-{as_of}:00+00:00",
        "tier": "gold",
        "customers": customers,
        "customer_equity": "100",
    }
    return ev(eid, "crm.scoring.tier_summary", "tier:gold", data, as_of)


def sla(eid: str, what: str, when: str, metric: str, **data: Any) -> Any:
    return complaint(eid, what, when, metric=metric, cycle=0, target_seconds=3600, **data)


@dataclass(frozen=True)
class Meeting:
    """Two batches that meet first on the rows of one table (the tables written before it
    get distinct keys), after `seed` is committed, and what the table holds once both are."""

    a: list[dict[str, Any]]
    b: list[dict[str, Any]]
    query: str
    rows: set[tuple[Any, ...]]
    seed: list[dict[str, Any]] = field(default_factory=list)


MEETINGS = {
    "sales": Meeting(
        [buy("a", "c1", "03T10:00", "10.00", "web", "o1")],
        [buy("b", "c1", "03T11:00", "20.00", "web", "o2")],
        "SELECT day, customer_id, channel, orders, revenue FROM sales",
        {(MARCH_3, "c1", "web", 2, D("30.00"))},
    ),
    "category_sales": Meeting(  # another channel: only the category's row is shared
        [buy("a", "c1", "03T10:00", "10.00", "web", "o1", items=BAG_AND_SHOES[:1])],
        [buy("b", "c1", "03T11:00", "20.00", "app", "o2", items=BAG_AND_SHOES[:1])],
        "SELECT day, customer_id, category, orders, revenue FROM category_sales",
        {(MARCH_3, "c1", "shoes", 2, D("30.00"))},
    ),
    "orders": Meeting(  # the same order completed twice, on two days: the first one counts
        [buy("a", "c1", "03T10:00", "10.00", "web", "o1")],
        [buy("b", "c1", "04T10:00", "10.00", "app", "o1")],
        "SELECT customer_id, order_id, event_id, channel FROM orders",
        {("c1", "o1", "a", "web")},
    ),
    "first purchase": Meeting(
        [buy("a", "c1", "05T10:00", "10.00", "web", "o1")],
        [buy("b", "c1", "02T10:00", "10.00", "web", "o2")],
        "SELECT customer_id, first_purchase_day FROM customers",
        {("c1", date(2025, 3, 2))},
    ),
    "acquisition channel": Meeting(
        [ev("a", "crm.customer.updated", "c1", {"acquisition_channel": "partner"}, "02T10:00")],
        [
            ev(
                "b",
                "crm.customer.registered",
                "c1",
                {"name": "C", "acquisition_channel": "web"},
                "01T10:00",
            )
        ],
        "SELECT customer_id, acquisition_channel FROM customers",
        {("c1", "partner")},
    ),
    "churn reason": Meeting(
        [ev("a", "crm.customer.updated", "c1", {"reason": "price"}, "05T10:00")],
        [ev("b", "crm.customer.updated", "c1", {"reason": "competitor"}, "04T10:00")],
        "SELECT customer_id, churn_reason FROM customers",
        {("c1", "price")},
    ),
    "customer_classes": Meeting(
        [BATCH_A[6]],
        [BATCH_B[8]],
        "SELECT customer_id, kind, day, value FROM customer_classes",
        {("c1", "tier", MARCH_3, "gold")},
    ),
    "tier_summaries": Meeting(
        [tier_summary("a", "03T10:00", 5)],
        [tier_summary("b", "03T09:00", 4)],
        "SELECT tier, day, customers FROM tier_summaries",
        {("gold", MARCH_3, 5)},
    ),
    "interactions": Meeting(
        [BATCH_A[4]],
        [BATCH_B[6]],
        "SELECT day, customer_id, channel, interactions, negative FROM interactions",
        {(MARCH_3, "c1", "email", 2, 1)},
    ),
    "survey_answers": Meeting(
        [BATCH_A[5]],
        [BATCH_B[7]],
        "SELECT day, customer_id, kind, channel, score, responses FROM survey_answers",
        {(MARCH_3, "c1", "nps", "email", 9, 2)},
    ),
    "complaint opening": Meeting(
        [complaint("a", "opened", "03T11:00", channel="hotline", category="delivery")],
        [complaint("b", "opened", "03T08:00", channel="email", category="price_billing")],
        "SELECT complaint_id, opened_by, channel, category FROM complaints",
        {("k1", "b", "email", "price_billing")},
    ),
    "complaint marks": Meeting(
        [complaint("a1", "resolved", "04T10:00"), complaint("a2", "reopened", "04T12:00")],
        [complaint("b1", "resolved", "05T10:00"), complaint("b2", "reopened", "04T11:00")],
        "SELECT complaint_id, last_resolved_at, last_reopened_at FROM complaints",
        {("k1", at("05T10:00"), at("04T12:00"))},
        seed=[complaint("s", "opened", "01T10:00", channel="email", category="delivery")],
    ),
    "sla_clocks": Meeting(
        [
            sla(
                "a",
                "sla_clock_stopped",
                "03T12:00",
                "first_response",
                outcome="met",
                elapsed_seconds=3000,
            )
        ],
        [
            sla(
                "b",
                "sla_clock_stopped",
                "03T13:00",
                "first_response",
                outcome="breached",
                elapsed_seconds=7200,
            )
        ],
        "SELECT complaint_id, metric, event_id, outcome FROM sla_clocks",
        {("k1", "first_response", "b", "breached")},
    ),
    "sla_breaches": Meeting(
        [sla("a", "sla_breached", "04T09:00", "resolution")],
        [sla("b", "sla_breached", "04T08:00", "resolution")],
        "SELECT complaint_id, metric, event_id FROM sla_breaches",
        {("k1", "resolution", "b")},
    ),
}


def projection() -> Projection:
    made = SPEC.projection(ReportingSettings(timezone="UTC")) if SPEC.projection else None
    assert made is not None
    return made


ORDERS = pytest.mark.parametrize("a_first", [True, False], ids=["A holds", "B holds"])


@ORDERS
async def test_two_instances_fold_the_same_customer_at_once(pool: db.Pool, a_first: bool) -> None:
    a, b = validated(BATCH_A), validated(BATCH_B)
    first, second = (a, b) if a_first else (b, a)
    # The batches contend for the same rows: the second cannot finish while the first is open.
    assert await store_concurrently(pool, projection, first, second)

    for query, rows in EXPECTED_ROWS.items():
        assert {tuple(r) for r in await pool.fetch(query)} == rows, query
    found = (await kpis(pool, list(EXPECTED_KPIS), [MARCH]))[(MARCH, "")]
    assert {name: found[name] for name in EXPECTED_KPIS} == EXPECTED_KPIS
    by_channel = await kpis(pool, ["revenue", "orders"], [MARCH], Dimension.CHANNEL)
    assert {ch: (r["revenue"], r["orders"]) for (_, ch), r in by_channel.items()} == (
        EXPECTED_BY_CHANNEL
    )


@ORDERS
@pytest.mark.parametrize("table", MEETINGS)
async def test_two_instances_meet_on_one_table(pool: db.Pool, table: str, a_first: bool) -> None:
    meeting = MEETINGS[table]
    async with pool.acquire() as conn, conn.transaction():
        await projection().store(conn, validated(meeting.seed))
    a, b = validated(meeting.a), validated(meeting.b)
    assert await store_concurrently(pool, projection, *((a, b) if a_first else (b, a)))
    assert {tuple(r) for r in await pool.fetch(meeting.query)} == meeting.rows


# The customer base: A classes the customer (a tier change), B folds their purchases. The
# batches share no row of the other tables, so they meet first on the customer's row of
# base_members: the second must recount with the first's tier and days, not its own alone.
BASE_A = [
    ev(
        "ba1",
        "crm.customer.tier_changed",
        "z1",
        {"new": "gold", "as_of": "2025-03-02T08:00:00+00:00"},
        "02T08:00",
    ),
]
BASE_B = [
    buy("bb1", "z1", "01T09:00", "10.00", "web", "zo1"),
    buy("bb2", "z1", "20T09:00", "10.00", "web", "zo2"),
]


@ORDERS
async def test_two_instances_count_the_same_customer_in_the_base_at_once(
    pool: db.Pool, a_first: bool
) -> None:
    from tests.integration.test_reporting_base import expected_rows, read

    a, b = validated(BASE_A), validated(BASE_B)
    assert await store_concurrently(pool, projection, *((a, b) if a_first else (b, a)))
    for granularity, periods in (
        (Granularity.DAY, [(MARCH_1 + timedelta(days=k),) * 2 for k in range(31)]),
        (Granularity.MONTH, [(MARCH_1, date(2025, 3, 31)), (date(2025, 4, 1), date(2025, 4, 30))]),
    ):
        for by in (None, Dimension.TIER):
            found = await read(pool, periods, granularity, by, WINDOW)
            assert found == expected_rows([*a, *b], periods, by, WINDOW), (granularity, by)
    assert {
        r["slice"] for r in await pool.fetch("SELECT slice FROM base_days WHERE dim = 'tier'")
    } == {"gold"}
