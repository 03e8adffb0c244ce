"""Scoring a customer population, pure: statistics as of an instant -> scores and classes.

Inputs are the per-customer statistics `store.load_population` computes in SQL; outputs are
the RFM scores, segment, tier, value class, lifecycle stage, lifetime value and churn risk of
each customer. A population is scored against a reference (itself for a full re-score, the
last re-score's population for one customer scored live), so a single customer gets the
same answer as in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

from services.scoring import clv, customer_classes, rfm
from services.scoring.customer_classes import (
    ChurnRiskConfig,
    LifecycleConfig,
    TierConfig,
    ValueClassConfig,
)

FloatArray = npt.NDArray[np.float64]
TimeUnit = Literal["day", "week"]
MIN_CUSTOMERS_TO_FIT = 20  # below this a maximum-likelihood fit says more about noise


@dataclass(frozen=True)
class ScoringConfig:
    """Model and rule settings. Defaults are documented in the README's configuration table."""

    time_unit: TimeUnit = "week"
    # In weeks whatever the model's unit: a model fitted in days predicts over the same time.
    horizon_weeks: int = 52
    discount_rate: float = 0.0018  # per time unit: about 10% a year in weeks
    margin: float = 1.0  # share of revenue that is margin; 1.0 gives revenue CLV
    # Simple CLV: the lifespan used until the base has enough ended lifetimes to measure it,
    # and the least time over which a purchase rate is measured.
    expected_lifespan_weeks: float = 156.0
    min_observation_days: float = 90.0
    tier: TierConfig = field(default_factory=TierConfig)
    value: ValueClassConfig = field(default_factory=ValueClassConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    churn: ChurnRiskConfig = field(default_factory=ChurnRiskConfig)

    @property
    def unit_days(self) -> float:
        return clv.DAYS_PER_UNIT[self.time_unit]


@dataclass(frozen=True)
class Population:
    """Per-customer statistics as of `as_of`, arrays aligned by customer.

    RFM reads days_since_last (recency), orders (frequency) and net_spent (monetary, net of
    refunds). The buy-till-you-die models read purchase days: x = distinct purchase days - 1,
    t_x and T in time units, repeat_spend = mean daily total on repeat days.
    """

    as_of: datetime
    customer_id: npt.NDArray[np.object_]
    days_since_last: FloatArray
    days_since_first: FloatArray
    orders: FloatArray
    net_spent: FloatArray
    purchase_days: FloatArray
    span_days: FloatArray  # last purchase day - first purchase day
    repeat_spend: FloatArray
    recent_purchase_days: FloatArray
    previous_purchase_days: FloatArray
    recent_spend: FloatArray
    previous_spend: FloatArray
    recent_interactions: FloatArray
    previous_interactions: FloatArray
    interactions: FloatArray
    complaints: FloatArray
    # Value beyond the spend (referrals, a reference account) in the reporting currency, the
    # customer attribute strategic_value of the customer events; None: 0 for everyone.
    strategic_value: FloatArray | None = None
    # The first and the last purchase's instants, seconds since the epoch (what a stored row
    # keeps of them, exact to the microsecond); None: unknown (NaN for everyone).
    first_purchase_epoch: FloatArray | None = None
    last_purchase_epoch: FloatArray | None = None
    # net_spent as the database sums it (Decimal), for what is stored; None: net_spent's.
    net_spent_exact: npt.NDArray[np.object_] | None = None

    def __post_init__(self) -> None:
        if self.strategic_value is None:  # an array like the others, so slicing keeps working
            object.__setattr__(self, "strategic_value", np.zeros(self.customer_id.size))
        for name in ("first_purchase_epoch", "last_purchase_epoch"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.full(self.customer_id.size, np.nan))
        if self.net_spent_exact is None:
            object.__setattr__(self, "net_spent_exact", self.net_spent.astype(object))

    @property
    def size(self) -> int:
        return int(self.customer_id.size)

    def summary(self, unit_days: float) -> clv.CustomerSummary:
        """(x, t_x, T, monetary) in time units, the models' convention."""
        return clv.CustomerSummary(
            frequency=self.purchase_days - 1,
            recency=self.span_days / unit_days,
            age=self.days_since_first / unit_days,
            monetary=self.repeat_spend,
        )


@dataclass(frozen=True)
class Models:
    version: int
    time_unit: TimeUnit
    bgnbd: clv.BgNbdParams | None
    gamma_gamma: clv.GammaGammaParams | None


@dataclass(frozen=True)
class FittedModels:
    bgnbd: clv.BgNbdFit | None
    gamma_gamma: clv.GammaGammaFit | None
    customers: int


@dataclass(frozen=True)
class Reference:
    """What scoring one customer needs of the population: sorted R, F, M values and the MVC
    threshold. Kept by the service from the last re-score."""

    recency: FloatArray  # -days_since_last, ascending
    frequency: FloatArray
    monetary: FloatArray
    mvc_threshold: float
    simple: SimpleClvBase | None = None  # None: a run stored before it was kept

    @classmethod
    def of(cls, population: Population, config: ScoringConfig) -> Reference:
        net_value = value_net_of(population, config)
        threshold = (
            customer_classes.mvc_threshold(net_value, config.value)
            if population.size
            else float("inf")
        )
        return cls(
            recency=np.sort(-population.days_since_last),
            frequency=np.sort(population.orders),
            monetary=np.sort(population.net_spent),
            mvc_threshold=threshold,
            simple=simple_clv_base(population, config),
        )

    @property
    def size(self) -> int:
        return int(self.recency.size)


@dataclass(frozen=True)
class Scores:
    """Scores of a population, aligned with it."""

    customer_id: npt.NDArray[np.object_]
    recency_score: npt.NDArray[np.int8]
    frequency_score: npt.NDArray[np.int8]
    monetary_score: npt.NDArray[np.int8]
    segment: npt.NDArray[np.str_]
    tier: npt.NDArray[np.str_]
    value_class: npt.NDArray[np.str_]
    lifecycle: npt.NDArray[np.str_]
    p_alive: FloatArray  # NaN without a fitted model
    expected_purchases: FloatArray
    expected_spend: FloatArray
    predicted_clv: FloatArray
    simple_clv: FloatArray
    churn_risk: FloatArray
    churn_level: npt.NDArray[np.str_]

    def row(self, index: int) -> dict[str, object]:
        return {name: _plain(getattr(self, name)[index]) for name in self.__dataclass_fields__}


def _plain(value: object) -> object:
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.str_):
        return str(value)
    return value


