"""Tests of services.scoring.customer_classes: tiers, value classes, lifecycle, MAN, churn risk."""

from __future__ import annotations

import itertools
import math
from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring import customer_classes
from services.scoring.customer_classes import (
    ChurnRiskConfig,
    LeadAction,
    LifecycleConfig,
    LifecycleStage,
    RhythmConfig,
    RiskLevel,
    Tier,
    TierConfig,
    TierRule,
    ValueClass,
    ValueClassConfig,
)
from services.scoring.rfm import Segment
from tests import scoring_oracles as oracles
from tests.scoring_oracles import PurchaseActivity

ALL_SCORES = list(itertools.product(range(1, 6), repeat=3))
AS_OF = date(2024, 12, 31)


def tier_of(*args: Any) -> Tier:
    """One customer's tier by the service's rule (customer_classes.tiers_for)."""
    return Tier(customer_classes.tiers_for(*args).item())


def stage_of(activity: PurchaseActivity, config: LifecycleConfig) -> LifecycleStage:
    """One customer's stage by the service's rule (customer_classes.lifecycle_stages)."""
    a = activity
    stages = customer_classes.lifecycle_stages(
        a.purchase_days,
        a.days_since_first,
        a.days_since_last,
        a.recent_purchase_days,
        a.previous_purchase_days,
        a.recent_spend,
        a.previous_spend,
        a.span_days,
        config,
    )
    return LifecycleStage(stages.item())


def value_classes(
    revenue: list[float],
    complaints: list[int],
    interactions: list[int],
    config: ValueClassConfig,
    strategic_values: list[float] | float = 0.0,
) -> tuple[Any, float]:
    """A population's value classes and MVC threshold, composed as population.score does."""
    net = customer_classes.net_values(
        revenue, complaints, interactions, config, 1.0, strategic_values
    )
    threshold = customer_classes.mvc_threshold(net, config)
    return customer_classes.classes_of_net_values(net, threshold), threshold


# --------------------------------------------------------------------------------------------
# Tiers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "tier"),
    [
        ((5, 5, 5), Tier.GOLD),
        ((3, 4, 4), Tier.GOLD),
        ((2, 5, 5), Tier.FORGOTTEN),  # a former best customer gone quiet: win back
        ((5, 4, 3), Tier.DEVELOPING),  # frequent but not yet high spend
        ((4, 3, 1), Tier.DEVELOPING),
        ((4, 1, 3), Tier.DEVELOPING),
        ((5, 2, 2), Tier.POTENTIAL),
        ((3, 1, 1), Tier.POTENTIAL),
        ((1, 1, 1), Tier.FORGOTTEN),
    ],
)
def test_default_tier_rules(scores: tuple[int, int, int], tier: Tier) -> None:
    assert tier_of(*scores) is tier


def test_recency_alone_moves_a_customer_to_forgotten() -> None:
    assert tier_of(3, 5, 5) is Tier.GOLD
    assert tier_of(2, 5, 5) is Tier.FORGOTTEN


def test_first_matching_rule_wins_and_fallback_applies() -> None:
    config = TierConfig(
        rules=(
            TierRule(Tier.DEVELOPING, min_frequency=2),
            TierRule(Tier.GOLD, min_monetary=5),  # shadowed for F >= 2
        ),
        fallback=Tier.POTENTIAL,
    )
    assert tier_of(1, 3, 5, config) is Tier.DEVELOPING
    assert tier_of(1, 1, 5, config) is Tier.GOLD
    assert tier_of(1, 1, 1, config) is Tier.POTENTIAL


def test_max_bounds_of_a_rule() -> None:
    config = TierConfig(rules=(TierRule(Tier.POTENTIAL, max_recency=2, max_monetary=1),))
    assert tier_of(2, 5, 1, config) is Tier.POTENTIAL
    assert tier_of(3, 5, 1, config) is Tier.FORGOTTEN


@pytest.mark.parametrize(
    "config",
    [
        TierConfig(),
        TierConfig(
            rules=(
                TierRule(Tier.POTENTIAL, max_recency=2, min_frequency=4),
                TierRule(Tier.GOLD, min_monetary=4),
            ),
            fallback=Tier.DEVELOPING,
        ),
    ],
)
def test_vectorised_tiers_match_the_scalar_rule(config: TierConfig) -> None:
    recency, frequency, monetary = (np.array(col) for col in zip(*ALL_SCORES, strict=True))
    expected = [oracles.tier_for(r, f, m, config).value for r, f, m in ALL_SCORES]
    assert customer_classes.tiers_for(recency, frequency, monetary, config).tolist() == expected


