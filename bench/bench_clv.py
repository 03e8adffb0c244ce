"""Benchmark of the CLV models: simulate populations, time the fits and the scoring.

Usage: python bench/bench_clv.py [--customers N [N ...]] [--seed S]
Prints one JSON document. Not a test: nothing is asserted.

The populations are day-granular, like the service's data: ages are whole days (first
purchases spread over two years) and purchase times are rounded down to whole days, so many
customers share a (frequency, recency, age) row, which the fit merges.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.scoring import clv, rfm
from tests import clv_offline as offline

# Daily parameters in the range of a retail shop: mean purchase rate r / alpha = 1 per 80 days.
TRUE_BGNBD = clv.BgNbdParams(r=0.25, alpha=20.0, a=0.8, b=2.5)
TRUE_SPEND = clv.GammaGammaParams(p=6.0, q=4.0, gamma=15.0)
OBSERVATION_DAYS = 730


def simulate(n_customers: int, seed: int) -> clv.CustomerSummary:
    rng = np.random.default_rng(seed)
    age = rng.integers(1, OBSERVATION_DAYS + 1, size=n_customers).astype(np.float64)
    frequency, recency = offline.simulate_bgnbd(rng, TRUE_BGNBD, age)
    recency = np.floor(recency)
    monetary = offline.simulate_gamma_gamma(rng, TRUE_SPEND, frequency)
    return clv.CustomerSummary(frequency=frequency, recency=recency, age=age, monetary=monetary)


def timed(label: str, timings: dict[str, float], func: Any, *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    result = func(*args, **kwargs)
    timings[label] = round(time.perf_counter() - start, 3)
    return result


def bench(n_customers: int, seed: int) -> dict[str, Any]:
    summary = simulate(n_customers, seed)
    seconds: dict[str, float] = {}
    fit = timed(
        "fit_bgnbd", seconds, clv.fit_bgnbd, summary.frequency, summary.recency, summary.age
    )
    spend_fit = timed(
        "fit_gamma_gamma", seconds, clv.fit_gamma_gamma, summary.frequency, summary.monetary
    )
    args = (summary.frequency, summary.recency, summary.age)
    timed("probability_alive", seconds, clv.bgnbd_probability_alive, fit.params, *args)
    timed("expected_purchases_90d", seconds, clv.bgnbd_expected_purchases, fit.params, 90.0, *args)
    spend = timed(
        "expected_spend",
        seconds,
        clv.gamma_gamma_expected_spend,
        spend_fit.params,
        summary.frequency,
        summary.monetary,
    )
    timed(
        "predictive_clv_12_months",
        seconds,
        clv.predictive_clv,
        fit.params,
        *args,
        spend,
        horizon_periods=12,
        discount_rate=0.01,
        margin=0.3,
        period_length=30.0,
    )
    recency_days = summary.age - summary.recency
    timed(
        "rfm_scores",
        seconds,
        rfm.rfm_scores,
        recency_days,
        summary.frequency + 1,
        summary.monetary * summary.frequency,
    )
    return {
        "customers": n_customers,
        "distinct_rows": int(np.unique(np.column_stack(args), axis=0).shape[0]),
        "seconds": seconds,
        "bgnbd": {**vars(fit.params), "converged": fit.converged, "method": fit.method},
        "gamma_gamma": {**vars(spend_fit.params), "converged": spend_fit.converged},
        "true_bgnbd": vars(TRUE_BGNBD),
        "true_gamma_gamma": vars(TRUE_SPEND),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=20240601)
    options = parser.parse_args()
    results = [bench(n, options.seed) for n in options.customers]
    print(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()
