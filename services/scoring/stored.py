"""A customer's stored scores, pure: scored arrays -> the columns a row keeps, and a row ->
the facts its explanations read.

A row (customer_scores, score_history) keeps the scores and classes, the purchase facts and
the customer's statistics as of the instant it scores. Two statistics move with the clock,
days since the first and since the last purchase; the row keeps the first and last purchase
instead, and they follow from the instant. The rest are constant between events (or move a
whole day at a time, the trend windows), so a row stays what it was until something changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import numpy as np

from services.scoring.explain import CustomerFacts
from services.scoring.population import Population, Scores, SimpleClvBase, simple_clv_values

# The statistics a row keeps (its `stats` array), in this order.
STORED_STATS = (
    "orders",
    "net_spent",
    "purchase_days",
    "span_days",
    "repeat_spend",
    "recent_purchase_days",
    "previous_purchase_days",
    "recent_spend",
    "previous_spend",
    "recent_interactions",
    "previous_interactions",
    "interactions",
    "complaints",
    "strategic_value",
)

# Scores and classes, as the columns of customer_scores name them.
SCORE_FIELDS = (
    "recency_score",
    "frequency_score",
    "monetary_score",
    "segment",
    "tier",
    "value_class",
    "lifecycle",
    "p_alive",
    "expected_purchases",
    "expected_spend",
    "predicted_clv",
    "simple_clv",
    "churn_risk",
    "churn_level",
)

# The model's figures: they move with the customer's age (whole days) and the model, so a
# re-score run's history compares and keeps them rounded (else rounding noise alone would
# write a customer again): probabilities to PROBABILITY_DECIMALS decimals (a churn risk of
# 5e-9 is 1 - 0.999.., all noise), the rest to SIGNIFICANT_DIGITS significant digits. The
# simple CLV is not kept: it follows from the row and its run (simple_clv_of).
MODEL_FIGURES = (
    "p_alive",
    "expected_purchases",
    "expected_spend",
    "predicted_clv",
    "churn_risk",
)
PROBABILITIES = ("p_alive", "churn_risk")
PROBABILITY_DECIMALS = 4
SIGNIFICANT_DIGITS = 4


def row_columns(scores: Scores, population: Population) -> dict[str, list[Any]]:
    """Every row of a scored population, column by column (NaN as None), for an INSERT ...
    unnest: customer_id, SCORE_FIELDS, rfm_code, net_spent, orders, last_purchase_at,
    first_purchase_at, then the STORED_STATS as stat_0, stat_1, ..."""
    columns: dict[str, list[Any]] = {"customer_id": scores.customer_id.tolist()}
    for name in SCORE_FIELDS:
        columns[name] = _nullable(getattr(scores, name).tolist())
    columns["rfm_code"] = [
        f"{r}{f}{m}"
        for r, f, m in zip(
            scores.recency_score.tolist(),
            scores.frequency_score.tolist(),
            scores.monetary_score.tolist(),
            strict=True,
        )
    ]
    exact = population.net_spent_exact
    assert exact is not None  # (Population fills it)
    columns["net_spent"] = exact.tolist()
    columns["orders"] = [int(o) for o in population.orders.tolist()]
    # From the instants, not from days since: a day count's rounding would move them by a
    # microsecond from one run to the next, and rewrite every row of the run history.
    first, last = population.first_purchase_epoch, population.last_purchase_epoch
    assert first is not None  # (Population fills them)
    assert last is not None
    columns["last_purchase_at"] = [
        _instant(s) if math.isfinite(s) else population.as_of - timedelta(days=d)
        for s, d in zip(last.tolist(), population.days_since_last.tolist(), strict=True)
    ]
    columns["first_purchase_at"] = [
        _instant(s) if math.isfinite(s) else None for s in first.tolist()
    ]
    for i, name in enumerate(STORED_STATS):
        columns[f"stat_{i}"] = getattr(population, name).tolist()
    return columns


def _instant(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


def _nullable(values: list[Any]) -> list[Any]:
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def days_since(row: Mapping[str, Any], as_of: datetime, zone: tzinfo) -> tuple[float, float]:
    """Days since the last purchase (exact) and since the first purchase's day (whole local
    days), as of `as_of`: what the population's query computes."""
    last: datetime = row["last_purchase_at"]
    first: datetime = row["first_purchase_at"]
    since_last = (as_of - last).total_seconds() / 86_400
    since_first = (as_of.astimezone(zone).date() - first.astimezone(zone).date()).days
    return since_last, float(since_first)


def facts_of(
    row: Mapping[str, Any], as_of: datetime, zone: tzinfo, mvc_threshold: float
) -> CustomerFacts:
    """What the explanations read, from a stored row scored as of `as_of`."""
    stats = dict(zip(STORED_STATS, row["stats"], strict=True))
    since_last, since_first = days_since(row, as_of, zone)
    return CustomerFacts(
        recency_score=int(row["recency_score"]),
        frequency_score=int(row["frequency_score"]),
        monetary_score=int(row["monetary_score"]),
        days_since_last=since_last,
        days_since_first=since_first,
        orders=int(stats["orders"]),
        net_spent=float(stats["net_spent"]),
        purchase_days=int(stats["purchase_days"]),
        span_days=float(stats["span_days"]),
        recent_purchase_days=int(stats["recent_purchase_days"]),
        previous_purchase_days=int(stats["previous_purchase_days"]),
        recent_spend=float(stats["recent_spend"]),
        previous_spend=float(stats["previous_spend"]),
        recent_interactions=int(stats["recent_interactions"]),
        previous_interactions=int(stats["previous_interactions"]),
        interactions=int(stats["interactions"]),
        complaints=int(stats["complaints"]),
        strategic_value=float(stats["strategic_value"]),
        p_alive=row["p_alive"],
        churn_risk=float(row["churn_risk"]),
        mvc_threshold=mvc_threshold,
    )


def one_row(scores: Scores, population: Population, index: int = 0) -> dict[str, Any]:
    """One customer of a scored population as a stored row reads (`stats` an array)."""
    columns = row_columns(scores, population)
    row = {name: values[index] for name, values in columns.items()}
    row["stats"] = [row.pop(f"stat_{i}") for i in range(len(STORED_STATS))]
    return row


def simple_clv_of(
    row: Mapping[str, Any],
    as_of: datetime,
    zone: tzinfo,
    base: SimpleClvBase,
    margin: float,
    min_observation_days: float,
) -> float:
    """population.simple_clv of one stored row as of its run (`base`: the run's averages),
    by the same rule (population.simple_clv_values) applied to the one customer."""
    orders, net_spent = float(row["stats"][0]), float(row["stats"][1])
    _, since_first = days_since(row, as_of, zone)
    values = simple_clv_values(
        np.array([orders]),
        np.array([net_spent]),
        np.array([since_first]),
        base,
        margin,
        min_observation_days,
    )
    return float(values[0])
