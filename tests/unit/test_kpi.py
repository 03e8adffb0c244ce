"""KPI formulas against hand-computed cases, zero denominators, edge values and properties."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reporting import kpi
from services.reporting.kpi import Granularity

D = Decimal


def seconds(*values: float) -> list[timedelta]:
    return [timedelta(seconds=v) for v in values]


# --------------------------------------------------------------------------- sales


def test_average_order_value() -> None:
    assert kpi.average_order_value(D("100.00"), 4) == D("25.00")
    assert kpi.average_order_value(D("10"), 3) == D(10) / D(3)


def test_average_order_value_without_orders_is_none() -> None:
    assert kpi.average_order_value(D("0"), 0) is None


@pytest.mark.parametrize(
    ("revenue", "orders", "error"),
    [
        (100.0, 1, TypeError),
        (D("NaN"), 1, ValueError),
        (D("1"), -1, ValueError),
        (D("1"), 1.0, TypeError),
        (D("1"), True, TypeError),
    ],
)
def test_average_order_value_rejects_bad_input(
    revenue: Any, orders: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        kpi.average_order_value(revenue, orders)


def test_repeat_purchase_rate() -> None:
    assert kpi.repeat_purchase_rate(3, 4) == D("0.75")
    assert kpi.repeat_purchase_rate(0, 5) == D(0)
    assert kpi.repeat_purchase_rate(0, 0) is None


def test_repeat_purchase_rate_rejects_more_repeat_buyers_than_buyers() -> None:
    with pytest.raises(ValueError, match="cannot exceed"):
        kpi.repeat_purchase_rate(5, 4)


@pytest.mark.parametrize(
    ("start", "stop", "days", "since"),
    [
        # A day (03-10) with a 7-day window: 03-04 .. 03-10.
        (date(2025, 3, 10), date(2025, 3, 11), 7, date(2025, 3, 4)),
        # A week (Mon 03-10 .. Sun 03-16) with a 7-day window: the week itself.
        (date(2025, 3, 10), date(2025, 3, 17), 7, date(2025, 3, 10)),
        # A month is never cut short by a shorter window.
        (date(2025, 2, 1), date(2025, 3, 1), 7, date(2025, 2, 1)),
        # A week with a 30-day window: 02-15 .. 03-16.
        (date(2025, 3, 10), date(2025, 3, 17), 30, date(2025, 2, 15)),
        # A window of one day: the period itself.
        (date(2025, 3, 10), date(2025, 3, 11), 1, date(2025, 3, 10)),
    ],
)
def test_repeat_window_is_the_period_or_longer(
    start: date, stop: date, days: int, since: date
) -> None:
    assert kpi.repeat_window(start, stop, days) == since


def test_repeat_window_needs_a_day() -> None:
    with pytest.raises(ValueError, match="at least one day"):
        kpi.repeat_window(date(2025, 3, 10), date(2025, 3, 11), 0)


def repeat_and_buyers(order_counts: list[int]) -> tuple[int, int]:
    """(customers with 2+ orders, customers with 1+ order): the rule counted by hand."""
    return sum(c >= 2 for c in order_counts), sum(c >= 1 for c in order_counts)


def test_a_days_repeat_purchase_rate_reads_its_trailing_window() -> None:
    # Orders per customer on the days of 03-04 .. 03-10; the rate of the day 03-10.
    orders = {
        "ann": [date(2025, 3, 4), date(2025, 3, 10)],  # twice in the window: a repeat buyer
        "bob": [date(2025, 3, 10)],
        "cy": [date(2025, 3, 2), date(2025, 3, 10)],  # 03-02 is before the window: once
        "dee": [date(2025, 3, 6), date(2025, 3, 6)],  # twice on one day of the window
        "eve": [date(2025, 3, 11)],  # after the day
    }
    since, stop = kpi.repeat_window(date(2025, 3, 10), date(2025, 3, 11), 7), date(2025, 3, 11)
    counts = [sum(since <= d < stop for d in days) for days in orders.values()]
    # By hand: buyers of 03-04 .. 03-10 are ann, bob, cy, dee; repeat buyers ann and dee: 2 / 4.
    assert kpi.repeat_purchase_rate(*repeat_and_buyers(counts)) == D("0.5")
    # The day alone (the old reading): ann, bob, cy bought once each on 03-10: 0 / 3.
    day_counts = [days.count(date(2025, 3, 10)) for days in orders.values()]
    assert kpi.repeat_purchase_rate(*repeat_and_buyers(day_counts)) == D(0)


@pytest.mark.parametrize(
    ("current", "previous", "expected"),
    [
        (120, 100, D("0.2")),
        (80, 100, D("-0.2")),
        (100, 100, D(0)),
        (0, 50, D(-1)),
        (D("150.50"), D("100.00"), D("0.505")),
        (D("300"), 100, D(2)),
    ],
)
def test_growth_rate(current: kpi.Number, previous: kpi.Number, expected: Decimal) -> None:
    assert kpi.growth_rate(current, previous) == expected


def test_growth_rate_from_zero_is_none() -> None:
    assert kpi.growth_rate(10, 0) is None
    assert kpi.growth_rate(D("0.00"), D("0.00")) is None


def test_growth_rate_rejects_floats() -> None:
    with pytest.raises(TypeError):
        kpi.growth_rate(1.5, 1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- acquisition, churn


def test_customer_acquisition_cost() -> None:
    assert kpi.customer_acquisition_cost(D("1000.00"), 40) == D("25.00")
    assert kpi.customer_acquisition_cost(D("0.00"), 3) == D(0)


def test_customer_acquisition_cost_without_new_customers_is_none() -> None:
    assert kpi.customer_acquisition_cost(D("500.00"), 0) is None


def test_customer_acquisition_cost_rejects_negative_spend() -> None:
    with pytest.raises(ValueError, match="negative"):
        kpi.customer_acquisition_cost(D("-1.00"), 3)


def test_churn_rate() -> None:
    assert kpi.churn_rate(5, 100) == D("0.05")
    assert kpi.churn_rate(0, 100) == D(0)
    assert kpi.churn_rate(100, 100) == D(1)


def test_churn_rate_of_empty_base_is_none() -> None:
    assert kpi.churn_rate(0, 0) is None


def test_churn_rate_rejects_more_lost_than_the_starting_base() -> None:
    with pytest.raises(ValueError, match="cannot exceed"):
        kpi.churn_rate(11, 10)


def test_retention_rate_kumar_reinartz() -> None:
    # Start 100, 20 new, 110 at end: 90 of the starting 100 stayed.
    assert kpi.retention_rate(110, 20, 100) == D("0.9")
    assert kpi.retention_rate(100, 0, 100) == D(1)


def test_retention_rate_can_be_negative_when_new_customers_are_lost_too() -> None:
    # Start 10, all lost; 5 new of whom 3 lost: (2 - 5) / 10.
    assert kpi.retention_rate(2, 5, 10) == D("-0.3")


def test_retention_rate_of_empty_base_is_none() -> None:
    assert kpi.retention_rate(5, 5, 0) is None


def test_retention_is_one_minus_churn_when_no_new_customer_is_lost() -> None:
    start, lost, new = 200, 30, 25
    end = start - lost + new
    churn = kpi.churn_rate(lost, start)
    retention = kpi.retention_rate(end, new, start)
    assert churn is not None
    assert retention is not None
    assert retention == 1 - churn


# --------------------------------------------------------------------------- satisfaction


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        # 4 promoters (10, 9, 9, 10), 2 passives (8, 7), 4 detractors (6, 0, 3, 5).
        ([10, 9, 9, 8, 7, 6, 0, 3, 10, 5], D(0)),
        # 60 % promoters - 20 % detractors.
        ([10] * 6 + [7] * 2 + [3] * 2, D(40)),
        ([10, 9], D(100)),
        ([0, 6, 1], D(-100)),
        ([7, 8, 8], D(0)),
        ([9, 6, 6, 6], D(-50)),
        ([10, 10, 0], D(100) / D(3)),
    ],
)
def test_net_promoter_score(scores: list[int], expected: Decimal) -> None:
    assert kpi.net_promoter_score(scores) == expected


def test_net_promoter_score_from_a_counter() -> None:
    assert kpi.net_promoter_score(Counter({10: 6, 7: 2, 3: 2})) == D(40)
    assert kpi.net_promoter_score({9: 1, 6: 0}) == D(100)


def test_net_promoter_score_without_responses_is_none() -> None:
    assert kpi.net_promoter_score([]) is None
    assert kpi.net_promoter_score(Counter()) is None
    assert kpi.net_promoter_score({10: 0}) is None


@pytest.mark.parametrize("bad", [[11], [-1], [9.5], [True], ["9"]])
def test_net_promoter_score_rejects_scores_off_the_scale(bad: list[Any]) -> None:
    with pytest.raises(ValueError, match=r"0\.\.10"):
        kpi.net_promoter_score(bad)


def test_net_promoter_score_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        kpi.net_promoter_score({10: 3, 0: -1})


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([5, 4, 3, 2, 1], D(40)),
        ([5, 5, 4], D(100)),
        ([1, 2, 3], D(0)),
        ([4, 3, 3], D(100) / D(3)),
        (Counter({5: 3, 4: 1, 1: 1}), D(80)),
    ],
)
def test_customer_satisfaction_score(scores: kpi.Scores, expected: Decimal) -> None:
    assert kpi.customer_satisfaction_score(scores) == expected


def test_customer_satisfaction_score_without_responses_is_none() -> None:
    assert kpi.customer_satisfaction_score([]) is None


@pytest.mark.parametrize("bad", [[0], [6], [10]])
def test_customer_satisfaction_score_rejects_scores_off_the_scale(bad: list[int]) -> None:
    with pytest.raises(ValueError, match=r"1\.\.5"):
        kpi.customer_satisfaction_score(bad)


def test_complaint_feedback_score_is_the_mean() -> None:
    assert kpi.complaint_feedback_score([5, 4, 3]) == D(4)
    assert kpi.complaint_feedback_score([1, 2]) == D("1.5")
    assert kpi.complaint_feedback_score({5: 2, 2: 1}) == D(4)


def test_complaint_feedback_score_on_another_scale() -> None:
    assert kpi.complaint_feedback_score([10, 0, 5], scale=(0, 10)) == D(5)


def test_complaint_feedback_score_without_responses_is_none() -> None:
    assert kpi.complaint_feedback_score([]) is None


def test_complaint_feedback_score_rejects_scores_off_the_scale() -> None:
    with pytest.raises(ValueError, match=r"1\.\.5"):
        kpi.complaint_feedback_score([6])


# --------------------------------------------------------------------------- service quality


def test_resolution_rate() -> None:
    assert kpi.resolution_rate(8, 10) == D("0.8")
    assert kpi.resolution_rate(0, 3) == D(0)
    assert kpi.resolution_rate(0, 0) is None


def test_resolution_rate_rejects_more_resolved_than_received() -> None:
    with pytest.raises(ValueError, match="cannot exceed"):
        kpi.resolution_rate(11, 10)


def test_sla_compliance() -> None:
    assert kpi.sla_compliance(9, 1) == D("0.9")
    assert kpi.sla_compliance(0, 5) == D(0)
    assert kpi.sla_compliance(5, 0) == D(1)
    assert kpi.sla_compliance(0, 0) is None


def test_sla_compliance_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        kpi.sla_compliance(-1, 3)


def test_median_duration_interpolates_between_the_middle_values() -> None:
    assert kpi.median_duration(seconds(4, 1, 3, 2)) == timedelta(seconds=2.5)
    assert kpi.median_duration(seconds(7, 1, 3)) == timedelta(seconds=3)


def test_p90_duration_interpolates_like_percentile_cont() -> None:
    # position 0.9 * (4 - 1) = 2.7: 3 s + 0.7 * (4 s - 3 s).
    assert kpi.p90_duration(seconds(1, 2, 3, 4)) == timedelta(seconds=3.7)
    # position 0.9 * 10 = 9: exactly the tenth smallest value.
    assert kpi.p90_duration(seconds(*range(10, -1, -1))) == timedelta(seconds=9)


def test_percentiles_of_one_value_are_that_value() -> None:
    assert kpi.median_duration(seconds(5)) == timedelta(seconds=5)
    assert kpi.p90_duration(seconds(5)) == timedelta(seconds=5)


def test_percentiles_of_nothing_are_none() -> None:
    assert kpi.median_duration([]) is None
    assert kpi.p90_duration([]) is None


def test_percentile_cont_extremes_are_min_and_max() -> None:
    values = seconds(3, 9, 1)
    assert kpi.percentile_cont(values, 0) == timedelta(seconds=1)
    assert kpi.percentile_cont(values, 1) == timedelta(seconds=9)


def test_percentile_cont_rounds_half_to_even_microsecond() -> None:
    micro = timedelta(microseconds=1)
    assert kpi.median_duration([0 * micro, 1 * micro]) == timedelta(0)
    assert kpi.median_duration([0 * micro, 3 * micro]) == 2 * micro


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_percentile_cont_rejects_fractions_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - message varies with the parse error
        kpi.percentile_cont(seconds(1, 2), fraction)


def test_percentile_cont_rejects_negative_durations() -> None:
    with pytest.raises(ValueError, match="negative"):
        kpi.median_duration(seconds(1, -2))


# --------------------------------------------------------------------------- relationship depth


def test_interactions_per_customer() -> None:
    assert kpi.interactions_per_customer(7, 2) == D("3.5")
    assert kpi.interactions_per_customer(0, 4) == D(0)
    assert kpi.interactions_per_customer(3, 0) is None


# --------------------------------------------------------------------------- periods


@pytest.mark.parametrize(
    ("day", "granularity", "expected"),
    [
        (date(2024, 1, 3), Granularity.DAY, date(2024, 1, 3)),
        (date(2024, 1, 3), Granularity.WEEK, date(2024, 1, 1)),  # Wednesday -> Monday
        (date(2024, 1, 1), Granularity.WEEK, date(2024, 1, 1)),  # a Monday is its own start
        (date(2024, 1, 7), Granularity.WEEK, date(2024, 1, 1)),  # Sunday ends the ISO week
        (date(2021, 1, 1), Granularity.WEEK, date(2020, 12, 28)),  # ISO week 2020-W53
        (date(2024, 2, 29), Granularity.MONTH, date(2024, 2, 1)),
        (date(2024, 3, 1), Granularity.MONTH, date(2024, 3, 1)),
    ],
)
def test_period_start(day: date, granularity: Granularity, expected: date) -> None:
    assert kpi.period_start(day, granularity) == expected


def test_period_start_of_a_datetime_is_a_date() -> None:
    moment = datetime(2024, 5, 15, 13, 45)
    start = kpi.period_start(moment, Granularity.MONTH)
    assert start == date(2024, 5, 1)
    assert type(start) is date


def test_unknown_granularity_is_rejected() -> None:
    with pytest.raises(ValueError, match="quarter"):
        Granularity("quarter")


@pytest.mark.parametrize(
    ("day", "granularity", "expected"),
    [
        (date(2023, 12, 31), Granularity.DAY, date(2024, 1, 1)),
        (date(2023, 12, 27), Granularity.WEEK, date(2024, 1, 1)),
        (date(2023, 12, 15), Granularity.MONTH, date(2024, 1, 1)),
        (date(2024, 1, 31), Granularity.MONTH, date(2024, 2, 1)),
        (date(2024, 11, 30), Granularity.MONTH, date(2024, 12, 1)),
    ],
)
def test_next_period_start(day: date, granularity: Granularity, expected: date) -> None:
    assert kpi.next_period_start(day, granularity) == expected


@pytest.mark.parametrize(
    ("first", "last", "granularity", "expected"),
    [
        (
            date(2024, 2, 28),
            date(2024, 3, 1),
            Granularity.DAY,
            [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)],
        ),
        (
            date(2024, 1, 3),
            date(2024, 1, 15),
            Granularity.WEEK,
            [date(2024, 1, 1), date(2024, 1, 8), date(2024, 1, 15)],
        ),
        (
            date(2023, 11, 30),
            date(2024, 1, 2),
            Granularity.MONTH,
            [date(2023, 11, 1), date(2023, 12, 1), date(2024, 1, 1)],
        ),
        (date(2024, 5, 9), date(2024, 5, 9), Granularity.WEEK, [date(2024, 5, 6)]),
        (date(2024, 5, 9), date(2024, 5, 8), Granularity.DAY, []),
    ],
)
def test_period_starts(
    first: date, last: date, granularity: Granularity, expected: list[date]
) -> None:
    assert kpi.period_starts(first, last, granularity) == expected


def test_local_date_uses_the_reporting_time_zone() -> None:
    moment = datetime(2024, 1, 1, 23, 30, tzinfo=UTC)
    assert kpi.local_date(moment, timezone(timedelta(hours=8))) == date(2024, 1, 2)
    assert kpi.local_date(moment, timezone(timedelta(hours=-5))) == date(2024, 1, 1)


def test_local_date_rejects_naive_timestamps() -> None:
    with pytest.raises(ValueError, match="aware"):
        kpi.local_date(datetime(2024, 1, 1), UTC)


# --------------------------------------------------------------------------- properties

nps_scores = st.lists(st.integers(0, 10), min_size=1)
csat_scores = st.lists(st.integers(1, 5), min_size=1)
days = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))
granularities = st.sampled_from(Granularity)
durations = st.lists(st.integers(0, 10**12).map(lambda us: timedelta(microseconds=us)), min_size=1)


@given(nps_scores)
def test_nps_is_between_minus_100_and_100(scores: list[int]) -> None:
    score = kpi.net_promoter_score(scores)
    assert score is not None
    assert -100 <= score <= 100


@given(nps_scores)
def test_nps_from_a_counter_equals_nps_from_the_list(scores: list[int]) -> None:
    assert kpi.net_promoter_score(Counter(scores)) == kpi.net_promoter_score(scores)


@given(csat_scores)
def test_csat_is_between_0_and_100(scores: list[int]) -> None:
    score = kpi.customer_satisfaction_score(scores)
    assert score is not None
    assert 0 <= score <= 100


@given(csat_scores)
def test_feedback_mean_is_on_the_scale(scores: list[int]) -> None:
    score = kpi.complaint_feedback_score(scores)
    assert score is not None
    assert min(scores) <= score <= max(scores)


@given(st.integers(0, 10**9).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_churn_rate_is_a_fraction(lost_and_start: tuple[int, int]) -> None:
    lost, start = lost_and_start
    rate = kpi.churn_rate(lost, start)
    if start == 0:
        assert rate is None
    else:
        assert rate is not None
        assert 0 <= rate <= 1


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_sla_compliance_is_a_fraction(met: int, breached: int) -> None:
    rate = kpi.sla_compliance(met, breached)
    if met + breached == 0:
        assert rate is None
    else:
        assert rate is not None
        assert 0 <= rate <= 1


@given(durations, st.floats(0, 1))
def test_percentile_cont_matches_numpy_linear(values: list[timedelta], fraction: float) -> None:
    result = kpi.percentile_cont(values, fraction)
    assert result is not None
    micros = [v / timedelta(microseconds=1) for v in values]
    expected = float(np.percentile(micros, float(fraction) * 100, method="linear"))
    assert abs(result / timedelta(microseconds=1) - expected) <= 1


@given(durations, st.floats(0, 1), st.floats(0, 1))
def test_percentile_cont_is_monotonic_in_the_fraction(
    values: list[timedelta], q1: float, q2: float
) -> None:
    low, high = sorted((q1, q2))
    lower, upper = kpi.percentile_cont(values, low), kpi.percentile_cont(values, high)
    assert lower is not None
    assert upper is not None
    assert min(values) <= lower <= upper <= max(values)


@given(days, granularities)
def test_a_day_lies_in_its_period(day: date, granularity: Granularity) -> None:
    start = kpi.period_start(day, granularity)
    assert start <= day < kpi.next_period_start(day, granularity)
    assert kpi.period_start(start, granularity) == start


@given(days, granularities)
def test_period_starts_have_the_right_shape(day: date, granularity: Granularity) -> None:
    start = kpi.period_start(day, granularity)
    if granularity is Granularity.WEEK:
        assert start.isoweekday() == 1
        assert start.isocalendar()[:2] == day.isocalendar()[:2]
    if granularity is Granularity.MONTH:
        assert (start.year, start.month, start.day) == (day.year, day.month, 1)


@given(days, st.integers(0, 120), granularities)
def test_period_starts_cover_the_range_without_gaps(
    first: date, span: int, granularity: Granularity
) -> None:
    last = first + timedelta(days=span)
    starts = kpi.period_starts(first, last, granularity)
    assert starts[0] == kpi.period_start(first, granularity)
    assert starts[-1] == kpi.period_start(last, granularity)
    for earlier, later in pairwise(starts):
        assert kpi.next_period_start(earlier, granularity) == later


# --------------------------------------------------------------------------- headline cards


@pytest.mark.parametrize(
    ("day", "today", "granularity", "expected"),
    [
        # The 10th of March: the 1st-10th against the 1st-10th of February.
        ("2026-03-10", "2026-03-10", "month", ("03-01", "03-10", "02-01", "02-10", "to_date")),
        # The 30th: February has no 30th, so all of it.
        ("2026-03-30", "2026-03-30", "month", ("03-01", "03-30", "02-01", "02-28", "to_date")),
        # The month's last day: the whole month against the whole month before.
        ("2026-03-31", "2026-03-31", "month", ("03-01", "03-31", "02-01", "02-28", "whole")),
        # A month already over, asked for later.
        ("2026-02-15", "2026-03-10", "month", ("02-01", "02-28", "01-01", "01-31", "whole")),
        # Wednesday: Monday-Wednesday against Monday-Wednesday of the week before.
        ("2026-11-25", "2026-11-25", "week", ("11-23", "11-25", "11-16", "11-18", "to_date")),
        # A day is not cut by the hour: today against yesterday.
        ("2026-11-25", "2026-11-25", "day", ("11-25", "11-25", "11-24", "11-24", "whole")),
    ],
)
def test_headline_cards_compare_like_for_like(
    day: str, today: str, granularity: str, expected: tuple[str, ...]
) -> None:
    got = kpi.like_for_like(
        date.fromisoformat(day), date.fromisoformat(today), kpi.Granularity(granularity)
    )
    basis = {"to_date": "period_to_date", "whole": "whole_periods"}[expected[4]]
    dates = [date.fromisoformat(f"2026-{md}") for md in expected[:4]]
    assert (got.start, got.end, got.previous_start, got.previous_end) == tuple(dates)
    assert got.basis == basis