def test_expected_gap_by_hand() -> None:
    # (span + 60) / (purchase days - 1 + 1): one-time 60; weekly for a year (53 days, span
    # 364) (364 + 60) / 53 = 8; twice a day apart (1 + 60) / 2 = 30.5.
    gaps = customer_classes.expected_gap_days([1, 53, 2], [0, 364, 1], RhythmConfig())
    np.testing.assert_allclose(gaps, [60.0, 8.0, 30.5])
    heavier = RhythmConfig(prior_gap_days=30.0, prior_weight=4.0)
    assert float(customer_classes.expected_gap_days(5, 100, heavier)) == pytest.approx(220 / 8)


@pytest.mark.parametrize(
    ("silent", "purchase_days", "span", "tier"),
    [
        (0.0, 53, 364, Tier.GOLD),
        (24.0, 53, 364, Tier.GOLD),  # g = 8: 24 is not more than 3 g
        (24.5, 53, 364, Tier.POTENTIAL),  # silent past 3 own gaps: needs re-activation
        (180.0, 1, 0, Tier.GOLD),  # a one-time buyer: g = 60, 3 g = 180
        (180.5, 1, 0, Tier.POTENTIAL),
        (364.9, 2, 700, Tier.GOLD),  # g = 380: still within its slow rhythm
        (365.0, 2, 700, Tier.FORGOTTEN),  # past the churn window, whatever the rhythm
    ],
)
def test_silence_bounds_the_quintile_tier(
    silent: float, purchase_days: int, span: float, tier: Tier
) -> None:
    assert tier_of(5, 5, 5, TierConfig(), silent, purchase_days, span) is tier


def test_silence_leaves_potential_and_forgotten_alone() -> None:
    # Only gold and developing are demoted by the rhythm; potential stays, forgotten stays.
    assert tier_of(5, 1, 1, TierConfig(), 300.0, 1, 0) is Tier.POTENTIAL
    assert tier_of(4, 4, 2, TierConfig(), 30.0, 53, 364) is Tier.POTENTIAL
    assert tier_of(1, 5, 5, TierConfig(), 1.0, 53, 364) is Tier.FORGOTTEN


def test_silence_settings_move_the_bounds() -> None:
    config = TierConfig(churn_after_days=200, silent_after_gaps=1.0)
    assert tier_of(5, 5, 5, config, 61.0, 1, 0) is Tier.POTENTIAL  # 61 > 1 x 60
    assert tier_of(5, 5, 5, config, 200.0, 2, 700) is Tier.FORGOTTEN
    with pytest.raises(ValueError, match="positive"):
        TierConfig(silent_after_gaps=0.0)


def test_vectorised_silence_matches_the_scalar_rule() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    r, f, m = (rng.integers(1, 6, n) for _ in range(3))
    purchase_days = rng.integers(1, 40, n)
    span = np.where(purchase_days > 1, rng.uniform(0, 900, n), 0.0)
    silent = rng.uniform(0, 500, n)
    vectorised = customer_classes.tiers_for(r, f, m, TierConfig(), silent, purchase_days, span)
    for i in range(n):
        args = (int(r[i]), int(f[i]), int(m[i]), TierConfig())
        scalar = oracles.tier_for(*args, float(silent[i]), int(purchase_days[i]), float(span[i]))
        assert vectorised[i] == scalar.value


def test_every_tier_has_a_playbook_with_its_chinese_term() -> None:
    assert set(customer_classes.TIER_PLAYBOOKS) == set(Tier)
    assert customer_classes.TIER_PLAYBOOKS[Tier.GOLD].name_zh == "黄金客户"
    assert customer_classes.TIER_PLAYBOOKS[Tier.FORGOTTEN].name_zh == "被遗忘客户"
    # 潜力客户 (has potential), not 潜在客户 (a prospect who never bought).
    assert customer_classes.TIER_PLAYBOOKS[Tier.POTENTIAL].name_zh == "潜力客户"
    assert "dedicated agent" in customer_classes.TIER_PLAYBOOKS[Tier.GOLD].actions
    assert "win-back campaign" in customer_classes.TIER_PLAYBOOKS[Tier.FORGOTTEN].actions


