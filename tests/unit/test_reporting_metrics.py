"""Every metric of the KPI catalogue against hand-computed cells; slices; presentation."""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal

import pytest

from services.reporting.kpi import Unit
from services.reporting.metrics import (
    METRICS,
    SUMMARY_METRICS,
    Base,
    Cell,
    Complaints,
    Crisis,
    Dimension,
    Formula,
    Interactions,
    Lifetime,
    Marketing,
    Metric,
    Period,
    Repeat,
    Sales,
    Sla,
    Source,
    Surveys,
    TierValue,
    cohort_rows,
    present,
    sources_of,
    table,
)

D = Decimal


def cell() -> Cell:
    """One period of a small shop, worked out by hand below."""
    return Cell(
        sales=Sales(revenue=D("200.00"), orders=3, buyers=2, new_buyers=1),
        # The period's repeat window (longer than a short period) had 4 buyers, 1 of them twice.
        repeat=Repeat(buyers=4, repeat_buyers=1),
        base=Base(
            at_start=4,
            at_end=5,
            new=2,
            won_back=1,
            active=6,
            lost=1,
            reasons=Counter({"price": 1}),
        ),
        marketing=Marketing(spend=D("300")),
        value=Lifetime(
            [
                TierValue("gold", 2, D("600"), D("300")),
                TierValue("potential", 6, D("600"), D("100")),
            ]
        ),
        surveys=Surveys(nps=Counter({10: 2, 8: 1, 3: 1}), csat=Counter({5: 1, 4: 1, 1: 1})),
        complaints=Complaints(
            opened=4, opened_resolved=3, resolved=5, feedback=Counter({4: 1, 2: 1})
        ),
        sla=Sla(
            met=Counter({"first_response": 3, "resolution": 1}),
            breached=Counter({"first_response": 1, "resolution": 3}),
            elapsed={"first_response": [60, 120, 180, 240], "resolution": [3600, 7200]},
            breaches=4,
        ),
        crisis=Crisis(alerts=2),
        # Of the 9 contacts, 3 by a bot; 4 synchronous, 2 asynchronous, 3 not saying.
        interactions=Interactions(
            interactions=9,
            customers=4,
            negative=1,
            by_human=6,
            by_bot=3,
            synchronous=4,
            asynchronous=2,
        ),
    )


def previous() -> Cell:
    return Cell(
        sales=Sales(revenue=D("160.00"), orders=4, buyers=2),
        value=Lifetime([TierValue("gold", 2, D("1000"), D("500"))]),
    )


EXPECTED: dict[str, object] = {
    "revenue": D("200.00"),
    "orders": 3,
    "average_order_value": D(200) / D(3),
    "buyers": 2,
    "new_buyers": 1,
    "returning_buyers": 1,
    "repeat_purchase_rate": D("0.25"),  # 1 repeat buyer / 4 buyers, both of the window
    "revenue_growth": D("0.25"),  # (200 - 160) / 160
    "orders_growth": D("-0.25"),  # (3 - 4) / 4
    "buyers_growth": D(0),
    "marketing_spend": D("300"),
    "won_back_customers": 1,
    "cac": D(150),  # 300 / 2 new (the base's count of first purchases)
    "active_customers": 6,
    "customers_at_start": 4,
    "customers_at_end": 5,
    "lost_customers": 1,
    "churn_rate": D("0.25"),  # 1 / 4
    "retention_rate": D("0.5"),  # (5 - 2 new - 1 won back) / 4
    "customer_equity": D(1200),
    "average_clv": D(150),  # (2 x 300 + 6 x 100) / 8
    "scored_customers": 8,
    "customer_equity_growth": D("0.2"),  # (1200 - 1000) / 1000
    "nps": D(25),  # (2 promoters - 1 detractor) / 4
    "nps_responses": 4,
    "csat": D(200) / D(3),  # 2 of 3 answers are 4-5
    "csat_responses": 3,
    "complaint_feedback_score": D(3),
    "feedback_responses": 2,
    "complaints_opened": 4,
    "complaints_resolved": 5,
    "resolution_rate": D("0.75"),
    "sla_compliance": D("0.5"),  # (3 + 1) / 8
    "sla_compliance_first_response": D("0.75"),
    "sla_compliance_next_response": None,
    "sla_compliance_resolution": D("0.25"),
    "sla_breaches": 4,
    "first_response_time_median": 150.0,
    "first_response_time_p90": 222.0,  # 180 + 0.7 x 60
    "resolution_time_median": 5400.0,
    "resolution_time_p90": 6840.0,  # 3600 + 0.9 x 3600
    "crisis_alerts": 2,
    "interactions": 9,
    "interacting_customers": 4,
    "interactions_per_customer": D("2.25"),  # 9 / the 4 customers who made them
    "interactions_by_human": 6,
    "interactions_by_bot": 3,
    "bot_share": D(3) / D(9),  # 3 bot / (3 bot + 6 human)
    "interactions_synchronous": 4,
    "interactions_asynchronous": 2,
    "synchronous_share": D(4) / D(6),  # the 3 without a mode are left out
    "complaints_per_1000_orders": D(4000) / D(3),  # 4 opened / 3 orders x 1,000
    "churn_reason_price": 1,
    "churn_reason_competitor": 0,
    "churn_reason_service_quality": 0,
    "churn_reason_product_quality": 0,
    "churn_reason_other": 0,
    "churn_reason_unknown": 0,
}


