"""Offline CLV helpers that only the tests and the benchmarks use: customer summaries computed
from raw transactions (the service reads its summaries from SQL; these check the convention
against the published CDNOW summary) and exact simulations of the BG/NBD and Gamma-Gamma
processes (populations with known parameters for recovery tests and benchmarks), and the
expected purchases of a customer just acquired that those populations average to.

Sources: [FHL05] Fader, Hardie & Lee (2005), "'Counting Your Customers' the Easy Way",
Marketing Science 24(2); [FH13] Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary
Value", note 025.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import numpy.typing as npt

from services.scoring.clv import (
    DAYS_PER_UNIT,
    BgNbdParams,
    CustomerSummary,
    FloatArray,
    GammaGammaParams,
    IntArray,
    TimeUnit,
    bgnbd_expected_purchases,
)


def summarise_transactions(
    customer: npt.ArrayLike,
    day: npt.ArrayLike,
    amount: npt.ArrayLike,
    *,
    n_customers: int,
    observation_end_day: int,
    unit: TimeUnit = "week",
) -> CustomerSummary:
    """Summarise a flat transaction table; row i of the result is customer index i.

    customer: integer index in [0, n_customers) per transaction; day: integer day number
    (for example date.toordinal()); amount: spend per transaction. Every customer must have at
    least one transaction and none may be after observation_end_day.
    """
    customers = np.asarray(customer, dtype=np.int64)
    days = np.asarray(day, dtype=np.int64)
    amounts = np.asarray(amount, dtype=np.float64)
    _check_transactions(customers, days, amounts, n_customers, observation_end_day)
    if n_customers == 0:
        empty = np.zeros(0, dtype=np.float64)
        return CustomerSummary(empty, empty, empty, empty)
    order = np.lexsort((days, customers))
    day_customer, day_number, day_total = _merge_same_day(
        customers[order], days[order], amounts[order]
    )
    # Same-day purchases count as one transaction: this is the convention behind the CDNOW
    # summary of [FHL05] (it reproduces that published summary exactly).
    purchase_days = np.bincount(day_customer, minlength=n_customers)
    if np.any(purchase_days == 0):
        raise ValueError("every customer needs at least one purchase")
    first = np.concatenate(([0], np.cumsum(purchase_days)[:-1]))
    last = first + purchase_days - 1
    is_repeat = np.ones(day_customer.size, dtype=bool)
    is_repeat[first] = False
    repeat_spend = np.bincount(
        day_customer[is_repeat], weights=day_total[is_repeat], minlength=n_customers
    )
    frequency = (purchase_days - 1).astype(np.float64)
    monetary = np.divide(repeat_spend, frequency, out=np.zeros(n_customers), where=frequency > 0)
    unit_days = DAYS_PER_UNIT[unit]
    return CustomerSummary(
        frequency=frequency,
        recency=(day_number[last] - day_number[first]) / unit_days,
        age=(observation_end_day - day_number[first]) / unit_days,
        monetary=monetary,
    )


def summarise_purchases(
    purchases: Sequence[Sequence[tuple[date, float]]],
    observation_end: date,
    unit: TimeUnit = "week",
) -> CustomerSummary:
    """Summarise per-customer lists of (date, amount); row i of the result is purchases[i].

    A datetime counts by its calendar date (datetime is a date): callers pass local dates.
    """
    counts = np.fromiter((len(history) for history in purchases), dtype=np.int64)
    customer = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    day = np.fromiter(
        (when.toordinal() for history in purchases for when, _ in history),
        dtype=np.int64,
        count=int(counts.sum()),
    )
    amount = np.fromiter(
        (spend for history in purchases for _, spend in history),
        dtype=np.float64,
        count=int(counts.sum()),
    )
    return summarise_transactions(
        customer,
        day,
        amount,
        n_customers=counts.size,
        observation_end_day=observation_end.toordinal(),
        unit=unit,
    )


def _check_transactions(
    customers: IntArray,
    days: IntArray,
    amounts: FloatArray,
    n_customers: int,
    observation_end_day: int,
) -> None:
    if not customers.shape == days.shape == amounts.shape or customers.ndim != 1:
        raise ValueError("customer, day and amount must be 1-D arrays of equal length")
    if customers.size and (customers.min() < 0 or customers.max() >= n_customers):
        raise ValueError("customer index out of range [0, n_customers)")
    if days.size and days.max() > observation_end_day:
        raise ValueError("a purchase is after the observation end")
    if not np.all(np.isfinite(amounts)):
        raise ValueError("amounts must be finite")


def _merge_same_day(
    customers: IntArray, days: IntArray, amounts: FloatArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """Collapse sorted (customer, day) runs into one row with the day's total spend."""
    if customers.size == 0:
        return customers, days, amounts
    new_run = np.ones(customers.size, dtype=bool)
    new_run[1:] = (customers[1:] != customers[:-1]) | (days[1:] != days[:-1])
    starts = np.flatnonzero(new_run)
    return customers[starts], days[starts], np.add.reduceat(amounts, starts)