# --------------------------------------------------------------------------------------------
# Value classes
# --------------------------------------------------------------------------------------------


def test_cost_to_serve_from_unit_costs() -> None:
    config = ValueClassConfig(cost_per_complaint=50.0, cost_per_interaction=5.0)
    assert float(customer_classes.cost_to_serve(2, 10, config)) == 150.0


def test_value_class_rules() -> None:
    assert customer_classes.value_class(100.0, 150.0, threshold=500.0) is ValueClass.BZ
    assert customer_classes.value_class(800.0, 150.0, threshold=500.0) is ValueClass.MVC
    assert customer_classes.value_class(600.0, 150.0, threshold=500.0) is ValueClass.STC
    assert customer_classes.value_class(150.0, 150.0, threshold=0.0) is ValueClass.STC  # net 0


def test_value_classes_of_a_population() -> None:
    # Net values (cost 10 per interaction): 90, 190, ..., 990 and one customer at -10.
    actual = [100.0 * k for k in range(1, 11)] + [0.0]
    interactions = [1] * 11
    config = ValueClassConfig(cost_per_complaint=0.0, cost_per_interaction=10.0, mvc_top_share=0.2)
    labels, threshold = value_classes(actual, [0] * 11, interactions, config)
    # ceil(0.2 * 11) = 3: the third largest net value, 790, is the threshold.
    assert threshold == 790.0
    assert labels.tolist() == ["stc"] * 7 + ["mvc"] * 3 + ["bz"]


def test_strategic_value_counts_towards_net_value() -> None:
    assert (
        customer_classes.value_class(100.0, 150.0, 500.0, strategic_value=100.0) is ValueClass.STC
    )
    labels, _ = value_classes(
        [100.0, 1000.0], [1, 0], [0, 0], ValueClassConfig(), strategic_values=[60.0, 0.0]
    )
    assert labels.tolist() == ["stc", "mvc"]