def value_net_of(population: Population, config: ScoringConfig) -> FloatArray:
    """What each customer brought, net: margin (SCORING_MARGIN) x net spend + strategic
    value - cost to serve."""
    return customer_classes.net_values(
        population.net_spent,
        population.complaints,
        population.interactions,
        config.value,
        margin=config.margin,
        strategic_values=0.0 if population.strategic_value is None else population.strategic_value,
    )


def fit_models(population: Population, config: ScoringConfig) -> FittedModels:
    """BG/NBD on every customer observed for some time; Gamma-Gamma on repeat buyers."""
    summary = population.summary(config.unit_days)
    observed = summary.age > 0
    if int(observed.sum()) < MIN_CUSTOMERS_TO_FIT:
        return FittedModels(None, None, int(observed.sum()))
    bgnbd = clv.fit_bgnbd(
        summary.frequency[observed], summary.recency[observed], summary.age[observed]
    )
    repeat = (summary.frequency > 0) & (summary.monetary > 0)
    gamma_gamma = None
    if int(repeat.sum()) >= MIN_CUSTOMERS_TO_FIT:
        fitted = clv.fit_gamma_gamma(summary.frequency[repeat], summary.monetary[repeat])
        gamma_gamma = fitted if fitted.params.q > 1 else None  # else no finite mean spend
    return FittedModels(bgnbd, gamma_gamma, int(observed.sum()))


