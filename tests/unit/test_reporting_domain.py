"""Reporting's fold (events -> read-model rows), allocation rules and churn reasons, pure."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reporting import domain, kpi
from services.reporting.domain import UNKNOWN, Batch, fold
from shared.events import Event, LineItem, ValidationContext, validate_event
from tests.helpers import event

D = Decimal
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def ev(type_name: str, subject: str, data: dict[str, Any], when: str, eid: str = "") -> Event:
    raw = event(type_name, subject, data, time=at(when), event_id=eid or None)
    return validate_event(raw, ValidationContext())


def buy(subject: str, when: str, amount: str, **data: Any) -> Event:
    body = {"order_id": data.pop("order", "o-1"), "amount": amount, "currency": "USD", **data}
    return ev("crm.purchase.completed", subject, body, when)


def item(category: str | None, quantity: int = 1, price: str | None = None) -> LineItem:
    return LineItem(sku="x", category=category, quantity=quantity, unit_price=price)


# --------------------------------------------------------------------------- purchases


def test_a_purchase_adds_sales_categories_a_buyer_day_and_its_order() -> None:
    items = [
        {"sku": "s", "category": "shoes", "quantity": 2, "unit_price": "30"},
        {"sku": "b", "category": "bags", "quantity": 1, "unit_price": "40"},
    ]
    batch = fold([buy("c1", "2025-03-03T10:00:00+00:00", "90.00", channel="web", items=items)], UTC)
    day = date(2025, 3, 3)
    assert batch.sales[(day, "c1", "web")] == domain.SaleDelta(1, D("90.00"))
    # Line totals 60 and 40: 60 % and 40 % of the 90 paid (a discount is shared alike).
    assert batch.category_sales[(day, "c1", "shoes")] == domain.SaleDelta(1, D("54.000000"))
    assert batch.category_sales[(day, "c1", "bags")] == domain.SaleDelta(1, D("36.000000"))
    assert batch.buyer_days == {(day, "c1")}
    assert batch.first_purchase == {"c1": day}
    order = batch.orders[("c1", "o-1")]
    assert (order.channel, order.categories, order.shares) == (
        "web",
        ("bags", "shoes"),
        (D("0.400000"), D("0.600000")),
    )


def test_purchases_add_up_and_unknown_dimensions_are_named() -> None:
    batch = fold(
        [
            buy("c1", "2025-03-03T10:00:00+00:00", "10.00", order="a"),
            buy("c1", "2025-03-03T18:00:00+00:00", "5.50", order="b"),
            buy("c1", "2025-03-01T09:00:00+00:00", "1.00", order="c", channel="app"),
        ],
        UTC,
    )
    assert batch.sales[(date(2025, 3, 3), "c1", UNKNOWN)] == domain.SaleDelta(2, D("15.50"))
    assert batch.category_sales[(date(2025, 3, 3), "c1", UNKNOWN)].revenue == D("15.50")
    assert batch.first_purchase == {"c1": date(2025, 3, 1)}  # the earliest, whatever the order


def test_days_are_local_dates_of_the_reporting_zone() -> None:
    late_evening_utc = buy("c1", "2025-03-03T20:00:00+00:00", "1.00")
    assert set(fold([late_evening_utc], SHANGHAI).buyer_days) == {(date(2025, 3, 4), "c1")}
    assert set(fold([late_evening_utc], UTC).buyer_days) == {(date(2025, 3, 3), "c1")}


def test_a_repeated_order_id_keeps_its_first_completion() -> None:
    first = buy("c1", "2025-03-03T10:00:00+00:00", "1.00", channel="web")
    again = buy("c1", "2025-03-05T10:00:00+00:00", "1.00", channel="app")
    for events in ([first, again], [again, first]):
        assert fold(events, UTC).orders[("c1", "o-1")].channel == "web"


def test_a_refund_is_kept_with_its_order_and_reason() -> None:
    refund = ev(
        "crm.purchase.refunded",
        "c1",
        {"order_id": "o-1", "amount": "20", "currency": "EUR", "reporting_amount": "22"},
        "2025-03-12T10:00:00+00:00",
        "r1",
    )
    (found,) = fold([refund], UTC).refunds
    assert (found.order_id, found.day, found.amount, found.reason) == (
        "o-1",
        date(2025, 3, 12),
        D("22"),  # the amount in the reporting currency
        None,
    )


# --------------------------------------------------------------------------- allocation


def test_category_shares_by_line_totals_by_quantities_or_unknown() -> None:
    assert domain.category_shares([item("a", 1, "10"), item("b", 3, "10")]) == {
        "a": D("0.25"),
        "b": D("0.75"),
    }
    # One item without a price: split by quantities.
    assert domain.category_shares([item("a", 1, "10"), item("b", 3)]) == {
        "a": D("0.25"),
        "b": D("0.75"),
    }
    assert domain.category_shares([item("a", 1, "0"), item("b", 1, "0")]) == {
        "a": D("0.5"),
        "b": D("0.5"),
    }
    assert domain.category_shares([]) == {UNKNOWN: D(1)}
    assert domain.category_shares([item(None), item("a")]) == {"a": D("0.5"), UNKNOWN: D("0.5")}


def test_shares_and_splits_add_up_exactly() -> None:
    thirds = domain.category_shares([item("a"), item("b"), item("c")])
    assert thirds == {"a": D("0.333334"), "b": D("0.333333"), "c": D("0.333333")}
    assert sum(thirds.values()) == 1
    parts = domain.split(D("100.00"), thirds)
    assert sum(parts.values()) == D("100.00")
    assert parts == {"a": D("33.333400"), "b": D("33.333300"), "c": D("33.333300")}


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.integers(1, 50), st.integers(0, 10_000)),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 10**9),
)
def test_a_split_always_adds_up_to_the_amount(
    lines: list[tuple[str, int, int]], cents: int
) -> None:
    items = [item(c, q, str(D(p) / 100)) for c, q, p in lines]
    shares = domain.category_shares(items)
    assert sum(shares.values()) == 1
    amount = D(cents) / 100
    assert sum(domain.split(amount, shares).values()) == amount


def test_spend_is_spread_evenly_over_its_period() -> None:
    days = domain.spread(D("310.00"), date(2025, 3, 1), date(2025, 3, 31))
    assert len(days) == 31
    assert {amount for _, amount in days} == {D("10.000000")}
    assert domain.spread(D("100"), date(2025, 3, 1), date(2025, 3, 3)) == [
        (date(2025, 3, 1), D("33.333333")),
        (date(2025, 3, 2), D("33.333333")),
        (date(2025, 3, 3), D("33.333334")),
    ]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, (date(2025, 3, 9), date(2025, 3, 9))),  # the event's own day
        (date(2025, 3, 1), None, (date(2025, 3, 1), date(2025, 3, 1))),
        (None, date(2025, 3, 5), (date(2025, 3, 5), date(2025, 3, 5))),
        (date(2025, 3, 5), date(2025, 3, 1), (date(2025, 3, 1), date(2025, 3, 5))),
    ],
)
def test_spend_period(start: date | None, end: date | None, expected: tuple[date, date]) -> None:
    assert domain.spend_period(start, end, date(2025, 3, 9)) == expected


def test_a_spend_event_becomes_one_row_a_day() -> None:
    spend = ev(
        "crm.marketing.spend",
        "marketing",
        {
            "amount": "70",
            "currency": "USD",
            "channel": "web",
            "campaign": "spring",
            "period_start": "2025-03-03",
            "period_end": "2025-03-09",
        },
        "2025-03-01T00:00:00+00:00",
    )
    rows = fold([spend], UTC).spend
    assert [(r.day.day, r.channel, r.campaign, r.amount) for r in rows] == [
        (day, "web", "spring", D("10")) for day in range(3, 10)
    ]


# --------------------------------------------------------------------------- customers, classes


def test_the_latest_profile_value_wins_whatever_the_arrival_order() -> None:
    older = ev(
        "crm.customer.registered",
        "c1",
        {"name": "C", "acquisition_channel": "web"},
        "2025-01-01T00:00:00+00:00",
        "e1",
    )
    newer = ev(
        "crm.customer.updated",
        "c1",
        {"acquisition_channel": "partner", "reason": "price"},
        "2025-02-01T00:00:00+00:00",
        "e2",
    )
    for events in ([older, newer], [newer, older]):
        batch = fold(events, UTC)
        assert batch.acquisition_channel["c1"].value == "partner"
        assert batch.churn_reason["c1"].value == "price"


def test_class_changes_keep_the_last_of_each_day() -> None:
    def change(kind: str, new: str, as_of: str, eid: str) -> Event:
        return ev(f"crm.customer.{kind}", "c1", {"new": new, "as_of": as_of}, as_of, eid)

    events = [
        change("tier_changed", "potential", "2025-03-01T01:00:00+00:00", "a"),
        change("tier_changed", "gold", "2025-03-01T05:00:00+00:00", "b"),
        change("segment_changed", "champions", "2025-03-02T01:00:00+00:00", "c"),
        change("churn_risk_raised", "high", "2025-03-02T01:00:00+00:00", "d"),
    ]
    for order in (events, events[::-1]):
        classes = fold(order, UTC).classes
        assert {k: r.value for k, r in classes.items()} == {
            ("c1", "tier", date(2025, 3, 1)): "gold",
            ("c1", "segment", date(2025, 3, 2)): "champions",
        }


def test_tier_summaries_keep_the_last_rescore_of_each_day() -> None:
    def summary(as_of: str, equity: str) -> Event:
        data = {"as_of": as_of, "tier": "gold", "customers": 2, "customer_equity": equity}
        return ev("crm.scoring.tier_summary", "tier:gold", data, as_of)

    events = [
        summary("2025-03-01T09:00:00+00:00", "10"),
        summary("2025-03-01T10:00:00+00:00", "12"),
    ]
    for order in (events, events[::-1]):
        rows = fold(order, UTC).tier_summaries
        assert {k: r.customer_equity for k, r in rows.items()} == {
            ("gold", date(2025, 3, 1)): D(12)
        }


# --------------------------------------------------------------------------- activity


def test_interactions_and_survey_answers_are_counted() -> None:
    def talk(channel: str, sentiment: str | None = None) -> Event:
        data: dict[str, Any] = {"channel": channel, "direction": "inbound"}
        if sentiment:
            data["sentiment"] = sentiment
        return ev("crm.interaction.logged", "c1", data, "2025-03-03T10:00:00+00:00")

    batch = fold(
        [
            talk("email", "negative"),
            talk("email"),
            talk("phone"),
            ev("crm.survey.nps", "c1", {"score": 9}, "2025-03-03T10:00:00+00:00"),
            ev("crm.survey.nps", "c1", {"score": 9}, "2025-03-03T11:00:00+00:00"),
            ev(
                "crm.survey.csat", "c1", {"score": 4, "channel": "app"}, "2025-03-03T10:00:00+00:00"
            ),
        ],
        UTC,
    )
    day = date(2025, 3, 3)
    assert batch.interactions == {(day, "c1", "email"): [2, 1], (day, "c1", "phone"): [1, 0]}
    assert batch.surveys == {(day, "c1", "nps", UNKNOWN, 9): 2, (day, "c1", "csat", "app", 4): 1}


def test_contacts_are_counted_by_who_handled_them_and_how() -> None:
    def talk(channel: str, **more: Any) -> Event:
        data: dict[str, Any] = {"channel": channel, "direction": "inbound", **more}
        return ev("crm.interaction.logged", "c1", data, "2025-03-03T10:00:00+00:00")

    batch = fold(
        [
            talk("chat", handled_by="bot", synchronous=True),
            talk("chat", handled_by="bot", synchronous=True),
            talk("chat", synchronous=True),  # a person by default
            talk("email", synchronous=False),
            talk("email"),  # the mode not recorded
        ],
        UTC,
    )
    day = date(2025, 3, 3)
    assert batch.interaction_kinds == {
        (day, "c1", "chat", "bot", "synchronous"): 2,
        (day, "c1", "chat", "human", "synchronous"): 1,
        (day, "c1", "email", "human", "asynchronous"): 1,
        (day, "c1", "email", "human", UNKNOWN): 1,
    }


def test_a_purchase_marks_its_customer_and_local_month() -> None:
    batch = fold(
        [
            buy("c1", "2025-02-28T17:00:00+00:00", "10", order="a"),  # 1 March in Shanghai
            buy("c1", "2025-03-20T10:00:00+00:00", "10", order="b"),
            buy("c2", "2025-02-10T10:00:00+00:00", "10", order="c"),
        ],
        SHANGHAI,
    )
    assert batch.customer_months == {("c1", date(2025, 3, 1)), ("c2", date(2025, 2, 1))}


# --------------------------------------------------------------------------- complaints, SLA


def complaint(kind: str, when: str, eid: str, **data: Any) -> Event:
    return ev(f"crm.complaint.{kind}", "c1", {"complaint_id": "k1", **data}, when, eid)


def test_a_complaint_keeps_its_opening_latest_resolution_and_reopening() -> None:
    events = [
        complaint("opened", "2025-03-02T10:00:00+00:00", "o", channel="email", category="delivery"),
        complaint("resolved", "2025-03-03T10:00:00+00:00", "r1"),
        complaint("reopened", "2025-03-04T10:00:00+00:00", "x"),
        complaint("resolved", "2025-03-05T10:00:00+00:00", "r2"),
        complaint("feedback", "2025-03-06T10:00:00+00:00", "f", score=5),
        complaint("responded", "2025-03-02T11:00:00+00:00", "y"),
    ]
    for order in (events, events[::-1]):
        batch = fold(order, UTC)
        opening = batch.openings["k1"]
        assert (opening.day, opening.channel, opening.category, opening.priority) == (
            date(2025, 3, 2),
            "email",
            "delivery",
            "medium",
        )
        assert batch.resolved["k1"].at == at("2025-03-05T10:00:00+00:00")
        assert batch.reopened["k1"].at == at("2025-03-04T10:00:00+00:00")
        assert sorted(r.event_id for r in batch.resolutions) == ["r1", "r2"]
        assert [(f.score, f.day) for f in batch.feedback] == [(5, date(2025, 3, 6))]
        assert batch.complaint_customers == {"k1": "c1"}


def test_the_latest_stop_of_a_clock_and_the_first_breach_count() -> None:
    base = {"metric": "resolution", "cycle": 0, "target_seconds": 100}
    events = [
        complaint(
            "sla_clock_stopped",
            "2025-03-03T10:00:00+00:00",
            "s1",
            outcome="met",
            elapsed_seconds=50,
            **base,
        ),
        complaint(
            "sla_clock_stopped",
            "2025-03-05T10:00:00+00:00",
            "s2",
            outcome="breached",
            elapsed_seconds=150,
            tier="gold",
            **base,
        ),
        complaint("sla_breached", "2025-03-04T12:00:00+00:00", "b2", **base),
        complaint("sla_breached", "2025-03-04T11:00:00+00:00", "b1", **base),
        complaint("sla_warning", "2025-03-04T09:00:00+00:00", "w", **base),
    ]
    for order in (events, events[::-1]):
        batch = fold(order, UTC)
        (stop,) = batch.clocks.values()
        assert (stop.outcome, stop.elapsed_seconds, stop.tier, stop.day) == (
            "breached",
            150,
            "gold",
            date(2025, 3, 5),
        )
        (breach,) = batch.breaches.values()
        assert breach.event_id == "b1"


def sla(kind: str, complaint_id: str, when: str, metric: str = "resolution", **data: Any) -> Event:
    body = {"complaint_id": complaint_id, "metric": metric, "cycle": 0, "target_seconds": 3600}
    return ev(f"crm.complaint.{kind}", "c1", body | data, when, f"{kind}:{complaint_id}:{when}")


def stopped(complaint_id: str, when: str, outcome: str, metric: str = "resolution") -> Event:
    return sla("sla_clock_stopped", complaint_id, when, metric, outcome=outcome, elapsed_seconds=1)


def breached(complaint_id: str, when: str, metric: str = "resolution") -> Event:
    return sla("sla_breached", complaint_id, when, metric)


SLA_MONTHS = [
    # March: three clocks met ...
    stopped("m1", "2025-03-03T10:00:00+00:00", "met", "first_response"),
    stopped("m2", "2025-03-05T10:00:00+00:00", "met"),
    stopped("m3", "2025-03-07T10:00:00+00:00", "met"),
    # ... one breached, then stopped late (its stop says breached again: still one breach) ...
    breached("b1", "2025-03-10T10:00:00+00:00"),
    stopped("b1", "2025-03-12T10:00:00+00:00", "breached"),
    # ... one breached and never stopped (the complaint was abandoned) ...
    breached("b2", "2025-03-20T10:00:00+00:00"),
    # ... and one breached in March that stops in April: a March breach, not an April one.
    breached("b3", "2025-03-28T10:00:00+00:00"),
    stopped("b3", "2025-04-03T10:00:00+00:00", "breached"),
    # April: one breach, still open; one clock met; one still running (a warning only).
    breached("b4", "2025-04-02T10:00:00+00:00"),
    stopped("m4", "2025-04-09T10:00:00+00:00", "met"),
    sla("sla_warning", "r1", "2025-04-10T10:00:00+00:00"),
]


def monthly_compliance(events: list[Event]) -> dict[tuple[int, int], Decimal | None]:
    batch = fold(events, UTC)
    met: dict[tuple[int, int], int] = {}
    late: dict[tuple[int, int], int] = {}
    for verdict in domain.sla_verdicts(batch.clocks, batch.breaches).values():
        month = (verdict.day.year, verdict.day.month)
        into = met if verdict.outcome == "met" else late
        into[month] = into.get(month, 0) + 1
    return {m: kpi.sla_compliance(met.get(m, 0), late.get(m, 0)) for m in met.keys() | late}


def test_sla_compliance_counts_every_breach_once_in_the_month_it_happened() -> None:
    # By hand: March has 3 met (m1, m2, m3) and 3 breached (b1 once, b2 open, b3 breached in
    # March though stopped in April): 3 / 6. April has 1 met (m4) and 1 breached (b4; b3's
    # stop is not a breach of April, r1 is still running): 1 / 2.
    expected = {(2025, 3): Decimal(3) / 6, (2025, 4): Decimal(1) / 2}
    assert monthly_compliance(SLA_MONTHS) == expected
    assert monthly_compliance(SLA_MONTHS[::-1]) == expected  # whatever the arrival order
    # Counting stops alone (the old rule) would give March 3 / 4 and April 1 / 2: b2 never
    # lowers a rate, b3 lowers April's.


def test_a_clock_has_one_verdict_on_its_breach_day_or_else_its_stop_day() -> None:
    batch = fold(SLA_MONTHS, UTC)
    verdicts = domain.sla_verdicts(batch.clocks, batch.breaches)
    assert {key[0]: (v.day, v.outcome) for key, v in verdicts.items()} == {
        "m1": (date(2025, 3, 3), "met"),
        "m2": (date(2025, 3, 5), "met"),
        "m3": (date(2025, 3, 7), "met"),
        "b1": (date(2025, 3, 10), "breached"),
        "b2": (date(2025, 3, 20), "breached"),
        "b3": (date(2025, 3, 28), "breached"),
        "b4": (date(2025, 4, 2), "breached"),
        "m4": (date(2025, 4, 9), "met"),
    }
    assert verdicts[("m1", "first_response", 0)].metric == "first_response"


def test_a_crisis_alert_is_kept_as_it_came() -> None:
    data = {
        "dimension": "channel",
        "value": "hotline",
        "window_start": "2025-03-02T00:00:00+00:00",
        "window_end": "2025-03-02T06:00:00+00:00",
        "count": 12,
        "baseline": 3,
        "score": 13,
        "decision_interval": 12,
    }
    (alert,) = fold(
        [ev("crm.crisis.detected", "crisis:x", data, "2025-03-02T06:00:00+00:00")], UTC
    ).alerts
    assert (alert.dimension, alert.value, alert.count, alert.day) == (
        "channel",
        "hotline",
        12,
        date(2025, 3, 2),
    )


def test_an_empty_batch_is_empty() -> None:
    assert fold([], UTC).is_empty()
    assert not fold([buy("c1", "2025-03-03T10:00:00+00:00", "1")], UTC).is_empty()
    assert Batch().is_empty()


def test_the_fold_does_not_depend_on_the_order_of_events() -> None:
    events = [
        buy("c1", "2025-03-03T10:00:00+00:00", "10", order="a", channel="web"),
        buy("c1", "2025-03-03T11:00:00+00:00", "5", order="b", channel="web"),
        buy("c2", "2025-03-04T10:00:00+00:00", "7", order="a"),
        ev("crm.survey.nps", "c1", {"score": 3}, "2025-03-03T10:00:00+00:00"),
        complaint("opened", "2025-03-02T10:00:00+00:00", "o", channel="email", category="other"),
        complaint("resolved", "2025-03-03T10:00:00+00:00", "r"),
    ]
    expected = fold(events, UTC)
    rng = random.Random(1)
    for _ in range(10):
        shuffled = fold(rng.sample(events, len(events)), UTC)
        assert shuffled.sales == expected.sales
        assert shuffled.category_sales == expected.category_sales
        assert shuffled.orders == expected.orders
        assert shuffled.surveys == expected.surveys
        assert shuffled.openings == expected.openings
        assert shuffled.resolved == expected.resolved


# --------------------------------------------------------------------------- churn reasons


@pytest.mark.parametrize(
    ("recorded", "complaint_category", "refund_reason", "expected"),
    [
        ("competitor", "delivery", "price", "competitor"),  # the record comes first
        (None, "delivery", "price", "service_quality"),
        (None, "service_attitude", None, "service_quality"),
        (None, "product_quality", None, "product_quality"),
        (None, "price_billing", None, "price"),
        (None, "other", None, "other"),
        (None, None, "product_quality", "product_quality"),
        (None, None, None, UNKNOWN),
    ],
)
def test_churn_reason(
    recorded: str | None, complaint_category: str | None, refund_reason: str | None, expected: str
) -> None:
    assert domain.churn_reason(recorded, complaint_category, refund_reason) == expected


def test_every_complaint_category_maps_to_a_churn_reason() -> None:
    from typing import get_args

    from shared.events import ComplaintCategory

    assert set(get_args(ComplaintCategory)) == set(domain.COMPLAINT_REASON)
    assert set(domain.COMPLAINT_REASON.values()) <= set(domain.CHURN_REASONS)


# --------------------------------------------------------------------------- new kpi formulas


def test_returning_buyers() -> None:
    assert kpi.returning_buyers(10, 4) == 6
    with pytest.raises(ValueError, match="cannot exceed"):
        kpi.returning_buyers(3, 4)


def test_customer_equity_is_the_sum_of_lifetime_values() -> None:
    assert kpi.customer_equity([D("100.5"), D("-20"), D("0.25")]) == D("80.75")
    assert kpi.customer_equity([]) == 0
    with pytest.raises(TypeError):
        kpi.customer_equity([1.5])  # type: ignore[list-item]


def test_average_clv_weights_each_group_by_its_customers() -> None:
    # (2 x 300 + 6 x 100) / 8 = 150; the group without an average is left out.
    assert kpi.average_clv([(2, D(300)), (6, D(100)), (5, None)]) == D(150)
    assert kpi.average_clv([(3, None)]) is None
    assert kpi.average_clv([]) is None
