"""The scoring rules for one customer, written branch by branch: the oracles that the
service's vectorised rules (customer_classes.tiers_for, customer_classes.lifecycle_stages)
are checked against.
The service scores whole populations at once and has no single-customer path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from services.scoring.customer_classes import (
    ACTIVE_TIERS,
    LifecycleConfig,
    LifecycleStage,
    Tier,
    TierConfig,
    expected_gap_days,
)

DEFAULT_TIERS = TierConfig()


def tier_for(
    recency: int,
    frequency: int,
    monetary: int,
    config: TierConfig = DEFAULT_TIERS,
    days_since_last: float = 0.0,
    purchase_days: float = 1.0,
    span_days: float = 0.0,
) -> Tier:
    """The tier of the first rule matching the R, F, M scores (else config.fallback), then
    the absolute rules: forgotten past the churn window; potential instead of gold or
    developing when silent for more than silent_after_gaps own expected gaps."""
    relative = config.fallback
    for rule in config.rules:
        if rule.matches(recency, frequency, monetary):
            relative = rule.tier
            break
    if days_since_last >= config.churn_after_days:
        return Tier.FORGOTTEN
    gap = float(expected_gap_days(purchase_days, span_days, config.rhythm))
    if relative in ACTIVE_TIERS and days_since_last > config.silent_after_gaps * gap:
        return Tier.POTENTIAL
    return relative


@dataclass(frozen=True)
class PurchaseActivity:
    """What the lifecycle rule needs, computable in SQL as well as from a history.

    Purchase days are distinct calendar days, as in the CLV summary convention; span_days is
    the number of days from the first purchase day to the last.
    """

    purchase_days: int
    days_since_first: float
    days_since_last: float
    recent_purchase_days: int
    previous_purchase_days: int
    recent_spend: float
    previous_spend: float
    span_days: float


def purchase_activity(
    purchases: Sequence[tuple[date, float]], as_of: date, config: LifecycleConfig
) -> PurchaseActivity:
    """Summarise (date, amount) purchases up to as_of (later ones are ignored).

    Recent window: (as_of - W, as_of]; previous window: (as_of - 2W, as_of - W].
    """
    daily: dict[date, float] = {}
    for when, amount in purchases:
        if when <= as_of:
            daily[when] = daily.get(when, 0.0) + amount
    if not daily:
        return PurchaseActivity(0, 0, 0, 0, 0, 0.0, 0.0, 0.0)
    ages = {(as_of - when).days: spend for when, spend in daily.items()}
    window = config.trend_window_days
    recent = [spend for age, spend in ages.items() if age < window]
    previous = [spend for age, spend in ages.items() if window <= age < 2 * window]
    return PurchaseActivity(
        purchase_days=len(daily),
        days_since_first=max(ages),
        days_since_last=min(ages),
        recent_purchase_days=len(recent),
        previous_purchase_days=len(previous),
        recent_spend=sum(recent),
        previous_spend=sum(previous),
        span_days=max(ages) - min(ages),
    )


def lifecycle_stage(activity: PurchaseActivity, config: LifecycleConfig) -> LifecycleStage:
    """Rules in order: prospect, churned, silent (decline), exploration, too slow for the
    windows (maturity), falling (decline), rising (growth), else maturity.

    Silence and the windows are judged against the customer's own expected gap. Decline
    (falling purchase frequency) is checked before growth so that a customer buying less
    often but in bigger baskets is flagged rather than celebrated.
    """
    if activity.purchase_days == 0:
        return LifecycleStage.PROSPECT
    if activity.days_since_last >= config.churn_after_days:
        return LifecycleStage.CHURNED
    gap = float(expected_gap_days(activity.purchase_days, activity.span_days, config.rhythm))
    if activity.days_since_last > config.decline_after_gaps * gap:
        return LifecycleStage.DECLINE
    if (
        activity.days_since_first < config.exploration_days
        or activity.purchase_days <= config.exploration_max_purchase_days
    ):
        return LifecycleStage.EXPLORATION
    if config.trend_window_days < config.min_window_purchases * gap:
        return LifecycleStage.MATURITY
    recent, previous = activity.recent_purchase_days, activity.previous_purchase_days
    if recent < config.decline_ratio * previous or recent == previous == 0:
        return LifecycleStage.DECLINE
    if _rising(recent, previous, config) or _rising(
        activity.recent_spend, activity.previous_spend, config
    ):
        return LifecycleStage.GROWTH
    return LifecycleStage.MATURITY


def _rising(recent: float, previous: float, config: LifecycleConfig) -> bool:
    # Multiplying instead of dividing handles previous == 0: any recent activity is a rise.
    return recent > 0 and recent >= config.growth_ratio * previous
