"""The KPI formulas of issue 15 items 11-12: contact shares, complaints per 1,000 orders,
cohort retention and its month arithmetic, against hand-worked cases."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reporting import kpi

D = Decimal


def test_contact_share() -> None:
    assert kpi.contact_share(3, 12) == D("0.25")
    assert kpi.contact_share(0, 5) == 0
    assert kpi.contact_share(0, 0) is None  # no contact: no share
    with pytest.raises(ValueError, match="cannot exceed"):
        kpi.contact_share(6, 5)
    with pytest.raises(ValueError, match="negative"):
        kpi.contact_share(-1, 5)


def test_complaints_per_thousand_orders() -> None:
    assert kpi.complaints_per_thousand_orders(3, 1200) == D("2.5")
    assert kpi.complaints_per_thousand_orders(5, 2) == D(2500)  # not a share: above 1,000
    assert kpi.complaints_per_thousand_orders(0, 40) == 0
    assert kpi.complaints_per_thousand_orders(4, 0) is None


@pytest.mark.parametrize(
    ("first", "later", "months"),
    [
        (date(2025, 6, 1), date(2025, 6, 30), 0),
        (date(2025, 6, 30), date(2025, 8, 1), 2),
        (date(2024, 11, 15), date(2025, 2, 1), 3),
        (date(2025, 3, 1), date(2024, 3, 1), -12),
    ],
)
def test_months_between(first: date, later: date, months: int) -> None:
    assert kpi.months_between(first, later) == months


@pytest.mark.parametrize(
    ("first", "months", "expected"),
    [
        (date(2025, 6, 1), 0, date(2025, 6, 1)),
        (date(2025, 6, 20), 7, date(2026, 1, 1)),
        (date(2025, 1, 1), -1, date(2024, 12, 1)),
        (date(2025, 12, 1), -11, date(2025, 1, 1)),
    ],
)
def test_add_months(first: date, months: int, expected: date) -> None:
    assert kpi.add_months(first, months) == expected


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(2999, 1, 1)), st.integers(-120, 120))
def test_add_months_and_months_between_agree(first: date, months: int) -> None:
    later = kpi.add_months(first, months)
    assert later.day == 1
    assert kpi.months_between(first, later) == months


def test_cohort_retention() -> None:
    assert kpi.cohort_retention(40, 40) == 1  # month 0: the whole cohort bought
    assert kpi.cohort_retention(6, 40) == D("0.15")
    assert kpi.cohort_retention(0, 0) is None  # an empty cohort
    with pytest.raises(ValueError, match="cannot exceed"):
        kpi.cohort_retention(41, 40)