def score(
    population: Population,
    reference: Reference,
    models: Models | None,
    config: ScoringConfig,
    horizon_weeks: int | None = None,
) -> Scores:
    """Score `population` against `reference` (pass Reference.of(population) for a batch)."""
    recency = rfm.quintile_scores(-population.days_since_last, reference.recency, presorted=True)
    frequency = rfm.quintile_scores(population.orders, reference.frequency, presorted=True)
    monetary = rfm.quintile_scores(population.net_spent, reference.monetary, presorted=True)
    value_class = customer_classes.classes_of_net_values(
        value_net_of(population, config), reference.mvc_threshold
    )
    p_alive, expected, spend, predicted = _lifetime_value(
        population, models, config, config.horizon_weeks if horizon_weeks is None else horizon_weeks
    )
    churn = customer_classes.churn_risk(
        np.nan_to_num(p_alive, nan=1.0),
        population.recent_purchase_days,
        population.previous_purchase_days,
        population.recent_interactions,
        population.previous_interactions,
        config.churn,
    )
    return Scores(
        customer_id=population.customer_id,
        recency_score=recency,
        frequency_score=frequency,
        monetary_score=monetary,
        segment=rfm.segments_for(recency, frequency, monetary),
        tier=customer_classes.tiers_for(
            recency,
            frequency,
            monetary,
            config.tier,
            days_since_last=population.days_since_last,
            purchase_days=population.purchase_days,
            span_days=population.span_days,
        ),
        value_class=value_class,
        lifecycle=customer_classes.lifecycle_stages(
            population.purchase_days,
            population.days_since_first,
            population.days_since_last,
            population.recent_purchase_days,
            population.previous_purchase_days,
            population.recent_spend,
            population.previous_spend,
            population.span_days,
            config.lifecycle,
        ),
        p_alive=p_alive,
        expected_purchases=expected,
        expected_spend=spend,
        predicted_clv=predicted,
        simple_clv=simple_clv(
            population, config, reference.simple or simple_clv_base(population, config)
        ),
        churn_risk=churn,
        churn_level=customer_classes.churn_risk_levels(churn, config.churn),
    )


