"""A stored row explains itself as the population it came from does: stored.facts_of (what a
read has: the row and its instant) against explain.facts_of (what the scoring had: the
population arrays), for customers whose first and last purchases are at known instants,
which the row keeps to the microsecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from services.scoring import explain, stored
from services.scoring.population import (
    Population,
    Reference,
    ScoringConfig,
    score,
    simple_clv,
    simple_clv_base,
)

AS_OF = datetime(2026, 6, 30, 15, 45, 12, 345678, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Shanghai")


Instants = list[datetime]


def population(n: int = 40, seed: int = 3) -> tuple[Population, Instants, Instants]:
    """First and last purchases at random instants; the day counts as the SQL derives them
    (local days in ZONE for days since the first, exact days since the last)."""
    rng = np.random.default_rng(seed)
    first = [AS_OF - timedelta(days=float(d)) for d in rng.uniform(30, 700, n)]
    last = [f + (AS_OF - f) * float(s) for f, s in zip(first, rng.uniform(0, 1, n), strict=True)]
    return _population(rng, n, first, last), first, last


def _population(rng: np.random.Generator, n: int, first: Instants, last: Instants) -> Population:
    local_day = AS_OF.astimezone(ZONE).date()
    purchase_days = rng.integers(1, 9, n).astype(float)
    orders = (purchase_days + rng.integers(0, 3, n)).astype(float)
    return Population(
        as_of=AS_OF,
        customer_id=np.array([f"c{i}" for i in range(n)], dtype=object),
        days_since_last=np.array([(AS_OF - t).total_seconds() / 86_400 for t in last]),
        days_since_first=np.array(
            [float((local_day - t.astimezone(ZONE).date()).days) for t in first]
        ),
        orders=orders,
        net_spent=np.round(orders * rng.uniform(5, 200, n), 2),
        purchase_days=purchase_days,
        span_days=np.array([float((b - a).days) for a, b in zip(first, last, strict=True)]),
        repeat_spend=rng.uniform(0, 90, n),
        recent_purchase_days=rng.integers(0, 3, n).astype(float),
        previous_purchase_days=rng.integers(0, 3, n).astype(float),
        recent_spend=rng.uniform(0, 100, n),
        previous_spend=rng.uniform(0, 100, n),
        recent_interactions=rng.integers(0, 5, n).astype(float),
        previous_interactions=rng.integers(0, 5, n).astype(float),
        interactions=rng.integers(0, 20, n).astype(float),
        complaints=rng.integers(0, 3, n).astype(float),
        strategic_value=rng.uniform(0, 50, n),
        first_purchase_epoch=np.array([t.timestamp() for t in first]),
        last_purchase_epoch=np.array([t.timestamp() for t in last]),
    )


def test_a_stored_row_gives_the_facts_its_population_gave() -> None:
    people, first, last = population()
    config = ScoringConfig()
    reference = Reference.of(people, config)
    scores = score(people, reference, None, config)
    for i in range(people.size):
        row = stored.one_row(scores, people, i)
        assert (row["first_purchase_at"], row["last_purchase_at"]) == (first[i], last[i])
        from_row = stored.facts_of(row, AS_OF, ZONE, reference.mvc_threshold)
        from_arrays = explain.facts_of(people, scores, i, reference.mvc_threshold)
        for name, value in vars(from_arrays).items():
            assert getattr(from_row, name) == pytest.approx(value, abs=1e-9), (i, name)
        assert explain.explain_all(from_row, config) == explain.explain_all(from_arrays, config)


def test_a_snapshot_rows_simple_clv_follows_from_the_row_and_its_run() -> None:
    """The run history does not keep the simple CLV (it moves with every run's averages):
    derived from a row and its run's averages, it is the batch's."""
    people, _, _ = population()
    config = ScoringConfig(margin=0.4, min_observation_days=200)
    base = simple_clv_base(people, config)
    batch = simple_clv(people, config, base)
    scores = score(people, Reference.of(people, config), None, config)
    assert 0 < int((people.days_since_first >= 200).sum()) < people.size  # both branches
    for i in range(people.size):
        row = stored.one_row(scores, people, i)
        derived = stored.simple_clv_of(row, AS_OF, ZONE, base, 0.4, 200)
        assert derived == pytest.approx(float(batch[i]), rel=1e-12), i