def test_the_cases_cover_the_whole_catalogue() -> None:
    assert set(EXPECTED) == set(METRICS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_metric_against_a_hand_computed_case(name: str) -> None:
    assert METRICS[name].value(cell(), previous()) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(METRICS))
def test_an_empty_period_has_zero_counts_and_no_ratios(name: str) -> None:
    metric = METRICS[name]
    value = metric.value(Cell(), Cell())
    flows = {"revenue", "marketing_spend"}
    if (metric.unit is Unit.COUNT and not metric.snapshot) or name in flows:
        assert value == 0
    else:
        assert value is None, name


def test_growth_needs_a_previous_period() -> None:
    assert METRICS["revenue_growth"].value(cell(), None) is None
    assert METRICS["revenue_growth"].value(cell(), Cell()) is None  # from nothing: no rate


@pytest.mark.parametrize(
    ("compute", "growth_of"),
    [(None, None), (lambda cell: cell.sales.orders, "orders")],
    ids=["neither", "both"],
)
def test_a_metric_has_its_own_formula_or_is_a_growth_not_both(
    compute: Formula | None, growth_of: str | None
) -> None:
    with pytest.raises(ValueError, match="either compute or growth_of"):
        Metric(
            name="orders_growth_again",
            group="sales",
            label_en="Order growth",
            label_zh="订单增长率",
            unit=Unit.RATIO,
            formula="(orders - previous period's) / previous period's",
            source="test",
            sources=(Source.SALES,),
            compute=compute,
            growth_of=growth_of,
        )


def test_every_metric_says_what_it_is() -> None:
    for metric in METRICS.values():
        assert metric.label_en
        assert any("\u4e00" <= c <= "\u9fff" for c in metric.label_zh), metric.name
        assert metric.formula
        assert metric.source
        assert metric.group in {
            "sales",
            "acquisition",
            "value",
            "satisfaction",
            "service",
            "relationship",
            "churn_reasons",
        }
    assert set(SUMMARY_METRICS) <= set(METRICS)


@pytest.mark.parametrize(
    ("name", "slices"),
    [
        ("revenue", set(Dimension)),
        ("repeat_purchase_rate", set(Dimension)),
        ("churn_rate", {Dimension.TIER, Dimension.SEGMENT, Dimension.CHANNEL}),
        ("cac", {Dimension.CHANNEL}),
        ("customer_equity", {Dimension.TIER}),
        ("nps", {Dimension.TIER, Dimension.SEGMENT, Dimension.CHANNEL}),
        ("sla_compliance", set(Dimension)),
        ("crisis_alerts", {Dimension.CHANNEL, Dimension.CATEGORY}),
        ("interactions_per_customer", {Dimension.TIER, Dimension.SEGMENT, Dimension.CHANNEL}),
        ("interactions", {Dimension.TIER, Dimension.SEGMENT, Dimension.CHANNEL}),
        ("bot_share", {Dimension.TIER, Dimension.SEGMENT, Dimension.CHANNEL}),
        ("synchronous_share", {Dimension.TIER, Dimension.SEGMENT, Dimension.CHANNEL}),
        # A complaint's channel (hotline) and category (delivery) are not an order's.
        ("complaints_per_1000_orders", {Dimension.TIER, Dimension.SEGMENT}),
    ],
)
def test_slices_are_those_every_source_knows(name: str, slices: set[Dimension]) -> None:
    assert METRICS[name].slices == slices


