"""The customer's classes explained (issue 14, item 11): the rule that applied and the numbers
it used, worked out by hand here; and on a random base every explained code is the code the
batch rules scored."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from services.scoring import explain
from services.scoring.clv import BgNbdParams, GammaGammaParams
from services.scoring.customer_classes import man_lead_class
from services.scoring.explain import CustomerFacts
from services.scoring.population import Models, Population, Reference, ScoringConfig, score

CONFIG = ScoringConfig()  # defaults: prior gap 60 days (weight 1), 3 gaps, churn 365 days

# A loyal buyer: 10 purchase days over 240 days, so the expected gap is
# (240 + 1 x 60) / (10 - 1 + 1) = 30 days; last purchase 12 days ago.
LOYAL = CustomerFacts(
    recency_score=5,
    frequency_score=4,
    monetary_score=5,
    days_since_last=12.0,
    days_since_first=252.0,
    orders=10,
    net_spent=900.0,
    purchase_days=10,
    span_days=240.0,
    recent_purchase_days=3,
    previous_purchase_days=3,
    recent_spend=270.0,
    previous_spend=270.0,
    recent_interactions=0,
    previous_interactions=0,
    interactions=0,
    complaints=0,
    strategic_value=0.0,
    p_alive=0.9,
    churn_risk=0.1,
    mvc_threshold=500.0,
)


def test_gold_says_its_scores_its_silence_and_its_rhythm() -> None:
    got = explain.explain_tier(LOYAL, CONFIG)
    assert (got.code, got.rule) == ("gold", "tier.rfm_rule")
    assert got.numbers["expected_gap_days"] == pytest.approx(30.0)
    assert got.numbers["days_since_last"] == 12.0
    assert got.numbers["rule_index"] == 0  # the first default rule: R>=3, F>=4, M>=4
    assert got.en == (
        "Gold: R=5 F=4 M=5 (rule 1: R>=3, F>=4, M>=4), last purchase 12 days ago, "
        "expected gap 30 days"
    )
    assert got.zh.startswith("黄金客户：R=5 F=4 M=5")


def test_a_gold_customer_silent_beyond_three_gaps_is_potential_and_says_why() -> None:
    silent = replace(LOYAL, days_since_last=91.0)  # 91 > 3 x 30
    got = explain.explain_tier(silent, CONFIG)
    assert (got.code, got.rule) == ("potential", "tier.silent_beyond_rhythm")
    assert got.numbers["by_scores"] == "gold"
    assert "91 days ago" in got.en
    assert "3 expected gaps of 30 days" in got.en
    at_the_edge = explain.explain_tier(replace(LOYAL, days_since_last=90.0), CONFIG)
    assert at_the_edge.code == "gold"  # 90 is not more than 3 x 30


def test_past_the_churn_window_the_tier_is_forgotten_whatever_the_scores() -> None:
    got = explain.explain_tier(replace(LOYAL, days_since_last=365.0), CONFIG)
    assert (got.code, got.rule) == ("forgotten", "tier.churn_window")
    assert "365 days" in got.en
    assert "Gold" in got.en


def test_value_class_shows_its_sum() -> None:
    # 40 spent, one complaint (25) and one interaction (2): net 13, under the threshold.
    modest = replace(LOYAL, net_spent=40.0, complaints=1, interactions=1)
    got = explain.explain_value_class(modest, CONFIG)
    assert (got.code, got.rule) == ("stc", "value.second_tier")
    assert got.numbers["cost_to_serve"] == 27.0
    assert got.numbers["net_value"] == 13.0
    # 20 spent, one complaint: 20 - 25 = -5.
    below = explain.explain_value_class(replace(modest, net_spent=20.0, interactions=0), CONFIG)
    assert (below.code, below.rule, below.numbers["net_value"]) == ("bz", "value.below_zero", -5.0)
    assert "net value -5.00" in below.en


def test_strategic_value_counts_towards_the_most_valuable_class() -> None:
    # 100 spent + 450 strategic = 550 >= the threshold 500.
    referrer = replace(LOYAL, net_spent=100.0, strategic_value=450.0)
    got = explain.explain_value_class(referrer, CONFIG)
    assert (got.code, got.rule, got.numbers["net_value"]) == ("mvc", "value.top_share", 550.0)
    assert "strategic 450.00" in got.en
    assert explain.explain_value_class(replace(referrer, strategic_value=0.0), CONFIG).code == "stc"


@pytest.mark.parametrize(
    ("changes", "code", "rule"),
    [
        ({}, "maturity", "lifecycle.stable"),  # 3 against 3 purchase days
        ({"recent_purchase_days": 2}, "decline", "lifecycle.falling"),  # 2 < 0.75 x 3
        ({"recent_purchase_days": 4}, "growth", "lifecycle.rising"),  # 4 >= 1.25 x 3
        ({"days_since_last": 61.0}, "decline", "lifecycle.silent_beyond_rhythm"),  # > 2 x 30
        ({"days_since_last": 365.0}, "churned", "lifecycle.churn_window"),
        ({"days_since_first": 80.0}, "exploration", "lifecycle.first_purchases"),  # < 90
        # 3 purchase days over 240 days: gap (240 + 60) / 3 = 100; a 90-day window expects
        # fewer than 2, so the windows are not judged.
        ({"purchase_days": 3, "days_since_last": 50.0}, "maturity", "lifecycle.slow_rhythm"),
    ],
)
def test_lifecycle_names_the_branch_that_decided(
    changes: dict[str, float], code: str, rule: str
) -> None:
    got = explain.explain_lifecycle(replace(LOYAL, **changes), CONFIG)  # type: ignore[arg-type]
    assert (got.code, got.rule) == (code, rule)


def test_churn_risk_shows_its_formula() -> None:
    # P(alive) 0.6; purchase days 1 against 2 (fall 0.5), interactions 0 against 2 (fall 1):
    # risk = 1 - 0.6 (1 - 0.5 sqrt(0.5 x 1)) = 0.6121...
    risk = 1 - 0.6 * (1 - 0.5 * math.sqrt(0.5))
    facts = replace(
        LOYAL,
        p_alive=0.6,
        recent_purchase_days=1,
        previous_purchase_days=2,
        recent_interactions=0,
        previous_interactions=2,
        churn_risk=risk,
    )
    got = explain.explain_churn(facts, CONFIG)
    assert (got.code, got.rule) == ("high", "churn.high")
    assert got.numbers["purchase_fall"] == 0.5
    assert got.numbers["interaction_fall"] == 1.0
    assert "0.61 = 1 - 0.60 x (1 - 0.5 x sqrt(0.50 x 1.00))" in got.en
    without_model = explain.explain_churn(replace(LOYAL, p_alive=None, churn_risk=0.0), CONFIG)
    assert without_model.code == "low"
    assert "P(alive) taken as 1" in without_model.en


# The MAN rule as the course states it, written out here.
MAN_ACTIONS = {
    "M+A+N": "pursue",
    "M+A+n": "contact_with_skill",
    "M+a+N": "find_decision_maker",
    "m+A+N": "check_credit",
    "m+a+N": "nurture",
    "m+A+n": "nurture",
    "M+a+n": "nurture",
    "m+a+n": "stop",
}


@pytest.mark.parametrize(("code", "action"), MAN_ACTIONS.items())
def test_man_class_names_its_action(code: str, action: str) -> None:
    money, authority, need = (letter.isupper() for letter in code.split("+"))
    got = explain.explain_man(man_lead_class(money, authority, need))
    assert (got.code, got.rule) == (code, f"man.{action}")
    assert got.numbers == {"money": money, "authority": authority, "need": need}
    assert got.en.startswith(f"{code}: ")
    assert got.zh.startswith(f"{code}：")


def random_base(n: int, seed: int) -> Population:
    rng = np.random.default_rng(seed)
    first = rng.integers(1, 900, n).astype(float)
    days = rng.integers(1, 15, n).astype(float)
    span = np.minimum(first - 1, rng.integers(0, 800, n)).astype(float) * (days > 1)
    orders = days + rng.integers(0, 3, n).astype(float)
    spent = np.round(orders * rng.uniform(5, 200, n), 2)
    return Population(
        as_of=datetime(2026, 6, 30, tzinfo=UTC),
        customer_id=np.array([f"c{i}" for i in range(n)], dtype=object),
        days_since_last=first - span,
        days_since_first=first,
        orders=orders,
        net_spent=spent,
        purchase_days=days,
        span_days=span,
        repeat_spend=np.where(days > 1, spent / orders, 0.0),
        recent_purchase_days=rng.integers(0, 4, n).astype(float),
        previous_purchase_days=rng.integers(0, 4, n).astype(float),
        recent_spend=rng.uniform(0, 100, n),
        previous_spend=rng.uniform(0, 100, n),
        recent_interactions=rng.integers(0, 5, n).astype(float),
        previous_interactions=rng.integers(0, 5, n).astype(float),
        interactions=rng.integers(0, 20, n).astype(float),
        complaints=rng.integers(0, 3, n).astype(float),
        strategic_value=rng.choice([0.0, 0.0, 500.0], n),
    )


@pytest.mark.parametrize("with_models", [True, False])
def test_every_explained_code_is_the_code_the_batch_scored(with_models: bool) -> None:
    base = random_base(3000, seed=7)
    reference = Reference.of(base, CONFIG)
    models = (
        Models(1, "week", BgNbdParams(0.24, 4.4, 0.79, 2.4), GammaGammaParams(6.25, 3.74, 15.4))
        if with_models
        else None
    )
    scores = score(base, reference, models, CONFIG)
    rules_seen: set[str] = set()
    for i in range(base.size):
        facts = explain.facts_of(base, scores, i, reference.mvc_threshold)
        explained = explain.explain_all(facts, CONFIG)
        for kind, found in explained.items():
            assert found["code"] == str(getattr(scores, kind)[i]), (kind, i, found)
            rules_seen.add(found["rule"])
    # The base reaches most branches, so the agreement is not that of one branch.
    assert {"tier.rfm_rule", "tier.silent_beyond_rhythm", "tier.churn_window"} <= rules_seen
    assert {"value.below_zero", "value.second_tier", "value.top_share"} <= rules_seen
    assert {
        "lifecycle.churn_window",
        "lifecycle.silent_beyond_rhythm",
        "lifecycle.first_purchases",
    } <= rules_seen
