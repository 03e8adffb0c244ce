"""The skeleton's folds: pure, and independent of the order events arrive in."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.complaints.domain import derive
from services.reporting.domain import fold as reporting_fold
from services.scoring.domain import PurchaseSummary, fold
from shared.events import Event, ValidationContext, validate_event

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def make(type_name: str, data: dict[str, Any], minutes: int, event_id: str) -> Event:
    raw = {
        "specversion": "1.0",
        "id": event_id,
        "source": "t",
        "type": type_name,
        "time": (T0 + timedelta(minutes=minutes)).isoformat(),
        "subject": "c1",
        "data": data,
    }
    return validate_event(raw, ValidationContext())


def purchase(minutes: int, amount: str, n: int) -> Event:
    data = {"order_id": f"o{n}", "amount": amount, "currency": "USD"}
    return make("crm.purchase.completed", data, minutes, f"p{n}")


def refund(minutes: int, amount: str, n: int) -> Event:
    data = {"order_id": f"o{n}", "amount": amount, "currency": "USD"}
    return make("crm.purchase.refunded", data, minutes, f"r{n}")


def test_scoring_fold_counts_purchases_and_nets_refunds() -> None:
    events = [purchase(0, "10.00", 1), purchase(60, "5.50", 2), refund(90, "2.00", 3)]
    summary = fold(PurchaseSummary("c1"), events)
    assert summary.purchase_count == 2
    assert summary.total_spent == Decimal("13.50")
    assert summary.first_purchase_at == T0
    assert summary.last_purchase_at == T0 + timedelta(minutes=60)


history = st.lists(
    st.tuples(st.integers(0, 10_000), st.decimals("0.01", "999.99", places=2), st.booleans()),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(history, st.randoms())
def test_scoring_fold_ignores_arrival_order(rows: list[Any], rng: Any) -> None:
    events = [
        (refund if is_refund else purchase)(m, str(a), i)
        for i, (m, a, is_refund) in enumerate(rows)
    ]
    shuffled = list(events)
    rng.shuffle(shuffled)
    assert fold(PurchaseSummary("c1"), events) == fold(PurchaseSummary("c1"), shuffled)


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(5)))
def test_complaint_state_is_the_same_whatever_the_arrival_order(order: list[int]) -> None:
    events = [
        make(
            "crm.complaint.opened",
            {"complaint_id": "k", "channel": "email", "category": "delivery"},
            0,
            "a",
        ),
        make("crm.complaint.responded", {"complaint_id": "k"}, 10, "b"),
        make("crm.complaint.waiting", {"complaint_id": "k"}, 20, "c"),
        make("crm.complaint.resolved", {"complaint_id": "k"}, 30, "d"),
        make("crm.complaint.closed", {"complaint_id": "k"}, 40, "e"),
    ]
    state = derive("k", "c1", [events[i] for i in order])
    assert state.status == "closed"
    assert state.first_response_at == T0 + timedelta(minutes=10)
    assert state.resolved_at == T0 + timedelta(minutes=30)


def test_a_reopen_clears_the_resolution() -> None:
    events = [
        make(
            "crm.complaint.opened",
            {"complaint_id": "k", "channel": "email", "category": "delivery"},
            0,
            "a",
        ),
        make("crm.complaint.resolved", {"complaint_id": "k"}, 30, "b"),
        make("crm.complaint.reopened", {"complaint_id": "k"}, 40, "c"),
    ]
    state = derive("k", "c1", events)
    assert (state.status, state.resolved_at) == ("reopened", None)


def test_reporting_days_follow_the_deployment_time_zone() -> None:
    late_evening_utc = purchase(11 * 60 + 30, "10.00", 1)  # 23:30 UTC = next day in Shanghai
    batch = reporting_fold([late_evening_utc, refund(0, "1.00", 2)], ZoneInfo("Asia/Shanghai"))
    # By hand: the refund at 12:00 UTC is 20:00 on 03-01 in Shanghai, the purchase 07:30 on 03-02.
    assert [(r.day, r.amount) for r in batch.refunds] == [(date(2026, 3, 1), Decimal("1.00"))]
    assert {k: (d.orders, d.revenue) for k, d in batch.sales.items()} == {
        (date(2026, 3, 2), "c1", "unknown"): (1, Decimal("10.00"))
    }