def test_value_class_config_validation() -> None:
    with pytest.raises(ValueError, match="mvc_top_share"):
        ValueClassConfig(mvc_top_share=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        ValueClassConfig(cost_per_complaint=-1.0)


def test_chinese_value_class_names() -> None:
    assert customer_classes.VALUE_CLASS_NAMES_ZH[ValueClass.BZ] == "负值客户"


def test_every_code_has_an_english_and_a_chinese_label() -> None:
    kinds = {
        "segment": {s.value for s in Segment},
        "tier": {t.value for t in Tier},
        "value_class": {v.value for v in ValueClass},
        "lifecycle": {stage.value for stage in LifecycleStage},
        "churn_level": {level.value for level in RiskLevel},
    }
    assert {kind: set(names) for kind, names in customer_classes.LABELS.items()} == kinds
    for names in customer_classes.LABELS.values():
        for label in names.values():
            assert label.en.isascii()
            assert label.en
            assert not label.zh.isascii()
    # Only the prospect stage (never bought) is 潜在; no buyer's label says it.
    prospects = [
        (kind, code)
        for kind, names in customer_classes.LABELS.items()
        for code, label in names.items()
        if "潜在" in label.zh
    ]
    assert prospects == [("lifecycle", "prospect")]


def test_labelled_adds_sibling_fields_and_keeps_the_codes() -> None:
    row = {"tier": "potential", "value_class": "bz", "lifecycle": "exploration", "x": 1}
    assert customer_classes.labelled(row) == row | {
        "tier_label_en": "Potential",
        "tier_label_zh": "潜力客户",
        "value_class_label_en": "Below-zero customer",
        "value_class_label_zh": "负值客户",
        "lifecycle_label_en": "Exploration",
        "lifecycle_label_zh": "探索期",
    }


# --------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------


def days_ago(*ages: int, amount: float = 10.0) -> list[tuple[date, float]]:
    return [(AS_OF - timedelta(days=age), amount) for age in ages]


CONFIG = LifecycleConfig()  # churn 365, exploration 90 days / 2 purchase days, window 90
# Expected gap g = (span + 60) / (purchase days - 1 + 1); silent (decline) past 2 g; windows
# compared only when 90 >= 2 g, i.e. g <= 45 days.


@pytest.mark.parametrize(
    ("history", "stage"),
    [
        ([], LifecycleStage.PROSPECT),
        (days_ago(400, 380), LifecycleStage.CHURNED),
        (days_ago(30, 10), LifecycleStage.EXPLORATION),  # new: g = 80/2 = 40, silent 10 < 80
        (days_ago(300, 10), LifecycleStage.EXPLORATION),  # two purchase days: g = 175
        # g = 250/6 = 41.7 (windows judged); recent 3 (80, 40, 10) vs previous 2 (150, 100)
        (days_ago(200, 150, 100, 80, 40, 10), LifecycleStage.GROWTH),
        # g = 340/5 = 68 > 45: too slow for 90-day windows, not silent (20 < 136): stable
        (days_ago(300, 170, 120, 60, 20), LifecycleStage.MATURITY),
        (days_ago(300, 170, 150, 120, 20), LifecycleStage.MATURITY),  # recent 1 vs 3, g = 68
        # every 20 days from 340 to 100, then 60: g = 340/14 = 24.3; recent 1 vs previous 4
        (days_ago(*range(340, 99, -20), 60), LifecycleStage.DECLINE),
        (days_ago(330, 300, 280, 200), LifecycleStage.DECLINE),  # g = 190/4 = 47.5, 200 > 95
    ],
)
def test_lifecycle_stages(history: list[tuple[date, float]], stage: LifecycleStage) -> None:
    activity = oracles.purchase_activity(history, AS_OF, CONFIG)
    assert stage_of(activity, CONFIG) is stage


def test_rising_spend_alone_is_growth() -> None:
    # Every 20 days: 4 purchase days in each window; g = (150 + 60) / 8 = 26.25 <= 45.
    history = days_ago(170, 150, 120, 100, amount=10.0) + days_ago(80, 60, 40, 20, amount=50.0)
    activity = oracles.purchase_activity(history, AS_OF, CONFIG)
    assert (activity.recent_purchase_days, activity.previous_purchase_days) == (4, 4)
    assert stage_of(activity, CONFIG) is LifecycleStage.GROWTH


def test_purchase_activity_merges_same_day_and_ignores_the_future() -> None:
    history = [
        *days_ago(100, 10, 10),
        (AS_OF + timedelta(days=1), 99.0),
    ]
    activity = oracles.purchase_activity(history, AS_OF, CONFIG)
    assert activity == PurchaseActivity(
        purchase_days=2,
        days_since_first=100,
        days_since_last=10,
        recent_purchase_days=1,
        previous_purchase_days=1,
        recent_spend=20.0,
        previous_spend=10.0,
        span_days=90,
    )


def test_churn_window_is_configurable() -> None:
    # g = (180 + 60) / 3 = 80: silent 120 < 160 and too slow for the windows: mature.
    activity = oracles.purchase_activity(days_ago(300, 200, 120), AS_OF, CONFIG)
    assert stage_of(activity, CONFIG) is LifecycleStage.MATURITY
    short = LifecycleConfig(churn_after_days=100)
    assert stage_of(activity, short) is LifecycleStage.CHURNED


def test_a_regular_slow_buyer_stays_mature_between_purchases() -> None:
    # A purchase every 120 days for three years (10 purchase days, span 1080): g =
    # (1080 + 60) / 10 = 114 days, so 90-day windows (90 < 2 g) are not compared and the
    # silence never exceeds 119 < 2 g. Each day of a whole cycle must read maturity; the
    # fixed windows alone saw 1 then 0 purchases and swung growth -> maturity -> decline.
    for offset in range(120):
        history = days_ago(*(offset + 120 * k for k in range(10)))
        activity = oracles.purchase_activity(history, AS_OF, CONFIG)
        assert stage_of(activity, CONFIG) is LifecycleStage.MATURITY, offset


def test_old_rules_swung_the_slow_buyer() -> None:
    # The same buyer under fixed windows only (min_window_purchases 0). Last purchase d days
    # ago: d = 0 sees 1 (day 0) vs 1 (day 120): maturity; d = 70 sees 1 (70) vs 0 (190 is
    # past the previous window): growth; d = 100 sees 0 vs 1 (100): decline.
    fixed = LifecycleConfig(min_window_purchases=0.0)
    seen = {
        stage_of(
            oracles.purchase_activity(days_ago(*(d + 120 * k for k in range(10))), AS_OF, fixed),
            fixed,
        )
        for d in (0, 70, 100)
    }
    assert seen == {LifecycleStage.GROWTH, LifecycleStage.MATURITY, LifecycleStage.DECLINE}


@pytest.mark.parametrize(
    ("silent_days", "stage"),
    [
        (0, LifecycleStage.EXPLORATION),
        (120, LifecycleStage.EXPLORATION),  # g = 60: 120 is not more than 2 g
        (121, LifecycleStage.DECLINE),
        (300, LifecycleStage.DECLINE),
        (364, LifecycleStage.DECLINE),
        (365, LifecycleStage.CHURNED),
    ],
)
def test_exploration_ends_with_silence(silent_days: int, stage: LifecycleStage) -> None:
    activity = oracles.purchase_activity(days_ago(silent_days), AS_OF, CONFIG)
    assert stage_of(activity, CONFIG) is stage


def test_lifecycle_config_validation() -> None:
    with pytest.raises(ValueError, match="ratio"):
        LifecycleConfig(growth_ratio=0.9)


# --------------------------------------------------------------------------------------------
# MAN leads
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "code", "action"),
    [
        ((True, True, True), "M+A+N", LeadAction.PURSUE),
        ((True, True, False), "M+A+n", LeadAction.CONTACT_WITH_SKILL),
        ((True, False, True), "M+a+N", LeadAction.FIND_DECISION_MAKER),
        ((False, True, True), "m+A+N", LeadAction.CHECK_CREDIT),
        ((False, False, True), "m+a+N", LeadAction.NURTURE),
        ((False, True, False), "m+A+n", LeadAction.NURTURE),
        ((True, False, False), "M+a+n", LeadAction.NURTURE),
        ((False, False, False), "m+a+n", LeadAction.STOP),
    ],
)
def test_man_rule(flags: tuple[bool, bool, bool], code: str, action: LeadAction) -> None:
    lead = customer_classes.man_lead_class(*flags)
    assert (lead.code, lead.action) == (code, action)
    assert (lead.money, lead.authority, lead.need) == flags


