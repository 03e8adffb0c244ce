"""What the lifetime values mean (issue 14, items 6, 7 and 9), pure, against hand calculations.

6. The simple CLV measures a purchase rate over at least the minimum observation period and
   uses the base's averages until a customer's own have been observed that long.
7. The predictive horizon is a length of time: a model fitted in days predicts over the same
   weeks as one fitted in weeks.
9. Customer equity is unknown (None), not 0, while there is no spend model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from services.reporting.metrics import METRICS, Cell, TierValue
from services.scoring.clv import BgNbdParams, GammaGammaParams
from services.scoring.population import (
    Models,
    Population,
    Reference,
    ScoringConfig,
    score,
    simple_clv,
    simple_clv_base,
)
from services.scoring.rescore import _tier_summaries
from services.scoring.store import POPULATION_FIELDS
from shared.events import TierSummary

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
CONFIG = ScoringConfig()  # min observation 90 days, default lifespan 156 weeks, margin 1


def customers(**columns: list[float]) -> Population:
    """A population from the columns given; the others are 0 (they play no part here)."""
    n = len(next(iter(columns.values())))
    zeros = np.zeros(n)
    fields: dict[str, Any] = dict.fromkeys(POPULATION_FIELDS, zeros)
    fields |= {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    return Population(as_of=AS_OF, customer_id=ids, **fields)


# ---- 6. simple CLV ---------------------------------------------------------------------------


def test_one_order_today_is_not_a_weekly_buyer() -> None:
    # One order of 100 today, alone in the base: the rate is 1 order over the 90-day minimum,
    # 1 / (90 / 7) a week; the value the base's, 100; lifespan the default 156 weeks.
    today = customers(days_since_first=[0], days_since_last=[0], orders=[1], net_spent=[100])
    base = simple_clv_base(today, CONFIG)
    assert simple_clv(today, CONFIG, base)[0] == pytest.approx(7 / 90 * 100 * 156)  # 1,213.33


def test_a_weekly_buyer_of_two_years_keeps_its_own_rate() -> None:
    # Orders every 7 days for 728 days (105 orders of 100), with a new one-order customer.
    weekly_and_new = customers(
        days_since_first=[728, 0],
        days_since_last=[0, 0],
        orders=[105, 1],
        net_spent=[10_500, 100],
        span_days=[728, 0],
    )
    values = simple_clv(weekly_and_new, CONFIG, simple_clv_base(weekly_and_new, CONFIG))
    # Own: 105 orders / 104 weeks x 100 x 156 weeks.
    assert values[0] == pytest.approx(105 / 104 * 100 * 156)  # 15,750
    # New: the base's rate, 106 orders / ((728 + 90) / 7) weeks, and value 10,600 / 106.
    assert values[1] == pytest.approx(106 / (818 / 7) * 100 * 156)  # 14,149.6...


def test_lifespan_is_measured_once_enough_lifetimes_ended() -> None:
    # 25 customers silent for 400 days (> the 365-day churn window) were active 70 days each;
    # 5 still buying have been active 140 days. Active weeks (25 x 70 + 5 x 140) / 7 = 350
    # over 25 ended lifetimes: 14 weeks. Each bought 10 times for 1,000 over 182+ days.
    ended, running = 25, 5
    base_of = customers(
        days_since_first=[470.0] * ended + [182.0] * running,
        days_since_last=[400.0] * ended + [42.0] * running,
        orders=[10.0] * (ended + running),
        net_spent=[1000.0] * (ended + running),
        span_days=[70.0] * ended + [140.0] * running,
    )
    base = simple_clv_base(base_of, CONFIG)
    assert base.measured
    assert base.lifespan_weeks == pytest.approx(14.0)
    values = simple_clv(base_of, CONFIG, base)
    assert values[0] == pytest.approx(10 / (470 / 7) * 100 * 14)
    assert values[-1] == pytest.approx(10 / (182 / 7) * 100 * 14)


def test_too_few_ended_lifetimes_keep_the_configured_lifespan() -> None:
    few = customers(
        days_since_first=[470.0] * 19, days_since_last=[400.0] * 19, span_days=[70.0] * 19
    )
    base = simple_clv_base(few, CONFIG)
    assert not base.measured
    assert base.lifespan_weeks == 156.0


def test_one_customer_scored_live_uses_the_batchs_averages() -> None:
    pop = customers(
        days_since_first=[0, 728], days_since_last=[0, 0], orders=[1, 105], net_spent=[50, 10_500]
    )
    reference = Reference.of(pop, CONFIG)
    alone = customers(days_since_first=[0], days_since_last=[0], orders=[1], net_spent=[50])
    # The base's rate 106 / (818 / 7) and value 10,550 / 106, not the customer's own.
    expected = 106 / (818 / 7) * (10_550 / 106) * 156
    assert score(alone, reference, None, CONFIG).simple_clv[0] == pytest.approx(expected)


# ---- 7. the horizon is a length of time ------------------------------------------------------

WEEK_MODEL = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)  # [FHL05]'s CDNOW, weeks
# The same customers in days: lambda per day = lambda per week / 7, so with lambda ~ Gamma(r,
# rate alpha) the rate parameter in days is 7 alpha; the dropout p per purchase is unitless.
DAY_MODEL = BgNbdParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)
SPEND = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)


def test_a_model_in_days_looks_as_far_ahead_as_one_in_weeks() -> None:
    pop = customers(
        days_since_first=[0.0, 70.0, 300.0, 700.0],
        days_since_last=[0.0, 14.0, 200.0, 7.0],
        purchase_days=[1.0, 3.0, 2.0, 30.0],
        span_days=[0.0, 56.0, 100.0, 693.0],
        repeat_spend=[0.0, 40.0, 25.0, 60.0],
        orders=[1.0, 3.0, 2.0, 30.0],
        net_spent=[20.0, 120.0, 50.0, 1800.0],
    )
    reference = Reference.of(pop, CONFIG)
    weeks = score(pop, reference, Models(1, "week", WEEK_MODEL, SPEND), CONFIG)
    days = score(pop, reference, Models(2, "day", DAY_MODEL, SPEND), CONFIG)
    # Before the fix the day model read the 52 of the horizon as 52 days: about a seventh.
    np.testing.assert_allclose(days.expected_purchases, weeks.expected_purchases, rtol=1e-9)
    np.testing.assert_allclose(days.predicted_clv, weeks.predicted_clv, rtol=1e-9)
    np.testing.assert_allclose(days.p_alive, weeks.p_alive, rtol=1e-12)


def test_expected_purchases_of_a_new_customer_by_hand() -> None:
    # A customer whose first purchase is now (x = t_x = T = 0): [FHL05] eq. 10 is eq. 9,
    # E[Y(t)] = (a + b - 1) / (a - 1) [1 - (alpha / (alpha + t))^r 2F1(r, b; a + b - 1; z)],
    # z = t / (alpha + t). With r = 2, a = 2, b = 1: 2F1(2, 1; 2; z) = (1 - z)^-1 = (alpha + t)
    # / alpha, so E[Y(t)] = 2 [1 - alpha / (alpha + t)] = 2 t / (alpha + t). 26 weeks with
    # alpha = 10 per week: 52 / 36; the same model in days (alpha = 70) over 182 days too.
    weekly = BgNbdParams(r=2.0, alpha=10.0, a=2.0, b=1.0)
    daily = BgNbdParams(r=2.0, alpha=70.0, a=2.0, b=1.0)
    new = customers(days_since_first=[0.0], days_since_last=[0.0], purchase_days=[1.0])
    reference = Reference.of(new, CONFIG)
    for models in (Models(1, "week", weekly, None), Models(2, "day", daily, None)):
        found = score(new, reference, models, CONFIG, horizon_weeks=26)
        assert found.expected_purchases[0] == pytest.approx(2 * 26 / (10 + 26), rel=1e-9)


# ---- 9. customer equity is unknown without a spend model -------------------------------------


def test_tier_summary_without_lifetime_values_carries_no_equity() -> None:
    tiers = np.array(["gold", "gold", "potential"])
    events = _tier_summaries(tiers, np.full(3, np.nan), AS_OF, run_id=1, horizon_weeks=52)
    for event in events:
        assert isinstance(event.data, TierSummary)
        assert event.data.customer_equity is None
        assert event.data.average_clv is None
    known = _tier_summaries(tiers, np.array([100.0, 50.5, 7.25]), AS_OF, 2, horizon_weeks=26)
    data = {e.data.tier: e.data for e in known if isinstance(e.data, TierSummary)}
    assert data["gold"].customer_equity == Decimal("150.5")
    assert data["potential"].customer_equity == Decimal("7.25")
    assert data["gold"].horizon_weeks == 26


def test_old_tier_summaries_stay_valid() -> None:
    old = {"as_of": AS_OF.isoformat(), "tier": "gold", "customers": 3, "customer_equity": "0.00"}
    assert TierSummary.model_validate(old).customer_equity == Decimal("0.00")
    assert TierSummary.model_validate(old | {"customer_equity": None}).customer_equity is None


def test_reporting_shows_unknown_equity_and_no_growth_from_it() -> None:
    equity, growth = METRICS["customer_equity"], METRICS["customer_equity_growth"]
    unknown, known = Cell(), Cell()
    unknown.value.tiers = [
        TierValue("gold", 2, None, None),
        TierValue("potential", 3, None, None),
    ]
    known.value.tiers = [
        TierValue("gold", 2, Decimal("300"), Decimal("150")),
        TierValue("potential", 3, Decimal("90"), Decimal("30")),
    ]
    assert equity.value(unknown, None) is None
    assert equity.value(known, None) == Decimal("390")
    # Not -100% against a period whose equity was known.
    assert growth.value(unknown, known) is None
    assert growth.value(known, known) == 0
