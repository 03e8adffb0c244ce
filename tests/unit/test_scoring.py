"""Scoring a population (pure): batch and single-customer answers agree, rules hold."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring import customer_classes
from services.scoring.clv import BgNbdParams, GammaGammaParams
from services.scoring.customer_classes import LifecycleConfig, RhythmConfig
from services.scoring.population import (
    Models,
    Population,
    Reference,
    ScoringConfig,
    changes,
    fit_models,
    score,
    simple_clv,
    simple_clv_base,
)
from services.scoring.settings import ScoringSettings
from tests import scoring_oracles as oracles
from tests.clv_offline import simulate_bgnbd
from tests.scoring_oracles import PurchaseActivity

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
CONFIG = ScoringConfig()


def population(n: int, seed: int = 1) -> Population:
    rng = np.random.default_rng(seed)
    first = rng.integers(10, 700, n).astype(float)
    purchase_days = rng.integers(1, 12, n).astype(float)
    span = np.minimum(first - 1, rng.integers(0, 600, n)).astype(float) * (purchase_days > 1)
    last = first - span
    orders = purchase_days + rng.integers(0, 3, n)
    spent = np.round(orders * rng.uniform(5, 200, n), 2)
    return Population(
        as_of=AS_OF,
        customer_id=np.array([f"c{i}" for i in range(n)], dtype=object),
        days_since_last=last,
        days_since_first=first,
        orders=orders,
        net_spent=spent,
        purchase_days=purchase_days,
        span_days=span,
        repeat_spend=np.where(purchase_days > 1, spent / orders, 0.0),
        recent_purchase_days=rng.integers(0, 3, n).astype(float),
        previous_purchase_days=rng.integers(0, 3, n).astype(float),
        recent_spend=rng.uniform(0, 100, n),
        previous_spend=rng.uniform(0, 100, n),
        recent_interactions=rng.integers(0, 5, n).astype(float),
        previous_interactions=rng.integers(0, 5, n).astype(float),
        interactions=rng.integers(0, 20, n).astype(float),
        complaints=rng.integers(0, 3, n).astype(float),
    )


def take(pop: Population, i: int) -> Population:
    fields = {
        name: (getattr(pop, name)[i : i + 1] if name != "as_of" else pop.as_of)
        for name in pop.__dataclass_fields__
    }
    return Population(**fields)


MODELS = Models(1, "week", BgNbdParams(0.24, 4.4, 0.79, 2.4), GammaGammaParams(6.25, 3.74, 15.44))


def test_one_customer_scored_live_equals_its_row_in_the_batch() -> None:
    pop = population(500)
    reference = Reference.of(pop, CONFIG)
    batch = score(pop, reference, MODELS, CONFIG)
    for i in (0, 17, 250, 499):
        alone = score(take(pop, i), reference, MODELS, CONFIG)
        assert alone.row(0) == batch.row(i)


def test_scores_segments_and_tiers_are_consistent() -> None:
    pop = population(1000)
    scores = score(pop, Reference.of(pop, CONFIG), MODELS, CONFIG)
    assert set(np.unique(scores.recency_score)) == {1, 2, 3, 4, 5}
    most_recent = int(np.argmin(pop.days_since_last))
    assert scores.recency_score[most_recent] == 5
    gold = scores.tier == "gold"
    assert np.all(scores.recency_score[gold] >= 3)
    assert np.all(scores.frequency_score[gold] >= 4)
    assert np.all((scores.p_alive >= 0) & (scores.p_alive <= 1))
    assert np.all(scores.predicted_clv >= 0)
    assert np.all(scores.churn_risk >= 1 - scores.p_alive - 1e-12)


def test_without_a_model_lifetime_value_is_unknown_but_classes_are_not() -> None:
    pop = population(50)
    scores = score(pop, Reference.of(pop, CONFIG), None, CONFIG)
    assert np.all(np.isnan(scores.predicted_clv))
    assert scores.row(0)["predicted_clv"] is None
    assert set(scores.tier) <= {"gold", "developing", "potential", "forgotten"}


def test_simple_clv_by_hand() -> None:
    pop = take(population(3), 0)
    pop = Population(
        **{
            **pop.__dict__,
            "orders": np.array([26.0]),
            "net_spent": np.array([1300.0]),
            "days_since_first": np.array([182.0]),
            "days_since_last": np.array([3.0]),
        }
    )
    # Observed 26 weeks (over the 90-day minimum): 26 orders = 1 a week; 50 an order; no
    # ended lifetime, so the default 156 weeks; margin 1.
    assert simple_clv(pop, CONFIG, simple_clv_base(pop, CONFIG))[0] == 1.0 * 50.0 * 156.0


def test_changes_report_new_classes_and_rising_risk_only() -> None:
    pop = population(3)
    scores = score(pop, Reference.of(pop, CONFIG), MODELS, CONFIG)
    first = changes({}, scores)
    assert {c.kind for c in first} >= {"segment_changed", "tier_changed"}
    same = {
        str(c): (str(scores.segment[i]), str(scores.tier[i]), str(scores.churn_level[i]))
        for i, c in enumerate(scores.customer_id)
    }
    assert changes(same, scores) == []
    riskier = {k: (s, t, "low") for k, (s, t, _) in same.items()}
    raised = changes(riskier, scores)
    assert all(c.kind == "churn_risk_raised" for c in raised)
    assert {c.customer_id for c in raised} == {
        str(c) for i, c in enumerate(scores.customer_id) if scores.churn_level[i] != "low"
    }


def test_fit_recovers_a_simulated_population_through_the_service_path() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    params = BgNbdParams(0.5, 6.0, 0.7, 2.5)
    age_weeks = rng.uniform(20, 80, n)
    x, t_x = simulate_bgnbd(rng, params, age_weeks)
    pop = population(n)
    pop = Population(
        **{
            **pop.__dict__,
            "purchase_days": x + 1,
            "span_days": t_x * 7,
            "days_since_first": age_weeks * 7,
            "repeat_spend": np.where(x > 0, rng.gamma(5, 10, n), 0.0),
        }
    )
    fitted = fit_models(pop, CONFIG)
    assert fitted.bgnbd is not None
    assert abs(fitted.bgnbd.params.r - 0.5) < 0.1
    assert abs(fitted.bgnbd.params.alpha - 6.0) < 1.5
    assert fitted.gamma_gamma is not None


def test_too_few_customers_fit_nothing() -> None:
    fitted = fit_models(population(5), CONFIG)
    assert fitted.bgnbd is None


activity = st.tuples(
    st.integers(0, 30),
    st.integers(0, 800),
    st.floats(0, 800),
    st.integers(0, 10),
    st.integers(0, 10),
    st.floats(0, 1000),
    st.floats(0, 1000),
    st.floats(0, 800),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(activity, min_size=1, max_size=20),
    st.sampled_from([LifecycleConfig(), LifecycleConfig(min_window_purchases=0.0)]),
)
def test_vectorised_lifecycle_matches_the_scalar_rule(
    rows: list[tuple[float, ...]], config: LifecycleConfig
) -> None:
    arrays = [np.array(col, dtype=float) for col in zip(*rows, strict=True)]
    stages = customer_classes.lifecycle_stages(*arrays, config)
    for row, stage in zip(rows, stages, strict=True):
        expected = oracles.lifecycle_stage(
            PurchaseActivity(
                int(row[0]), int(row[1]), row[2], int(row[3]), int(row[4]), row[5], row[6], row[7]
            ),
            config,
        )
        assert stage == expected.value


def test_one_churn_window_and_rhythm_setting_drive_tiers_and_lifecycle() -> None:
    settings = ScoringSettings(
        churn_after_days=200,
        scoring_prior_gap_days=30.0,
        scoring_silent_after_gaps=4.0,
        scoring_decline_after_gaps=1.5,
    )
    config = settings.scoring_config()
    assert config.tier.churn_after_days == config.lifecycle.churn_after_days == 200
    assert config.tier.rhythm == config.lifecycle.rhythm == RhythmConfig(30.0, 1.0)
    assert (config.tier.silent_after_gaps, config.lifecycle.decline_after_gaps) == (4.0, 1.5)