def test_sources_of_a_request() -> None:
    assert sources_of(["revenue", "cac"]) == {Source.SALES, Source.MARKETING, Source.BASE}


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (D("200"), Unit.MONEY, "200.00"),
        (D("0.125"), Unit.MONEY, "0.12"),  # half to even
        (D("0.135"), Unit.MONEY, "0.14"),
        (D(200) / D(3), Unit.MONEY, "66.67"),
        (3, Unit.COUNT, 3),
        (D(1) / D(3), Unit.RATIO, 0.333333),
        (D(200) / D(3), Unit.PERCENT, 66.6667),
        (D(-25), Unit.NPS_POINTS, -25.0),
        (5400.0, Unit.DURATION, 5400.0),
        (None, Unit.RATIO, None),
    ],
)
def test_presentation(value: object, unit: Unit, shown: object) -> None:
    assert present(value, unit) == shown  # type: ignore[arg-type]


def test_a_table_is_dense_over_periods_and_slices() -> None:
    march, april = date(2025, 3, 1), date(2025, 4, 1)
    cells = {
        (date(2025, 2, 1), "web"): Cell(sales=Sales(revenue=D(100), orders=1, buyers=1)),
        (march, "web"): Cell(sales=Sales(revenue=D(150), orders=2, buyers=1), repeat=Repeat(1, 1)),
        (april, "app"): Cell(
            sales=Sales(revenue=D(10), orders=1, buyers=1, new_buyers=1), repeat=Repeat(1, 0)
        ),
    }
    periods = [
        Period(march, date(2025, 3, 31), date(2025, 2, 1)),
        Period(april, date(2025, 4, 30), march),
    ]
    rows = table(
        cells, periods, ["revenue", "repeat_purchase_rate", "revenue_growth"], Dimension.CHANNEL
    )
    assert [
        (r["period"], r["channel"], r["revenue"], r["repeat_purchase_rate"], r["revenue_growth"])
        for r in rows
    ] == [
        (march, "app", "0.00", None, None),
        (march, "web", "150.00", 1.0, 0.5),
        (april, "app", "10.00", 0.0, None),
        (april, "web", "0.00", None, -1.0),
    ]
    assert table(cells, periods, ["orders"], None) == [
        {"period": march, "period_end": date(2025, 3, 31), "orders": 0},
        {"period": april, "period_end": date(2025, 4, 30), "orders": 0},
    ]  # unsliced cells are under the slice ''
    assert table({}, periods, ["orders"], Dimension.TIER) == []


def test_cohort_rows_from_hand_counted_cohorts() -> None:
    """Cohort May 2025: 4 customers; 2 of them bought in June, none in July, 1 in August
    (today's month). June: 2 customers, 1 back in August. July: none."""
    may, june, july, august = (date(2025, m, 1) for m in (5, 6, 7, 8))
    sizes = {may: 4, june: 2}
    active = {(may, may): 4, (may, june): 2, (may, august): 1, (june, june): 2, (june, august): 1}
    rows = cohort_rows(sizes, active, [may, june, july], august)
    assert rows == [
        {"cohort": may, "customers": 4, "active": [4, 2, 0, 1], "retention": [1.0, 0.5, 0.0, 0.25]},
        {"cohort": june, "customers": 2, "active": [2, 0, 1], "retention": [1.0, 0.0, 0.5]},
        {"cohort": july, "customers": 0, "active": [0, 0], "retention": [None, None]},
    ]
