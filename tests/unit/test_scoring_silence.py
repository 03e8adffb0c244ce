"""Scoring notices silence: the same base re-scored after idle days (issue 14, items 1-3).

Population statistics are computed here from explicit purchase histories (the oracle side),
and every expected tier, stage and risk is worked out by hand in the comments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.scoring.clv import BgNbdParams
from services.scoring.population import Models, Population, Reference, ScoringConfig, score
from services.scoring.store import POPULATION_FIELDS

CONFIG = ScoringConfig()  # defaults: churn 365 days, 3 gaps (tiers), 2 gaps (lifecycle), prior 60
NOW = datetime(2026, 6, 30, tzinfo=UTC)
WINDOW = 90
# [FHL05]'s CDNOW fit, weekly.
MODELS = Models(1, "week", BgNbdParams(0.24, 4.4, 0.79, 2.4), None)


def every(step: int, count: int, first_age: int, amount: float) -> list[tuple[int, float]]:
    return [(first_age + step * k, amount) for k in range(count)]


# (age in days of each purchase as of NOW, amount). One order per purchase day.
BASE: dict[str, list[tuple[int, float]]] = {
    "W1": every(7, 53, 2, 100.0),  # weekly for a year: span 364, spent 5300
    "W2": every(7, 52, 4, 100.0),  # span 357, spent 5200
    "M1": every(30, 13, 10, 50.0),  # monthly: span 360, spent 650
    "M2": every(30, 12, 20, 50.0),  # span 330, spent 600
    "M3": every(30, 24, 25, 50.0),  # monthly for two years: span 690, spent 1200
    "M4": every(30, 6, 28, 50.0),  # span 150, spent 300
    "O1": [(6, 2000.0)],  # one-time buyers
    "O2": [(40, 100.0)],
    "O3": [(90, 120.0)],
    "O4": [(200, 80.0)],
}


def population(histories: dict[str, list[tuple[int, float]]], idle_days: int) -> Population:
    """Statistics as of NOW + idle_days: every purchase is idle_days older, nothing new."""
    columns: dict[str, list[float]] = {name: [] for name in STAT_NAMES}
    for purchases in histories.values():
        ages = [age + idle_days for age, _ in purchases]
        amounts = [amount for _, amount in purchases]
        recent = [a for age, a in zip(ages, amounts, strict=True) if age < WINDOW]
        previous = [a for age, a in zip(ages, amounts, strict=True) if WINDOW <= age < 2 * WINDOW]
        first_amount = amounts[ages.index(max(ages))]
        stats = {
            "days_since_last": min(ages),
            "days_since_first": max(ages),
            "orders": len(ages),
            "net_spent": sum(amounts),
            "purchase_days": len(set(ages)),
            "span_days": max(ages) - min(ages),
            "repeat_spend": (sum(amounts) - first_amount) / (len(ages) - 1)
            if len(ages) > 1
            else 0.0,
            "recent_purchase_days": len(recent),
            "previous_purchase_days": len(previous),
            "recent_spend": sum(recent),
            "previous_spend": sum(previous),
        }
        for name in STAT_NAMES:
            columns[name].append(float(stats.get(name, 0.0)))
    return Population(
        as_of=NOW + timedelta(days=idle_days),
        customer_id=np.array(list(histories), dtype=object),
        **{name: np.array(values) for name, values in columns.items()},
    )


STAT_NAMES = POPULATION_FIELDS  # the statistics a Population holds, in its order


def rescored(idle_days: int) -> dict[str, dict[str, object]]:
    pop = population(BASE, idle_days)
    scores = score(pop, Reference.of(pop, CONFIG), MODELS, CONFIG)
    return {str(c): scores.row(i) for i, c in enumerate(scores.customer_id)}


# RFM by hand (n = 10, score = 1 + floor(5 midrank / 10)); idle days shift every recency
# alike, so the scores are the same at every date:
#   recency (days since last 2, 4, 6, 10, 20, 25, 28, 40, 90, 200 best to worst):
#     W1 5, W2 5, O1 4, M1 4, M2 3, M3 3, M4 2, O2 2, O3 1, O4 1
#   frequency: one-time buyers tie at 1 order (midrank 2: score 2); M4 6 -> 3, M2 12 -> 3,
#     M1 13 -> 4, M3 24 -> 4, W2 52 -> 5, W1 53 -> 5
#   monetary: O4 80 -> 1, O2 100 -> 1, O3 120 -> 2, M4 300 -> 2, M2 600 -> 3, M1 650 -> 3,
#     M3 1200 -> 4, O1 2000 -> 4, W2 5200 -> 5, W1 5300 -> 5
# Quintile tiers: W1 (5,5,5), W2 (5,5,5), M3 (3,4,4) gold; M1 (4,4,3), M2 (3,3,3), O1 (4,2,4)
# developing (F >= 3 or M >= 3); M4, O2, O3, O4 (R <= 2) forgotten. Nothing else is
# possible from the quintiles alone, however long the base stays quiet.
# Own expected gaps (span + 60) / purchase days, times 3: W1 424/53 = 8 -> 24;
# W2 417/52 = 8.02 -> 24.06; M1 420/13 = 32.3 -> 96.9; M2 390/12 = 32.5 -> 97.5;
# M3 750/24 = 31.25 -> 93.75; O1 60 -> 180.
EXPECTED_TIERS = {
    # Now everyone is within their rhythm: the quintile tiers stand.
    0: {
        "W1": "gold",
        "W2": "gold",
        "M3": "gold",
        "M1": "developing",
        "M2": "developing",
        "O1": "developing",
    },
    # A month idle: the weekly buyers (32 > 24, 34 > 24.06) are overdue; the monthly buyers
    # (40, 50, 55 days) and the one-time buyer (36 < 180) are not.
    30: {
        "W1": "potential",
        "W2": "potential",
        "M3": "gold",
        "M1": "developing",
        "M2": "developing",
        "O1": "developing",
    },
    # Half a year idle: all are past three of their own gaps (O1 186 > 180): re-activation.
    180: {
        "W1": "potential",
        "W2": "potential",
        "M3": "potential",
        "M1": "potential",
        "M2": "potential",
        "O1": "potential",
    },
    # A year idle: every last purchase is 367+ days old, past the churn window.
    365: {name: "forgotten" for name in ("W1", "W2", "M3", "M1", "M2", "O1")},
}


@pytest.mark.parametrize("idle_days", sorted(EXPECTED_TIERS))
def test_tiers_move_down_with_silence(idle_days: int) -> None:
    rows = rescored(idle_days)
    always_forgotten = {"M4": "forgotten", "O2": "forgotten", "O3": "forgotten", "O4": "forgotten"}
    expected = EXPECTED_TIERS[idle_days] | always_forgotten
    assert {name: row["tier"] for name, row in rows.items()} == expected
    assert (rows["W1"]["recency_score"], rows["W1"]["frequency_score"]) == (5, 5)


def test_nobody_silent_past_the_churn_window_is_gold_or_developing() -> None:
    for idle_days in (0, 30, 180, 365):
        for row in rescored(idle_days).values():
            days_since_last = float(idle_days + min(a for a, _ in BASE[str(row["customer_id"])]))
            if days_since_last >= 365:
                assert row["tier"] == "forgotten"


# Lifecycle by hand (window 90, decline past 2 own gaps, exploration up to 2 purchase days):
# W1 now: 13 purchase days in (0, 90) and 13 in [90, 180): stable, maturity; after 30 idle
# days 32 > 2 x 8: decline; after 365 churned. O1 now: one purchase, 6 < 2 x 60: exploring;
# 36 still exploring; 186 > 120: decline (exploration ended); 371: churned.
EXPECTED_STAGES = {
    0: {"W1": "maturity", "O1": "exploration"},
    30: {"W1": "decline", "O1": "exploration"},
    180: {"W1": "decline", "O1": "decline"},
    365: {"W1": "churned", "O1": "churned"},
}


@pytest.mark.parametrize("idle_days", sorted(EXPECTED_STAGES))
def test_lifecycle_moves_on_with_silence(idle_days: int) -> None:
    rows = rescored(idle_days)
    assert {name: rows[name]["lifecycle"] for name in ("W1", "O1")} == EXPECTED_STAGES[idle_days]


def test_one_purchase_300_days_ago_is_not_low_risk() -> None:
    # Churn risk of a one-time buyer is 1 - P(alive) (no interactions: no trend discount).
    # T = 300/7 = 42.857 weeks: (4.4 + 42.857) / 4.4 = 10.740, ln = 2.3740, x 0.24 = 0.56977,
    # exp = 1.7678; x a/b = 0.79/2.4 = 0.32917: 0.58190; P(alive) = 1 / 1.58190 = 0.63215;
    # risk 0.36785 >= 0.3: medium. Bought 6 days ago: (4.4 + 0.857)/4.4 = 1.1948, ln 0.17800,
    # x 0.24 = 0.042720, exp 1.04365, x 0.32917 = 0.34354; risk 0.34354 / 1.34354 = 0.2557: low.
    base = {"late": [(300, 50.0)], "fresh": [(6, 50.0)], **BASE}
    pop = population(base, 0)
    scores = score(pop, Reference.of(pop, CONFIG), MODELS, CONFIG)
    assert scores.churn_risk[0] == pytest.approx(0.36785, abs=1e-4)
    assert scores.churn_level[0] == "medium"
    assert scores.churn_risk[1] == pytest.approx(0.2557, abs=1e-4)
    assert scores.churn_level[1] == "low"