def simulate_bgnbd(
    rng: np.random.Generator, params: BgNbdParams, age: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Draw (frequency, recency) for customers of the given ages from the BG/NBD process.

    Exact simulation of the assumptions of [FHL05]: lambda ~ Gamma(r, rate alpha),
    p ~ Beta(a, b); purchases form a Poisson(lambda) process from the first purchase at time 0,
    and after each repeat purchase the customer drops out with probability p, so the number
    of repeat purchases before dropout J is Geometric(p) on {1, 2, ...}. With N ~ Poisson(lambda T)
    arrivals in (0, T], x = min(J, N); given N = n the arrivals are uniform order statistics,
    so the x-th arrival time is T Beta(x, n - x + 1).
    """
    big_t = np.asarray(age, dtype=np.float64).ravel()
    n = big_t.size
    rate = rng.gamma(shape=params.r, scale=1.0 / params.alpha, size=n)
    dropout = np.clip(rng.beta(params.a, params.b, size=n), 1e-12, 1.0)
    repeats_before_dropout = rng.geometric(dropout)
    arrivals = rng.poisson(rate * big_t)
    x = np.minimum(repeats_before_dropout, arrivals)
    has_repeat = x > 0
    shape_a = np.where(has_repeat, x, 1)
    shape_b = np.where(has_repeat, arrivals - x + 1, 1)
    recency = np.where(has_repeat, big_t * rng.beta(shape_a, shape_b), 0.0)
    return x.astype(np.float64), recency.astype(np.float64)


def simulate_gamma_gamma(
    rng: np.random.Generator, params: GammaGammaParams, frequency: npt.ArrayLike
) -> FloatArray:
    """Draw each customer's mean spend over x transactions (0 where x == 0).

    The model of [FH13]: nu ~ Gamma(q, rate gamma) per customer, each spend ~ Gamma(p, rate nu);
    the mean of x such spends is Gamma(p x, rate nu x).
    """
    x = np.asarray(frequency, dtype=np.float64).ravel()
    nu = rng.gamma(shape=params.q, scale=1.0 / params.gamma, size=x.size)
    has_repeat = x > 0
    shape = np.where(has_repeat, params.p * x, 1.0)
    scale = 1.0 / (nu * np.where(has_repeat, x, 1.0))
    return np.asarray(np.where(has_repeat, rng.gamma(shape, scale), 0.0), dtype=np.float64)


def unconditional_expected_purchases(params: BgNbdParams, t: npt.ArrayLike) -> FloatArray:
    """E[X(t)] for a customer just acquired, [FHL05] eq. 9:

    (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))],
    which is eq. 10 at x = t_x = T = 0 (P(alive) = 1 there): the service's
    `bgnbd_expected_purchases` at a customer with no history.
    """
    t_arr = np.asarray(t, dtype=np.float64)
    zero = np.zeros_like(t_arr)
    return bgnbd_expected_purchases(params, t_arr, zero, zero, zero)