# --------------------------------------------------------------------------------------------
# Churn risk
# --------------------------------------------------------------------------------------------


def test_activity_fall() -> None:
    falls = customer_classes.activity_fall([5, 0, 12, 3], [10, 4, 10, 0])
    np.testing.assert_allclose(falls, [0.5, 1.0, 0.0, 0.0])


def test_churn_risk_hand_case() -> None:
    # Purchases 10 -> 5 (fall 0.5), interactions 8 -> 2 (fall 0.75): joint sqrt(0.375).
    risk = float(customer_classes.churn_risk(0.8, 5, 10, 2, 8))
    expected = 1 - 0.8 * (1 - 0.5 * math.sqrt(0.375))
    assert risk == pytest.approx(expected)
    assert customer_classes.churn_risk_level(risk) is RiskLevel.MEDIUM


def test_a_fall_in_only_one_signal_adds_no_risk() -> None:
    assert float(customer_classes.churn_risk(0.9, 0, 10, 8, 8)) == pytest.approx(0.1)
    assert float(customer_classes.churn_risk(0.9, 10, 10, 0, 8)) == pytest.approx(0.1)


def test_stopping_both_discounts_survival_by_the_trend_weight() -> None:
    assert float(customer_classes.churn_risk(1.0, 0, 6, 0, 6)) == pytest.approx(0.5)
    strict = ChurnRiskConfig(trend_weight=1.0)
    assert float(customer_classes.churn_risk(1.0, 0, 6, 0, 6, strict)) == pytest.approx(1.0)


@given(
    st.floats(0, 1),
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(0, 50),
)
def test_churn_risk_is_bounded_and_at_least_model_risk(
    alive: float, purchases_now: int, purchases_before: int, talks_now: int, talks_before: int
) -> None:
    risk = float(
        customer_classes.churn_risk(alive, purchases_now, purchases_before, talks_now, talks_before)
    )
    assert 0.0 <= risk <= 1.0
    assert risk >= 1.0 - alive - 1e-12


def test_risk_levels_and_thresholds() -> None:
    config = ChurnRiskConfig(medium_threshold=0.2, high_threshold=0.7)
    assert customer_classes.churn_risk_levels([0.0, 0.2, 0.69, 0.7, 1.0], config).tolist() == [
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]
    assert customer_classes.churn_risk_level(0.65) is RiskLevel.HIGH  # default high threshold 0.6
    with pytest.raises(ValueError, match="threshold"):
        ChurnRiskConfig(medium_threshold=0.8, high_threshold=0.5)
