"""Value classes weigh margin against the cost to serve (issue 14, item 4).

Every expectation is worked out by hand from the documented defaults: margin share 1.0
(SCORING_MARGIN), 25 per complaint and 2 per interaction (an agent hour at 25, a complaint
about an hour, an interaction about five minutes), the top fifth by net value is MVC.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.scoring import customer_classes
from services.scoring.customer_classes import ValueClass, ValueClassConfig
from services.scoring.population import Population, Reference, ScoringConfig, score
from services.scoring.settings import ScoringSettings

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)


def customers(spent: list[float], complaints: list[int], interactions: list[int]) -> Population:
    """One-order customers who bought 10 days ago; only spend and service costs differ."""
    n = len(spent)
    ones, zeros = np.ones(n), np.zeros(n)
    return Population(
        as_of=AS_OF,
        customer_id=np.array([f"c{i}" for i in range(n)], dtype=object),
        days_since_last=np.full(n, 10.0),
        days_since_first=np.full(n, 10.0),
        orders=ones,
        net_spent=np.asarray(spent, dtype=np.float64),
        purchase_days=ones,
        span_days=zeros,
        repeat_spend=zeros,
        recent_purchase_days=ones,
        previous_purchase_days=zeros,
        recent_spend=np.asarray(spent, dtype=np.float64),
        previous_spend=zeros,
        recent_interactions=np.asarray(interactions, dtype=np.float64),
        previous_interactions=zeros,
        interactions=np.asarray(interactions, dtype=np.float64),
        complaints=np.asarray(complaints, dtype=np.float64),
    )


def value_classes_of(pop: Population, config: ScoringConfig) -> list[str]:
    return score(pop, Reference.of(pop, config), None, config).value_class.tolist()


def test_the_default_costs_are_an_agents_time() -> None:
    defaults = ScoringSettings().scoring_config()
    assert defaults.margin == 1.0
    assert defaults.value.cost_per_complaint == 25.0
    assert defaults.value.cost_per_interaction == 2.0


def test_a_40_spender_with_one_complaint_is_not_below_zero_under_the_defaults() -> None:
    # 40-spender, one complaint and the call it came in on: 1.0 x 40 - 25 - 2 = 13 >= 0.
    # (The old rule, revenue less 50 a complaint and 5 an interaction: 40 - 55 < 0, BZ.)
    # A 500-spender with nothing to serve: 500, the top fifth (ceil(0.2 x 3) = 1): MVC.
    # A 20-spender with one complaint: 20 - 25 = -5, costs more than they bring: BZ.
    pop = customers([40.0, 500.0, 20.0], complaints=[1, 0, 1], interactions=[1, 0, 0])
    config = ScoringSettings().scoring_config()
    assert value_classes_of(pop, config) == ["stc", "mvc", "bz"]


def test_margin_not_revenue_is_weighed_against_the_cost() -> None:
    # SCORING_MARGIN 0.3: what each brings is 30% of their spend.
    # 100-spender, one complaint, three interactions: 30 - 25 - 6 = -1: BZ, although their
    #   revenue (100) is far above the cost (31).
    # 40-spender with one complaint: 12 - 25 = -13: BZ.
    # 1000-spender, two complaints: 300 - 50 = 250, the top fifth: MVC.
    # 200-spender, nothing to serve: 60: STC.
    # 85-spender, one complaint: 25.5 - 25 = 0.5 >= 0: STC.
    pop = customers(
        [100.0, 40.0, 1000.0, 200.0, 85.0], complaints=[1, 1, 2, 0, 1], interactions=[3, 0, 0, 0, 0]
    )
    config = ScoringSettings(scoring_margin=0.3).scoring_config()
    assert value_classes_of(pop, config) == ["bz", "bz", "mvc", "stc", "stc"]
    # ceil(0.2 x 5) = 1: the largest net value, 250, is the MVC threshold.
    assert Reference.of(pop, config).mvc_threshold == pytest.approx(250.0)


def test_net_values_by_hand() -> None:
    config = ValueClassConfig(cost_per_complaint=25.0, cost_per_interaction=2.0)
    net = customer_classes.net_values([40.0, 100.0], [1, 2], [1, 5], config, margin=0.5)
    # 0.5 x 40 - 25 - 2 = -7; 0.5 x 100 - 50 - 10 = -10.
    assert net.tolist() == pytest.approx([-7.0, -10.0])
    net = customer_classes.net_values([40.0], [1], [0], config, margin=0.5, strategic_values=[10.0])
    assert net.tolist() == pytest.approx([5.0])  # 20 + 10 - 25


def test_value_classes_of_a_population_use_the_margin() -> None:
    # margin 0.5, 10 an interaction: nets 40, 90, -5 (0.5 x 10 - 10); threshold ceil(0.6)=1: 90.
    config = ValueClassConfig(cost_per_complaint=0.0, cost_per_interaction=10.0)
    net = customer_classes.net_values(
        [100.0, 200.0, 10.0], [0, 0, 0], [1, 1, 1], config, margin=0.5
    )
    threshold = customer_classes.mvc_threshold(net, config)
    labels = customer_classes.classes_of_net_values(net, threshold)
    assert threshold == 90.0
    assert labels.tolist() == ["stc", "mvc", "bz"]
    assert (
        customer_classes.value_class(27.0, 27.0, threshold=90.0) is ValueClass.STC
    )  # net 0: not BZ
