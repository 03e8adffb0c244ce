"""Reporting's read models and KPI queries on a real PostgreSQL, against a month worked out
by hand; arrival order, batching and late events change nothing but what they should."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.reporting import domain, store
from services.reporting.kpi import Granularity
from services.reporting.main import SPEC
from services.reporting.metrics import Dimension, Period, Source, cohort_rows, table
from shared import db
from shared.events import Event, ValidationContext, validate_event
from tests.helpers import event

pytestmark = pytest.mark.integration

D = Decimal
UTC_ZONE = UTC
WINDOW = 60  # inactivity window of these tests, days
TODAY = date(2025, 4, 15)
MARCH, FEBRUARY = date(2025, 3, 1), date(2025, 2, 1)


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02}:00:00+00:00")


def ev(type_name: str, subject: str, data: dict[str, Any], when: datetime) -> dict[str, Any]:
    return event(type_name, subject, data, time=when)


def buy(subject: str, day: str, amount: str, channel: str, order: str, **extra: Any) -> Any:
    data = {"order_id": order, "amount": amount, "currency": "USD", "channel": channel, **extra}
    return ev("crm.purchase.completed", subject, data, at(day))


def clock(
    complaint: str, customer: str, day: str, metric: str, outcome: str, elapsed: float, **kw: Any
) -> dict[str, Any]:
    data = {
        "complaint_id": complaint,
        "metric": metric,
        "cycle": kw.pop("cycle", 0),
        "target_seconds": 3600,
        "outcome": outcome,
        "elapsed_seconds": elapsed,
        **kw,
    }
    return ev("crm.complaint.sla_clock_stopped", customer, data, at(day, kw.get("hour", 12)))


def march() -> list[dict[str, Any]]:
    """The month of the hand-worked cases (see each test for the arithmetic)."""
    shoes_and_bag = [
        {"sku": "s1", "category": "shoes", "quantity": 2, "unit_price": "30"},
        {"sku": "b1", "category": "bag", "quantity": 1, "unit_price": "40"},
    ]
    complaint = "crm.complaint"
    return [
        ev(
            "crm.customer.registered",
            "alice",
            {"name": "Alice", "acquisition_channel": "web"},
            at("2025-03-01"),
        ),
        ev("crm.customer.registered", "dave", {"name": "Dave"}, at("2024-12-20")),
        buy("alice", "2025-03-03", "100.00", "web", "a1", items=shoes_and_bag),
        buy("alice", "2025-03-10", "50.00", "app", "a2"),
        ev(
            "crm.purchase.refunded",
            "alice",
            {"order_id": "a1", "amount": "20.00", "currency": "USD", "reason": "price"},
            at("2025-03-12"),
        ),
        buy("bob", "2025-02-20", "30.00", "web", "b1"),
        buy("bob", "2025-03-05", "70.00", "web", "b2"),
        buy("carol", "2024-12-01", "10.00", "store", "c1"),
        buy("dave", "2025-01-15", "40.00", "web", "d1"),
        # Tiers: alice gold from 03-08 (so gold before too: her first class); bob potential
        # from 03-01, gold from 03-06 (a later change the same day as another wins).
        ev(
            "crm.customer.tier_changed",
            "alice",
            {"new": "gold", "as_of": "2025-03-08T01:00:00+00:00"},
            at("2025-03-08", 1),
        ),
        ev(
            "crm.customer.tier_changed",
            "bob",
            {"new": "developing", "as_of": "2025-03-01T01:00:00+00:00"},
            at("2025-03-01", 1),
        ),
        ev(
            "crm.customer.tier_changed",
            "bob",
            {"old": "developing", "new": "potential", "as_of": "2025-03-01T05:00:00+00:00"},
            at("2025-03-01", 5),
        ),
        ev(
            "crm.customer.tier_changed",
            "bob",
            {"old": "potential", "new": "gold", "as_of": "2025-03-06T01:00:00+00:00"},
            at("2025-03-06", 1),
        ),
        # Surveys: NPS 10, 9, 3, 7 -> (2 - 1) / 4 = 25; CSAT 5, 4, 2 -> 2/3 = 66.67 %.
        *(
            ev("crm.survey.nps", who, {"score": score, "channel": "email"}, at("2025-03-15"))
            for who, score in (("alice", 10), ("bob", 9), ("dave", 3), ("bob", 7))
        ),
        *(
            ev("crm.survey.csat", who, {"score": score}, at("2025-03-16"))
            for who, score in (("alice", 5), ("bob", 4), ("dave", 2))
        ),
        # Complaints: c1 (dave) resolved, reopened, resolved again; c2 (bob) resolved then
        # reopened; c3 (alice) opened in February, resolved in March.
        ev(
            f"{complaint}.opened",
            "dave",
            {"complaint_id": "c1", "channel": "hotline", "category": "delivery"},
            at("2025-03-02"),
        ),
        ev(f"{complaint}.resolved", "dave", {"complaint_id": "c1"}, at("2025-03-04")),
        ev(f"{complaint}.reopened", "dave", {"complaint_id": "c1"}, at("2025-03-05")),
        ev(f"{complaint}.resolved", "dave", {"complaint_id": "c1"}, at("2025-03-07")),
        ev(f"{complaint}.feedback", "dave", {"complaint_id": "c1", "score": 4}, at("2025-03-08")),
        ev(
            f"{complaint}.opened",
            "bob",
            {"complaint_id": "c2", "channel": "email", "category": "price_billing"},
            at("2025-03-20"),
        ),
        ev(f"{complaint}.resolved", "bob", {"complaint_id": "c2"}, at("2025-03-21")),
        ev(f"{complaint}.reopened", "bob", {"complaint_id": "c2"}, at("2025-03-22")),
        ev(f"{complaint}.feedback", "bob", {"complaint_id": "c2", "score": 2}, at("2025-03-22")),
        ev(
            f"{complaint}.opened",
            "alice",
            {"complaint_id": "c3", "channel": "chat", "category": "product_quality"},
            at("2025-02-25"),
        ),
        ev(f"{complaint}.resolved", "alice", {"complaint_id": "c3"}, at("2025-03-01")),
        # SLA clocks (business seconds): the latest stop of a clock counts.
        clock("c1", "dave", "2025-03-02", "first_response", "met", 3600, category="delivery"),
        clock("c1", "dave", "2025-03-04", "resolution", "breached", 90000, tier="forgotten"),
        clock("c1", "dave", "2025-03-07", "resolution", "breached", 120000, tier="forgotten"),
        clock("c2", "bob", "2025-03-20", "first_response", "met", 7200),
        clock("c2", "bob", "2025-03-21", "resolution", "breached", 50000),
        clock("c3", "alice", "2025-02-26", "first_response", "breached", 100000),
        *(
            ev(
                "crm.complaint.sla_breached",
                who,
                {"complaint_id": cid, "metric": "resolution", "cycle": 0, "target_seconds": 1},
                at(day, hour),
            )
            for who, cid, day, hour in (
                ("dave", "c1", "2025-03-03", 9),
                ("dave", "c1", "2025-03-03", 11),  # the same breach again: counted once
                ("bob", "c2", "2025-03-21", 9),
            )
        ),
        ev(
            "crm.crisis.detected",
            "crisis:category:delivery",
            {
                "dimension": "category",
                "value": "delivery",
                "window_start": "2025-03-02T00:00:00+00:00",
                "window_end": "2025-03-02T06:00:00+00:00",
                "count": 14,
                "baseline": 2.5,
                "score": 13.2,
                "decision_interval": 12,
            },
            at("2025-03-02", 6),
        ),
        # Marketing: 310 over March (10 a day) on web; 45 on 02-25 on social.
        ev(
            "crm.marketing.spend",
            "marketing",
            {
                "amount": "310.00",
                "currency": "USD",
                "channel": "web",
                "period_start": "2025-03-01",
                "period_end": "2025-03-31",
            },
            at("2025-03-01"),
        ),
        ev(
            "crm.marketing.spend",
            "marketing",
            {"amount": "45.00", "currency": "USD", "channel": "social"},
            at("2025-02-25"),
        ),
        # Interactions: 3 in March by 2 customers: alice's email answered by a bot
        # (asynchronous), her call by a person (synchronous), bob's email by a person (its
        # mode not recorded).
        *(
            ev(
                "crm.interaction.logged",
                who,
                {"channel": channel, "direction": "inbound", "sentiment": sentiment} | kind,
                at("2025-03-18"),
            )
            for who, channel, sentiment, kind in (
                ("alice", "email", "positive", {"handled_by": "bot", "synchronous": False}),
                ("alice", "phone", "neutral", {"synchronous": True}),
                ("bob", "email", "negative", {"handled_by": "human"}),
            )
        ),
        # Two re-scores in March: the last one (03-31) has no potential tier any more.
        *(
            ev(
                "crm.scoring.tier_summary",
                f"tier:{tier}",
                {
                    "as_of": as_of,
                    "tier": tier,
                    "customers": n,
                    "customer_equity": equity,
                    "average_clv": average,
                },
                datetime.fromisoformat(as_of),
            )
            for as_of, tier, n, equity, average in (
                ("2025-03-15T10:00:00+00:00", "gold", 2, "500", "250"),
                ("2025-03-15T10:00:00+00:00", "potential", 1, "100", "100"),
                ("2025-03-31T09:00:00+00:00", "gold", 2, "600", "300"),
            )
        ),
    ]


def validated(raw: list[dict[str, Any]]) -> list[Event]:
    return [validate_event(r, ValidationContext()) for r in raw]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    found = await db.create_pool(database_url, "reporting")
    await db.migrate(found, "reporting", SPEC.migrations, db.CONSUMER_MIGRATIONS)
    assert await store.converge_base(found, WINDOW)  # the fold's counters count with WINDOW
    yield found
    await found.close()


async def feed(pool: db.Pool, events: list[Event], batch_size: int = 1000) -> None:
    for start in range(0, len(events), batch_size):
        async with pool.acquire() as conn, conn.transaction():
            await store.write(conn, domain.fold(events[start : start + batch_size], UTC_ZONE))


async def kpis(
    pool: db.Pool,
    names: list[str],
    starts: list[date],
    by: Dimension | None = None,
    granularity: Granularity = Granularity.MONTH,
    repeat_window_days: int = 7,
) -> dict[tuple[date, str], dict[str, Any]]:
    from services.reporting import kpi
    from services.reporting.metrics import METRICS, sources_of

    periods = [
        Period(
            s,
            kpi.next_period_start(s, granularity) - timedelta(days=1),
            kpi.period_start(s - timedelta(days=1), granularity),
        )
        for s in starts
    ]
    wanted = set(starts) | {p.previous for p in periods if p.previous}
    cells = await store.read_cells(
        pool,
        store.Periods.of(wanted, granularity),
        by,
        sources_of(names),
        today=TODAY,
        churn_after_days=WINDOW,
        churn_reasons=any(n.startswith("churn_reason_") for n in names),
        repeat_window_days=repeat_window_days,
    )
    assert all(n in METRICS for n in names)
    rows = table(cells, periods, names, by)
    return {(r["period"], r[by.value] if by else ""): r for r in rows}


async def test_sales_of_the_month(pool: db.Pool) -> None:
    await feed(pool, validated(march()))
    names = [
        "revenue",
        "orders",
        "average_order_value",
        "buyers",
        "new_buyers",
        "returning_buyers",
        "repeat_purchase_rate",
        "revenue_growth",
    ]
    found = await kpis(pool, names, [FEBRUARY, MARCH])
    # March: alice 100 + 50 - refund 20, bob 70 = 200 in 3 orders; alice is new and repeats.
    assert {k: found[(MARCH, "")][k] for k in names} == {
        "revenue": "200.00",
        "orders": 3,
        "average_order_value": "66.67",
        "buyers": 2,
        "new_buyers": 1,
        "returning_buyers": 1,
        "repeat_purchase_rate": 0.5,
        "revenue_growth": round((200 - 30) / 30, 6),
    }
    assert found[(FEBRUARY, "")]["revenue"] == "30.00"


async def test_sales_by_channel_category_and_tier(pool: db.Pool) -> None:
    await feed(pool, validated(march()))
    names = ["revenue", "orders", "buyers", "new_buyers", "repeat_purchase_rate"]
    by_channel = await kpis(pool, names, [MARCH], Dimension.CHANNEL)
    # The refund of order a1 (web) counts on web.
    assert by_channel[(MARCH, "web")] | {} == {
        "period": MARCH,
        "period_end": date(2025, 3, 31),
        "channel": "web",
        "revenue": "150.00",
        "orders": 2,
        "buyers": 2,
        "new_buyers": 1,
        "repeat_purchase_rate": 0.0,
    }
    assert by_channel[(MARCH, "app")]["revenue"] == "50.00"
    by_category = await kpis(pool, ["revenue", "orders", "buyers"], [MARCH], Dimension.CATEGORY)
    # a1 = 2 x 30 shoes + 40 bag: 60 % / 40 %, its refund of 20 split the same way.
    assert [
        (c, by_category[(MARCH, c)]["revenue"], by_category[(MARCH, c)]["orders"])
        for c in ("bag", "shoes", "unknown")
    ] == [("bag", "32.00", 1), ("shoes", "48.00", 1), ("unknown", "120.00", 2)]
    by_tier = await kpis(pool, names, [MARCH], Dimension.TIER)
    # alice's 03-03 order predates her first class: it counts under that first class (gold);
    # bob's 03-05 order falls in his potential days (two changes on 03-01: the later wins).
    assert {t: (r["revenue"], r["orders"], r["buyers"]) for (_, t), r in by_tier.items()} == {
        "gold": ("130.00", 2, 1),
        "potential": ("70.00", 1, 1),
    }


async def test_customer_base_churn_retention_and_reasons(pool: db.Pool) -> None:
    await feed(pool, validated(march()))
    names = [
        "customers_at_start",
        "customers_at_end",
        "new_buyers",
        "active_customers",
        "lost_customers",
        "churn_rate",
        "retention_rate",
        "churn_reason_service_quality",
        "churn_reason_unknown",
    ]
    found = (await kpis(pool, names, [MARCH]))[(MARCH, "")]
    # Window 60 days. Active on 02-28: bob (02-20), dave (01-15) -> 2. Active on 03-31: alice,
    # bob -> 2. New: alice. Active in March: alice, bob, dave. Dave's inactivity reaches 60
    # days on 03-16: lost; his last complaint (delivery) gives the reason.
    assert {k: found[k] for k in names} == {
        "customers_at_start": 2,
        "customers_at_end": 2,
        "new_buyers": 1,
        "active_customers": 3,
        "lost_customers": 1,
        "churn_rate": 0.5,
        "retention_rate": 0.5,
        "churn_reason_service_quality": 1,
        "churn_reason_unknown": 0,
    }
    by_tier = await kpis(pool, ["customers_at_start", "lost_customers"], [MARCH], Dimension.TIER)
    assert {t: (r["customers_at_start"], r["lost_customers"]) for (_, t), r in by_tier.items()} == {
        "gold": (0, 0),  # alice is new: at the end, not the start
        "potential": (1, 0),
        "unscored": (1, 1),
    }


async def test_cac_spreads_spend_over_its_period(pool: db.Pool) -> None:
    await feed(pool, validated(march()))
    found = await kpis(pool, ["marketing_spend", "cac"], [FEBRUARY, MARCH])
    assert (found[(MARCH, "")]["marketing_spend"], found[(MARCH, "")]["cac"]) == (
        "310.00",
        "310.00",
    )
    assert found[(FEBRUARY, "")]["marketing_spend"] == "45.00"
    assert found[(FEBRUARY, "")]["cac"] == "45.00"  # bob's first purchase: 02-20
    week = await kpis(pool, ["marketing_spend"], [date(2025, 3, 3)], granularity=Granularity.WEEK)
    assert week[(date(2025, 3, 3), "")]["marketing_spend"] == "70.00"
    by_channel = await kpis(pool, ["cac"], [MARCH], Dimension.CHANNEL)
    assert by_channel[(MARCH, "web")]["cac"] == "310.00"  # alice came through the web


async def test_satisfaction_service_and_relationship(pool: db.Pool) -> None:
    await feed(pool, validated(march()))
    names = [
        "nps",
        "nps_responses",
        "csat",
        "complaints_opened",
        "complaints_resolved",
        "resolution_rate",
        "complaint_feedback_score",
        "sla_compliance",
        "sla_compliance_first_response",
        "sla_compliance_resolution",
        "sla_breaches",
        "first_response_time_median",
        "first_response_time_p90",
        "resolution_time_median",
        "resolution_time_p90",
        "crisis_alerts",
        "interactions",
        "interacting_customers",
        "interactions_per_customer",
    ]
    found = (await kpis(pool, names, [MARCH]))[(MARCH, "")]
    assert {k: found[k] for k in names} == {
        "nps": 25.0,
        "nps_responses": 4,
        "csat": round(200 / 3, 4),
        "complaints_opened": 2,  # c1, c2 (c3 opened in February)
        "complaints_resolved": 3,  # c1 (twice), c2, c3
        "resolution_rate": 0.5,  # c1 resolved now, c2 reopened
        "complaint_feedback_score": 3.0,
        "sla_compliance": 0.5,  # first responses met 2, resolutions breached 2
        "sla_compliance_first_response": 1.0,
        "sla_compliance_resolution": 0.0,
        "sla_breaches": 2,
        "first_response_time_median": 5400.0,
        "first_response_time_p90": 6840.0,  # 3600 + 0.9 * 3600
        "resolution_time_median": 85000.0,  # c1's latest stop (120000) and c2 (50000)
        "resolution_time_p90": 113000.0,
        "crisis_alerts": 1,
        "interactions": 3,
        "interacting_customers": 2,
        "interactions_per_customer": 1.5,  # 3 interactions / the 2 customers who made them
    }
    by_category = await kpis(
        pool, ["complaints_opened", "crisis_alerts"], [MARCH], Dimension.CATEGORY
    )
    assert by_category[(MARCH, "delivery")]["crisis_alerts"] == 1
    assert by_category[(MARCH, "price_billing")]["complaints_opened"] == 1
    by_tier = await kpis(pool, ["sla_compliance_resolution"], [MARCH], Dimension.TIER)
    # c1's clocks carry the tier the SLA used (forgotten); bob's c2 is gold by 03-21.
    assert {t: r["sla_compliance_resolution"] for (_, t), r in by_tier.items()} == {
        "forgotten": 0.0,
        "gold": 0.0,
        "unscored": None,
    }


async def test_value_is_the_periods_last_rescore(pool: db.Pool) -> None:
    await feed(pool, validated(march()))
    names = ["customer_equity", "average_clv", "scored_customers"]
    found = await kpis(pool, names, [FEBRUARY, MARCH])
    assert [found[(MARCH, "")][n] for n in names] == ["600.00", "300.00", 2]
    assert [found[(FEBRUARY, "")][n] for n in names] == [None, None, None]
    mid = await kpis(pool, names, [date(2025, 3, 10)], Dimension.TIER, Granularity.WEEK)
    assert {t: r["customer_equity"] for (_, t), r in mid.items()} == {
        "gold": "500.00",
        "potential": "100.00",
    }


async def test_arrival_order_and_batching_give_the_same_tables(
    pool: db.Pool, database_url: str
) -> None:
    events = validated(march())
    await feed(pool, events)
    expected = await dump_schema(pool, "reporting")
    rng = random.Random(5)
    for attempt in range(3):
        other = await db.create_pool(database_url, f"reporting_{attempt}")
        try:
            await db.migrate(other, f"reporting_{attempt}", SPEC.migrations, db.CONSUMER_MIGRATIONS)
            assert await store.converge_base(other, WINDOW)
            shuffled = rng.sample(events, len(events))
            await feed(other, shuffled, batch_size=rng.choice([1, 3, 7]))
            assert await dump_schema(other, f"reporting_{attempt}") == expected
        finally:
            await other.close()


async def dump_schema(pool: db.Pool, schema: str) -> dict[str, list[str]]:
    tables = [
        r["table_name"]
        for r in await pool.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1"
            " AND table_type = 'BASE TABLE' AND table_name NOT IN"
            " ('schema_migrations', 'consumer_offsets', 'applied_events')",
            schema,
        )
    ]
    return {
        t: sorted(
            r["row"]
            for r in await pool.fetch(f'SELECT row_to_json(t)::text AS row FROM "{schema}".{t} t')
        )
        for t in sorted(tables)
    }


async def test_a_late_event_corrects_its_own_past_bucket(pool: db.Pool) -> None:
    await feed(pool, validated(march()))
    names = ["revenue", "orders", "lost_customers", "churn_rate"]
    before = (await kpis(pool, names, [MARCH]))[(MARCH, "")]
    assert (before["revenue"], before["lost_customers"]) == ("200.00", 1)
    # Dave's purchase of 03-14, arriving weeks later: within 60 days of his 01-15 purchase.
    await feed(pool, validated([buy("dave", "2025-03-14", "25.00", "web", "d2")]))
    after = (await kpis(pool, names, [MARCH]))[(MARCH, "")]
    assert {k: after[k] for k in names} == {
        "revenue": "225.00",
        "orders": 4,
        "lost_customers": 0,
        "churn_rate": 0.0,
    }
    april = (await kpis(pool, ["revenue"], [date(2025, 4, 1)]))[(date(2025, 4, 1), "")]
    assert april["revenue"] == "0.00"  # nothing leaked into another bucket


def test_sources_cover_every_metric() -> None:
    from services.reporting.metrics import METRICS, SOURCE_DIMENSIONS

    assert set(SOURCE_DIMENSIONS) == set(Source)
    for metric in METRICS.values():
        assert metric.sources, metric.name


async def test_a_lapsed_customer_who_buys_again_is_won_back(pool: db.Pool) -> None:
    await feed(pool, validated([*march(), buy("carol", "2025-03-25", "15.00", "store", "c2")]))
    names = ["customers_at_end", "new_buyers", "won_back_customers", "retention_rate"]
    found = (await kpis(pool, names, [MARCH]))[(MARCH, "")]
    # carol (last purchase 2024-12-01, lost on 01-30) is back: at the end, acquired again, so
    # retention stays (3 - 1 new - 1 won back) / 2 at the start.
    assert {k: found[k] for k in names} == {
        "customers_at_end": 3,
        "new_buyers": 1,
        "won_back_customers": 1,
        "retention_rate": 0.5,
    }


def sla_event(
    kind: str, complaint: str, when: datetime, metric: str = "resolution", **data: Any
) -> dict[str, Any]:
    body = {"complaint_id": complaint, "metric": metric, "cycle": 0, "target_seconds": 3600}
    return ev(f"crm.complaint.{kind}", "erin", body | data, when)


def stop(complaint: str, day: str, outcome: str, metric: str = "resolution") -> dict[str, Any]:
    return sla_event(
        "sla_clock_stopped", complaint, at(day), metric, outcome=outcome, elapsed_seconds=60
    )


def breach(complaint: str, day: str, metric: str = "resolution", **data: Any) -> dict[str, Any]:
    return sla_event("sla_breached", complaint, at(day), metric, **data)


APRIL = date(2025, 4, 1)


def breaches_of_two_months() -> list[dict[str, Any]]:
    return [
        stop("m1", "2025-03-03", "met", "first_response"),
        stop("m2", "2025-03-05", "met"),
        stop("m3", "2025-03-07", "met"),
        breach("b1", "2025-03-10"),  # breached, then stopped late: one breach
        stop("b1", "2025-03-12", "breached"),
        breach("b2", "2025-03-20", tier="gold"),  # breached and still open
        breach("b3", "2025-03-28"),  # breached in March, stopped in April
        stop("b3", "2025-04-03", "breached"),
        breach("b4", "2025-04-02"),  # April's breach, still open
        stop("m4", "2025-04-09", "met"),
        sla_event("sla_warning", "r1", at("2025-04-10")),  # running: no verdict yet
    ]


async def test_sla_compliance_counts_breaches_of_open_complaints_in_their_month(
    pool: db.Pool,
) -> None:
    await feed(pool, validated(breaches_of_two_months()))
    names = ["sla_compliance", "sla_compliance_resolution", "sla_breaches"]
    found = await kpis(pool, names, [MARCH, APRIL])
    # By hand: March, 3 met (m1 m2 m3) and 3 breached (b1 once, b2 open, b3 by its breach
    # day); April, 1 met (m4) and 1 breached (b4; b3's stop is no second breach).
    assert {k: found[(MARCH, "")][k] for k in names} == {
        "sla_compliance": 0.5,
        "sla_compliance_resolution": 0.4,  # 2 met / (2 + 3): m1 is a first response
        "sla_breaches": 3,
    }
    assert {k: found[(APRIL, "")][k] for k in names} == {
        "sla_compliance": 0.5,
        "sla_compliance_resolution": 0.5,
        "sla_breaches": 1,
    }
    # b2's breach names its tier (gold); the others name none and erin was never scored.
    by_tier = await kpis(pool, ["sla_compliance"], [MARCH], Dimension.TIER)
    assert {t: r["sla_compliance"] for (_, t), r in by_tier.items()} == {
        "gold": 0.0,
        "unscored": 0.6,  # 3 met / 5
    }


async def test_stored_sla_compliance_follows_the_pure_verdicts_whatever_the_order(
    pool: db.Pool,
) -> None:
    """Many clocks of random shape (met, breached and stopped, breached and open, breached
    with a stop that lost its breach event), arriving shuffled in small batches: each week's
    stored compliance is the one counted offline from domain.sla_verdicts of one fold."""
    rng = random.Random(15)
    days = [date(2025, 3, 1) + timedelta(days=n) for n in range(45)]
    raw: list[dict[str, Any]] = []
    for n in range(120):
        complaint, metric = f"k{n}", rng.choice(["first_response", "resolution"])
        first = rng.randrange(len(days) - 10)
        shape = rng.choice(["met", "breached and stopped", "open", "stop only"])
        if shape != "stop only" and shape != "met":
            raw.append(breach(complaint, str(days[first]), metric))
        if shape != "open":
            outcome = "met" if shape == "met" else "breached"
            later = days[first + rng.randrange(10)]
            raw.append(stop(complaint, str(later), outcome, metric))
    events = validated(raw)
    await feed(pool, rng.sample(events, len(events)), batch_size=7)

    batch = domain.fold(events, UTC_ZONE)
    met: dict[date, int] = {}
    late: dict[date, int] = {}
    for v in domain.sla_verdicts(batch.clocks, batch.breaches).values():
        week = v.day - timedelta(days=v.day.weekday())
        into = met if v.outcome == "met" else late
        into[week] = into.get(week, 0) + 1
    weeks = sorted(met.keys() | late.keys())
    found = await kpis(pool, ["sla_compliance"], weeks, granularity=Granularity.WEEK)
    assert {w: found[(w, "")]["sla_compliance"] for w in weeks} == {
        w: round(met.get(w, 0) / (met.get(w, 0) + late.get(w, 0)), 6) for w in weeks
    }


async def test_repeat_purchase_rate_reads_a_window_of_at_least_the_setting(
    pool: db.Pool,
) -> None:
    await feed(pool, validated(march()))
    rate = ["repeat_purchase_rate"]
    day = date(2025, 3, 10)

    async def of_day(window: int, by: Dimension | None = None) -> dict[str, Any]:
        found = await kpis(pool, rate, [day], by, Granularity.DAY, repeat_window_days=window)
        return {key[1]: row["repeat_purchase_rate"] for key, row in found.items()}

    # Orders: alice 03-03 (web) and 03-10 (app), bob 03-05 (web), nobody else in March.
    # The day 03-10 alone holds one order (alice): a rate of 0 whatever happens around it.
    # Over 7 days (03-04 .. 03-10): alice once, bob once: 0 / 2.
    assert await of_day(7) == {"": 0.0}
    # Over 10 days (03-01 .. 03-10): alice twice, bob once: 1 / 2.
    assert await of_day(10) == {"": 0.5}
    # By purchase channel, over 10 days: web has alice and bob once each, app alice once.
    assert await of_day(10, Dimension.CHANNEL) == {"web": 0.0, "app": 0.0}
    # Weeks and months are not cut by a shorter window: the week of 03-03 has alice and bob
    # once each (0 / 2); March has alice twice and bob once (1 / 2).
    week = await kpis(pool, rate, [date(2025, 3, 3)], granularity=Granularity.WEEK)
    assert week[(date(2025, 3, 3), "")]["repeat_purchase_rate"] == 0.0
    month = await kpis(pool, rate, [MARCH])
    assert month[(MARCH, "")]["repeat_purchase_rate"] == 0.5


async def test_contacts_by_handler_and_mode_and_complaints_per_1000_orders(pool: db.Pool) -> None:
    await feed(pool, validated(march()))
    names = [
        "interactions_by_human",
        "interactions_by_bot",
        "bot_share",
        "interactions_synchronous",
        "interactions_asynchronous",
        "synchronous_share",
        "complaints_per_1000_orders",
    ]
    found = (await kpis(pool, names, [MARCH]))[(MARCH, "")]
    assert {k: found[k] for k in names} == {
        "interactions_by_human": 2,  # alice's call, bob's email
        "interactions_by_bot": 1,  # alice's email
        "bot_share": round(1 / 3, 6),
        "interactions_synchronous": 1,
        "interactions_asynchronous": 1,
        "synchronous_share": 0.5,  # bob's email, of no recorded mode, is in neither
        "complaints_per_1000_orders": round(2 * 1000 / 3, 4),  # c1, c2 / a1, a2, b2
    }
    by_channel = await kpis(
        pool, ["bot_share", "interactions_by_human"], [MARCH], Dimension.CHANNEL
    )
    assert {
        c: (r["bot_share"], r["interactions_by_human"]) for (_, c), r in by_channel.items()
    } == {
        "email": (0.5, 1),
        "phone": (0.0, 1),
    }
    # By tier: alice (gold all March) ordered twice; bob's 03-05 order was as potential, his
    # complaint of 03-20 as gold; dave, never classed, complained (c1) without an order.
    by_tier = await kpis(pool, ["complaints_per_1000_orders"], [MARCH], Dimension.TIER)
    assert {t: r["complaints_per_1000_orders"] for (_, t), r in by_tier.items()} == {
        "gold": 500.0,  # 1 complaint / 2 orders
        "potential": 0.0,
        "unscored": None,  # 1 complaint, no order
    }


async def test_cohort_matrix_of_the_month(pool: db.Pool) -> None:
    """march(): carol first bought in December 2024 (only then), dave in January 2025
    (only then), bob in February and again in March, alice in March. Today is in April."""
    await feed(pool, validated(march()))
    december, april = date(2024, 12, 1), date(2025, 4, 1)
    counts = await store.cohort_counts(pool, december, MARCH)
    months = [december, date(2025, 1, 1), FEBRUARY, MARCH]
    assert [
        (r["cohort"], r["customers"], r["retention"])
        for r in cohort_rows(counts.sizes, counts.active, months, april)
    ] == [
        (december, 1, [1.0, 0.0, 0.0, 0.0, 0.0]),
        (date(2025, 1, 1), 1, [1.0, 0.0, 0.0, 0.0]),
        (FEBRUARY, 1, [1.0, 1.0, 0.0]),
        (MARCH, 1, [1.0, 0.0]),
    ]


def cohorts_by_brute_force(
    raw: list[dict[str, Any]], zone: Any
) -> tuple[dict[date, int], dict[tuple[date, date], int]]:
    """Cohort sizes and active counts straight from the purchase events."""
    months: dict[str, set[date]] = {}
    for e in raw:
        if e["type"] == "crm.purchase.completed":
            day = datetime.fromisoformat(e["time"]).astimezone(zone).date()
            months.setdefault(e["subject"], set()).add(day.replace(day=1))
    sizes: dict[date, int] = {}
    active: dict[tuple[date, date], int] = {}
    for bought in months.values():
        cohort = min(bought)
        sizes[cohort] = sizes.get(cohort, 0) + 1
        for month in bought:
            active[(cohort, month)] = active.get((cohort, month), 0) + 1
    return sizes, active


async def test_cohorts_match_brute_force_whatever_the_order_and_a_late_first_purchase(
    pool: db.Pool,
) -> None:
    rng = random.Random(11)
    first_day = date(2024, 9, 1)
    raw = [
        buy(
            f"k{rng.randrange(40)}",
            str(first_day + timedelta(days=rng.randrange(200))),
            "10.00",
            rng.choice(["web", "app"]),
            f"o{n}",
        )
        for n in range(300)
    ]
    await feed(pool, validated(rng.sample(raw, len(raw))), batch_size=17)
    first, last = date(2024, 9, 1), date(2025, 3, 1)
    counts = await store.cohort_counts(pool, first, last)
    sizes, active = cohorts_by_brute_force(raw, UTC)
    assert counts.sizes == sizes
    assert counts.active == active
    # A purchase of August 2024 by k3, arriving last, moves k3 to the August cohort.
    late = buy("k3", "2024-08-20", "5.00", "web", "late")
    await feed(pool, validated([late]))
    sizes, active = cohorts_by_brute_force([*raw, late], UTC)
    counts = await store.cohort_counts(pool, date(2024, 8, 1), last)
    assert counts.sizes == sizes
    assert counts.active == active
    assert sizes[date(2024, 8, 1)] == 1