def _lifetime_value(
    population: Population, models: Models | None, config: ScoringConfig, horizon_weeks: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    missing = np.full(population.size, np.nan)
    if models is None or models.bgnbd is None or population.size == 0:
        return missing, missing, missing, missing
    model_unit_days = clv.DAYS_PER_UNIT[models.time_unit]
    summary = population.summary(model_unit_days)
    x, t_x, age = summary.frequency, summary.recency, np.maximum(summary.age, 0.0)
    # One-time buyers may have dropped out at their first purchase (BG/NBD alone says they
    # are certainly alive, so a purchase a year ago would read as no risk).
    p_alive = clv.probability_alive_with_first_dropout(models.bgnbd, x, t_x, age)
    # The horizon is a length of time: in a model fitted in days a week is 7 of its units,
    # so a day model and a week model look equally far ahead.
    week = DAYS_PER_WEEK / model_unit_days
    expected = clv.bgnbd_expected_purchases(models.bgnbd, horizon_weeks * week, x, t_x, age)
    if models.gamma_gamma is None:
        return p_alive, expected, missing, missing
    spend = clv.gamma_gamma_expected_spend(models.gamma_gamma, x, summary.monetary)
    weekly_rate = weekly_discount_rate(config)
    predicted = clv.predictive_clv(
        models.bgnbd,
        x,
        t_x,
        age,
        spend,
        horizon_periods=horizon_weeks,
        discount_rate=weekly_rate,
        margin=config.margin,
        period_length=week,
    )
    return p_alive, expected, spend, predicted


DAYS_PER_WEEK = 7.0
DAYS_PER_YEAR = 365.25


def weekly_discount_rate(config: ScoringConfig) -> float:
    """Predictive CLV is discounted per week whatever the model's unit; the configured rate
    is per configured unit (SCORING_DISCOUNT_RATE), so it becomes the equivalent weekly rate."""
    return float((1 + config.discount_rate) ** (DAYS_PER_WEEK / config.unit_days) - 1)


def annual_rate(weekly_rate: float) -> float:
    """The yearly rate equivalent to a weekly one (a year of 365.25 days)."""
    return float((1 + weekly_rate) ** (DAYS_PER_YEAR / DAYS_PER_WEEK) - 1)


@dataclass(frozen=True)
class SimpleClvBase:
    """The population averages of the simple CLV, as of a re-score.

    order_value: the base's net spend / its orders. weekly_rate: the base's orders / the
    weeks its customers were observed, each for at least the minimum observation period (a
    customer who bought today has not shown a rate of one order a week). lifespan_weeks:
    measured from the base (`measured`) or the configured default.
    """

    order_value: float
    weekly_rate: float
    lifespan_weeks: float
    measured: bool


MIN_ENDED_LIFETIMES = 20  # ended lifetimes from which the base's lifespan is measured


def simple_clv_base(population: Population, config: ScoringConfig) -> SimpleClvBase:
    """Population averages for the simple CLV (see `simple_clv`)."""
    orders = float(population.orders.sum())
    observed_weeks = np.maximum(population.days_since_first, config.min_observation_days)
    weeks = float(observed_weeks.sum()) / DAYS_PER_WEEK
    lifespan, measured = measured_lifespan_weeks(population, config)
    return SimpleClvBase(
        order_value=float(population.net_spent.sum()) / orders if orders else 0.0,
        weekly_rate=orders / weeks if weeks else 0.0,
        lifespan_weeks=lifespan,
        measured=measured,
    )


def measured_lifespan_weeks(population: Population, config: ScoringConfig) -> tuple[float, bool]:
    """Mean customer lifespan, weeks: total active time / ended lifetimes, else the default.

    A lifetime runs from the first to the last purchase and has ended when the customer is
    silent for longer than the churn window; lifetimes still running count with their time
    so far (right-censored, up to their last purchase). With a constant churn hazard this is
    the maximum-likelihood mean of an exponential lifetime under right censoring, ended
    lifetimes / total time at risk inverted (Lawless, Statistical Models and Methods for
    Lifetime Data, 2003): the textbook "average lifespan = 1 / churn rate", measured. Needs
    MIN_ENDED_LIFETIMES ended lifetimes and some active time; else
    SCORING_EXPECTED_LIFESPAN_WEEKS.
    """
    ended = int((population.days_since_last > config.tier.churn_after_days).sum())
    active_weeks = float(population.span_days.sum()) / DAYS_PER_WEEK
    if ended < MIN_ENDED_LIFETIMES or active_weeks <= 0:
        return config.expected_lifespan_weeks, False
    return active_weeks / ended, True


def simple_clv(population: Population, config: ScoringConfig, base: SimpleClvBase) -> FloatArray:
    """Simple CLV = average purchase value x purchase frequency x customer lifespan x margin.

    The common undiscounted form (as in Kumar & Reinartz, Customer Relationship Management,
    Springer 2012, on customer value metrics: CLV = average purchase value x purchase
    frequency x customer lifespan; margin as in Gupta & Lehmann 2003), in weeks: frequency
    is orders per week, lifespan in weeks (`measured_lifespan_weeks`). Value and frequency
    are the population's averages (`base`), except for a customer observed for at least
    SCORING_MIN_OBSERVATION_DAYS since the first purchase, whose own average order value and
    own rate (orders / weeks since the first purchase) have been measured over long enough
    to stand for the customer. A customer who bought once today gets the base's rate, not
    52 orders a year.
    """
    return simple_clv_values(
        population.orders,
        population.net_spent,
        population.days_since_first,
        base,
        config.margin,
        config.min_observation_days,
    )


def simple_clv_values(
    orders: FloatArray,
    net_spent: FloatArray,
    days_since_first: FloatArray,
    base: SimpleClvBase,
    margin: float,
    min_observation_days: float,
) -> FloatArray:
    """The simple CLV rule itself (`simple_clv`), customer by customer: the one definition
    that a scored population and a stored row (stored.simple_clv_of) both read."""
    observed = days_since_first >= min_observation_days
    weeks = np.maximum(days_since_first, 1.0) / DAYS_PER_WEEK
    own_rate = orders / weeks
    own_value = np.divide(net_spent, orders, out=np.zeros(orders.size), where=orders > 0)
    rate = np.where(observed, own_rate, base.weekly_rate)
    value = np.where(observed, own_value, base.order_value)
    return np.asarray(rate * value * base.lifespan_weeks * margin, dtype=np.float64)


RISK_ORDER = {"low": 0, "medium": 1, "high": 2}


@dataclass(frozen=True, slots=True)
class Change:
    """A class that changed between two re-scores: becomes a derived event."""

    customer_id: str
    kind: Literal["segment_changed", "tier_changed", "churn_risk_raised"]
    old: str | None
    new: str
    churn_risk: float | None = None


def changes(previous: dict[str, tuple[str, str, str]], scores: Scores) -> list[Change]:
    """Compare (segment, tier, churn level) per customer with the previous re-score.

    A customer seen for the first time has old = None for segment and tier; churn risk is
    reported only when its level rises, the signal a team acts on.
    """
    found: list[Change] = []
    for i, customer in enumerate(scores.customer_id):
        segment, tier, level = (
            str(scores.segment[i]),
            str(scores.tier[i]),
            str(scores.churn_level[i]),
        )
        old_segment, old_tier, old_level = previous.get(customer, (None, None, "low"))
        if segment != old_segment:
            found.append(Change(customer, "segment_changed", old_segment, segment))
        if tier != old_tier:
            found.append(Change(customer, "tier_changed", old_tier, tier))
        if RISK_ORDER[level] > RISK_ORDER.get(old_level or "low", 0):
            found.append(
                Change(customer, "churn_risk_raised", old_level, level, float(scores.churn_risk[i]))
            )
    return found
