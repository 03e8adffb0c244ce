"""Customer classes: tier, value class, lifecycle stage, MAN lead class, churn risk.

Pure rules. Every number is a documented default in a frozen config
dataclass; the service builds the configs from its settings and passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from services.scoring.rfm import SEGMENT_LABELS, Segment
from shared.events import Tier as Tier  # re-exported: scoring modules name it here

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]

# --------------------------------------------------------------------------------------------
# Tiers (客户分层)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierPlaybook:
    tier: Tier
    name_zh: str
    who: str
    actions: tuple[str, ...]


TIER_PLAYBOOKS: dict[Tier, TierPlaybook] = {
    Tier.GOLD: TierPlaybook(
        Tier.GOLD,
        "黄金客户",
        "High spend, high loyalty.",
        ("exclusive service", "VIP channel", "dedicated agent"),
    ),
    Tier.DEVELOPING: TierPlaybook(
        Tier.DEVELOPING,
        "发展客户",
        "Growth potential.",
        ("incentives", "points", "coupons"),
    ),
    Tier.POTENTIAL: TierPlaybook(
        Tier.POTENTIAL,
        # 潜力客户: a buyer with potential to re-activate; 潜在客户 would mean a prospect who
        # never bought (the lifecycle stage prospect).
        "潜力客户",
        "Needs re-activation.",
        ("care", "greetings", "exclusive offers"),
    ),
    Tier.FORGOTTEN: TierPlaybook(
        Tier.FORGOTTEN,
        "被遗忘客户",
        "Gone quiet.",
        ("win-back campaign", "big promotion", "free trial"),
    ),
}


@dataclass(frozen=True)
class TierRule:
    """A customer matches when each RFM score lies within [min, max] (scores are 1-5)."""

    tier: Tier
    min_recency: int = 1
    min_frequency: int = 1
    min_monetary: int = 1
    max_recency: int = 5
    max_frequency: int = 5
    max_monetary: int = 5

    def matches(self, recency: int, frequency: int, monetary: int) -> bool:
        return (
            self.min_recency <= recency <= self.max_recency
            and self.min_frequency <= frequency <= self.max_frequency
            and self.min_monetary <= monetary <= self.max_monetary
        )

    def matches_all(
        self,
        recency: npt.NDArray[np.int64],
        frequency: npt.NDArray[np.int64],
        monetary: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        return (
            (recency >= self.min_recency)
            & (recency <= self.max_recency)
            & (frequency >= self.min_frequency)
            & (frequency <= self.max_frequency)
            & (monetary >= self.min_monetary)
            & (monetary <= self.max_monetary)
        )


# Default rules, first match wins, else the fallback (forgotten):
# - gold: still active (R >= 3) with high frequency and high spend (F >= 4 and M >= 4);
# - developing: active (R >= 3) and already repeat buying (F >= 3) or spending (M >= 3);
# - potential: active (R >= 3) but low frequency and spend: needs activation;
# - forgotten: R <= 2, gone quiet, whatever the past value. R worsens with the clock, so a
#   customer drifts to forgotten with no new event (tier standards move with behaviour).
# Quintiles are relative: when the whole base goes quiet, a fifth still scores R = 5. The
# absolute rules of TierConfig (churn window, the customer's own rhythm) bound them.
DEFAULT_TIER_RULES: tuple[TierRule, ...] = (
    TierRule(Tier.GOLD, min_recency=3, min_frequency=4, min_monetary=4),
    TierRule(Tier.DEVELOPING, min_recency=3, min_frequency=3),
    TierRule(Tier.DEVELOPING, min_recency=3, min_monetary=3),
    TierRule(Tier.POTENTIAL, min_recency=3),
)


DEFAULT_CHURN_AFTER_DAYS = 365  # the inactivity window of a lost customer: one year


@dataclass(frozen=True)
class RhythmConfig:
    """How a customer's own expected inter-purchase gap is estimated, in days.

    expected gap = (span_days + prior_weight * prior_gap_days) / (purchase_days - 1 + prior_weight)

    span_days / (purchase_days - 1) is the customer's mean gap between distinct purchase days;
    it is shrunk towards prior_gap_days as if the customer had prior_weight extra gaps of that
    length (the posterior mean of an exponential mean gap under an inverse-gamma prior), so
    two purchases a day apart do not make a one-day rhythm, and a one-time buyer (no gap
    yet) gets prior_gap_days. Defaults: prior_gap_days 60 (two months), prior_weight 1 gap;
    a weekly buyer of a year keeps (364 + 60) / 53 = 8 days.
    """

    prior_gap_days: float = 60.0
    prior_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.prior_gap_days <= 0 or self.prior_weight <= 0:
            raise ValueError("prior_gap_days and prior_weight must be positive")


def expected_gap_days(
    purchase_days: npt.ArrayLike, span_days: npt.ArrayLike, rhythm: RhythmConfig
) -> FloatArray:
    """The customer's own expected inter-purchase gap in days (see RhythmConfig)."""
    gaps = np.maximum(np.asarray(purchase_days, dtype=np.float64) - 1.0, 0.0)
    span = np.maximum(np.asarray(span_days, dtype=np.float64), 0.0)
    weight = rhythm.prior_weight
    return np.asarray((span + weight * rhythm.prior_gap_days) / (gaps + weight), dtype=np.float64)


@dataclass(frozen=True)
class TierConfig:
    """Relative rules (RFM quintiles) bounded by absolute ones, since quintiles alone keep a
    fifth of the base on top even when the whole base has gone quiet.

    churn_after_days: silent this long (the churn window) means forgotten, whatever the
        quintiles say. Default 365, the same window as lifecycle's churned.
    silent_after_gaps: silent for more than this many of the customer's own expected gaps
        (RhythmConfig) means the customer cannot be gold or developing: they become
        potential (needs re-activation). Default 3: if gaps were exponential with the
        customer's mean, a still-active customer is that silent with probability
        e^-3 = 5%.
    """

    rules: tuple[TierRule, ...] = DEFAULT_TIER_RULES
    fallback: Tier = Tier.FORGOTTEN
    churn_after_days: float = DEFAULT_CHURN_AFTER_DAYS
    silent_after_gaps: float = 3.0
    rhythm: RhythmConfig = field(default_factory=RhythmConfig)

    def __post_init__(self) -> None:
        if self.churn_after_days <= 0 or self.silent_after_gaps <= 0:
            raise ValueError("churn_after_days and silent_after_gaps must be positive")


# Tiers a customer silent beyond their own rhythm may not keep: the playbooks that assume an
# active relationship (VIP service, growth incentives).
ACTIVE_TIERS = (Tier.GOLD, Tier.DEVELOPING)


def tiers_for(
    recency: npt.ArrayLike,
    frequency: npt.ArrayLike,
    monetary: npt.ArrayLike,
    config: TierConfig = TierConfig(),
    days_since_last: npt.ArrayLike = 0.0,
    purchase_days: npt.ArrayLike = 1.0,
    span_days: npt.ArrayLike = 0.0,
) -> StrArray:
    """The tier of the first rule matching the R, F, M scores (else config.fallback), then
    the absolute rules: forgotten past the churn window; potential instead of gold or
    developing when silent for more than silent_after_gaps own expected gaps. Tier codes as a
    string array, one a customer."""
    r, f, m = (np.asarray(s, dtype=np.int64) for s in (recency, frequency, monetary))
    silence = np.asarray(days_since_last, dtype=np.float64)
    gap = expected_gap_days(purchase_days, span_days, config.rhythm)
    shape = np.broadcast(r, f, m, silence, gap).shape
    result = np.full(shape, config.fallback.value, dtype="<U10")
    # Apply the rules last to first so that the earliest matching rule has the final word.
    for rule in reversed(config.rules):
        result[np.broadcast_to(rule.matches_all(r, f, m), shape)] = rule.tier.value
    active = np.isin(result, [tier.value for tier in ACTIVE_TIERS])
    result[active & (silence > config.silent_after_gaps * gap)] = Tier.POTENTIAL.value
    result[np.broadcast_to(silence >= config.churn_after_days, shape)] = Tier.FORGOTTEN.value
    return np.asarray(result, dtype=np.str_)


# --------------------------------------------------------------------------------------------
# Value classes: MVC / STC / BZ
# --------------------------------------------------------------------------------------------


class ValueClass(StrEnum):
    MVC = "mvc"  # most valuable customers, 最有价值客户
    STC = "stc"  # second-tier customers, 二级客户
    BZ = "bz"  # below-zero customers, 负值客户: cost more to serve than they bring


VALUE_CLASS_NAMES_ZH: dict[ValueClass, str] = {
    ValueClass.MVC: "最有价值客户",
    ValueClass.STC: "二级客户",
    ValueClass.BZ: "负值客户",
}


@dataclass(frozen=True)
class ValueClassConfig:
    """What a customer costs to serve, in the shop's currency, and the MVC share.

    The value-class rule weighs the value a customer brings (margin, not revenue) against
    the cost to serve them. Only serving costs count: the agent time a complaint and an
    interaction take. Lost goodwill is not a serving cost (it is future value lost, which
    the lifetime value and churn risk already read). The defaults price an agent hour at 25:
    cost_per_complaint 25, about an hour for the seven handling steps from listening to the
    follow-up; cost_per_interaction 2, about five minutes. Set them from the service's own
    costs.

    mvc_top_share: the share of the population, ranked by net value, that is MVC; 0.2
    follows the Pareto rule that about a fifth of customers bring most of the value.
    """

    cost_per_complaint: float = 25.0
    cost_per_interaction: float = 2.0
    mvc_top_share: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.mvc_top_share <= 1.0:
            raise ValueError("mvc_top_share must be in (0, 1]")
        if self.cost_per_complaint < 0 or self.cost_per_interaction < 0:
            raise ValueError("unit costs must be non-negative")


def cost_to_serve(
    complaints: npt.ArrayLike, interactions: npt.ArrayLike, config: ValueClassConfig
) -> FloatArray:
    return np.asarray(
        np.asarray(complaints, dtype=np.float64) * config.cost_per_complaint
        + np.asarray(interactions, dtype=np.float64) * config.cost_per_interaction,
        dtype=np.float64,
    )


def net_values(
    revenue: npt.ArrayLike,
    complaints: npt.ArrayLike,
    interactions: npt.ArrayLike,
    config: ValueClassConfig,
    margin: float = 1.0,
    strategic_values: npt.ArrayLike = 0.0,
) -> FloatArray:
    """margin x revenue + strategic value - cost to serve: what the customer brings, net.

    revenue is net spend (or a revenue CLV); margin is the share of revenue that is margin
    (SCORING_MARGIN), so a customer is compared with their cost by the value they bring,
    not by what they paid.
    """
    return np.asarray(
        margin * np.asarray(revenue, dtype=np.float64)
        + np.asarray(strategic_values, dtype=np.float64)
        - cost_to_serve(complaints, interactions, config),
        dtype=np.float64,
    )


def mvc_threshold(net_values: npt.ArrayLike, config: ValueClassConfig) -> float:
    """Net value at or above which a customer is in the top mvc_top_share of the population.

    The k-th largest net value with k = ceil(share n); ties at the threshold are all MVC, so
    the MVC share can exceed the target when many customers share that value.
    """
    values = np.sort(np.asarray(net_values, dtype=np.float64).ravel())[::-1]
    if values.size == 0:
        raise ValueError("no customers")
    top = max(1, int(np.ceil(config.mvc_top_share * values.size)))
    return float(values[top - 1])


def value_class(
    actual_value: float, serving_cost: float, threshold: float, strategic_value: float = 0.0
) -> ValueClass:
    """BZ when the customer costs more than they bring (net < 0), MVC when the net value
    (actual + strategic value - cost to serve) is positive and reaches the threshold, else STC.

    actual_value is the margin the customer brought (margin x net spend) or a margin CLV, as
    the caller chooses; strategic_value is value not in the spend (referrals, a reference
    customer), in currency, estimated by the caller; threshold comes from mvc_threshold over
    the same net values.
    """
    net = actual_value + strategic_value - serving_cost
    return ValueClass(str(classes_of_net_values(np.asarray([net]), threshold)[0]))


def classes_of_net_values(net: FloatArray, threshold: float) -> StrArray:
    """The rule of value_class over an array of net values."""
    classes = np.where(
        net < 0,
        ValueClass.BZ.value,
        np.where((net > 0) & (net >= threshold), ValueClass.MVC.value, ValueClass.STC.value),
    )
    return np.asarray(classes, dtype=np.str_)


# --------------------------------------------------------------------------------------------
# Lifecycle stages (客户生命周期)
# --------------------------------------------------------------------------------------------


class LifecycleStage(StrEnum):
    PROSPECT = "prospect"  # 潜在期: never bought
    EXPLORATION = "exploration"  # 探索期: first purchases
    GROWTH = "growth"  # 成长期: rising frequency or spend
    MATURITY = "maturity"  # 成熟期: stable
    DECLINE = "decline"  # 衰退期: falling activity
    CHURNED = "churned"  # 流失: inactive past the window


@dataclass(frozen=True)
class LifecycleConfig:
    """Windows in days.

    churn_after_days: no purchase for this long means churned (the inactivity window of a
        lost customer; a shop has no cancellations). Default one year.
    decline_after_gaps: silent for more than this many of the customer's own expected gaps
        (RhythmConfig) means declining, whatever the stage before: it ends exploration too,
        so a one-time buyer does not explore for a year. Default 2 (an earlier warning than
        the tiers' 3 gaps): with exponential gaps an active customer is that silent with
        probability e^-2 = 14%.
    exploration_days / exploration_max_purchase_days: a customer whose first purchase is
        more recent than exploration_days, or who has bought on at most
        exploration_max_purchase_days days, is still exploring (unless silent, above).
        Defaults 90 days, 2 days.
    trend_window_days: frequency and spend are compared between the last window and the one
        before it. Default 90 days (a quarter against the previous quarter).
    min_window_purchases: the windows are compared only for customers whose own rhythm
        expects at least this many purchase days in a window (trend_window_days / expected
        gap); for slower buyers a window holds 0 or 1 purchases by chance of timing and
        would swing them between growth and decline, so they are mature unless silent.
        Default 2.
    growth_ratio / decline_ratio: recent / previous ratios that count as rising (>= 1.25)
        or falling (< 0.75); between them the customer is mature (stable).
    """

    churn_after_days: int = DEFAULT_CHURN_AFTER_DAYS
    decline_after_gaps: float = 2.0
    exploration_days: int = 90
    exploration_max_purchase_days: int = 2
    trend_window_days: int = 90
    min_window_purchases: float = 2.0
    growth_ratio: float = 1.25
    decline_ratio: float = 0.75
    rhythm: RhythmConfig = field(default_factory=RhythmConfig)

    def __post_init__(self) -> None:
        if self.trend_window_days <= 0 or self.churn_after_days <= 0:
            raise ValueError("windows must be positive")
        if self.decline_after_gaps <= 0 or self.min_window_purchases < 0:
            raise ValueError("decline_after_gaps must be positive, min_window_purchases >= 0")
        if not 0.0 <= self.decline_ratio <= 1.0 <= self.growth_ratio:
            raise ValueError("need 0 <= decline_ratio <= 1 <= growth_ratio")


def lifecycle_stages(
    purchase_days: npt.ArrayLike,
    days_since_first: npt.ArrayLike,
    days_since_last: npt.ArrayLike,
    recent_purchase_days: npt.ArrayLike,
    previous_purchase_days: npt.ArrayLike,
    recent_spend: npt.ArrayLike,
    previous_spend: npt.ArrayLike,
    span_days: npt.ArrayLike,
    config: LifecycleConfig,
) -> StrArray:
    """Each customer's stage, by rules in order: prospect, churned, silent (decline),
    exploration, too slow for the windows (maturity), falling (decline), rising (growth),
    else maturity.

    Silence and the windows are judged against the customer's own expected gap. Decline
    (falling purchase frequency) is checked before growth so that a customer buying less
    often but in bigger baskets is flagged rather than celebrated.
    """
    days = np.asarray(purchase_days, dtype=np.float64)
    first = np.asarray(days_since_first, dtype=np.float64)
    last = np.asarray(days_since_last, dtype=np.float64)
    recent = np.asarray(recent_purchase_days, dtype=np.float64)
    previous = np.asarray(previous_purchase_days, dtype=np.float64)
    spend_now = np.asarray(recent_spend, dtype=np.float64)
    spend_before = np.asarray(previous_spend, dtype=np.float64)
    gap = expected_gap_days(days, span_days, config.rhythm)

    def rising(now: FloatArray, before: FloatArray) -> npt.NDArray[np.bool_]:
        # Multiplying instead of dividing handles before == 0: any recent activity is a rise.
        return (now > 0) & (now >= config.growth_ratio * before)

    conditions = [
        days == 0,
        last >= config.churn_after_days,
        last > config.decline_after_gaps * gap,
        (first < config.exploration_days) | (days <= config.exploration_max_purchase_days),
        config.trend_window_days < config.min_window_purchases * gap,
        (recent < config.decline_ratio * previous) | ((recent == 0) & (previous == 0)),
        rising(recent, previous) | rising(spend_now, spend_before),
    ]
    choices = [
        LifecycleStage.PROSPECT.value,
        LifecycleStage.CHURNED.value,
        LifecycleStage.DECLINE.value,
        LifecycleStage.EXPLORATION.value,
        LifecycleStage.MATURITY.value,
        LifecycleStage.DECLINE.value,
        LifecycleStage.GROWTH.value,
    ]
    stages = np.select(conditions, choices, default=LifecycleStage.MATURITY.value)
    return np.asarray(stages, dtype=np.str_)


# --------------------------------------------------------------------------------------------
# Leads: the MAN rule (money, authority, need)
# --------------------------------------------------------------------------------------------


class LeadAction(StrEnum):
    PURSUE = "pursue"  # ideal target
    CONTACT_WITH_SKILL = "contact_with_skill"  # has money and authority; need to be developed
    FIND_DECISION_MAKER = "find_decision_maker"
    CHECK_CREDIT = "check_credit"  # check credit and financing
    NURTURE = "nurture"  # nurture over time
    STOP = "stop"  # stop contact


@dataclass(frozen=True)
class ManLead:
    code: str  # upper case = has it, as the MAN notation writes it: "M+A+N", "M+a+N", ..., "m+a+n"
    money: bool
    authority: bool
    need: bool
    action: LeadAction
    advice: str


_MAN_ACTIONS: dict[tuple[bool, bool, bool], tuple[LeadAction, str]] = {
    (True, True, True): (LeadAction.PURSUE, "Ideal target: contact now."),
    (True, True, False): (LeadAction.CONTACT_WITH_SKILL, "Contact, with skill: build the need."),
    (True, False, True): (LeadAction.FIND_DECISION_MAKER, "Contact, find the decision maker."),
    (False, True, True): (LeadAction.CHECK_CREDIT, "Contact, check credit and financing."),
    (False, False, True): (LeadAction.NURTURE, "Nurture over time."),
    (False, True, False): (LeadAction.NURTURE, "Nurture over time."),
    (True, False, False): (LeadAction.NURTURE, "Nurture over time."),
    (False, False, False): (LeadAction.STOP, "Stop contact."),
}


def man_lead_class(money: bool, authority: bool, need: bool) -> ManLead:
    action, advice = _MAN_ACTIONS[(money, authority, need)]
    code = "+".join(
        letter.upper() if has else letter
        for letter, has in (("m", money), ("a", authority), ("n", need))
    )
    return ManLead(code, money, authority, need, action, advice)


# --------------------------------------------------------------------------------------------
# Churn risk
# --------------------------------------------------------------------------------------------


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class ChurnRiskConfig:
    """trend_weight: how far a joint fall of purchase and interaction frequency can lower the
    survival probability (0 = P(alive) alone; 1 = a total joint stop means certain churn).
    Default 0.5: a customer the model still believes alive but who stopped both buying and
    talking to us reaches the medium/high border on the trend alone.
    Levels: risk < medium_threshold is low, < high_threshold medium, else high.
    """

    trend_weight: float = 0.5
    medium_threshold: float = 0.3
    high_threshold: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 <= self.trend_weight <= 1.0:
            raise ValueError("trend_weight must be in [0, 1]")
        if not 0.0 <= self.medium_threshold <= self.high_threshold <= 1.0:
            raise ValueError("need 0 <= medium_threshold <= high_threshold <= 1")


def activity_fall(recent: npt.ArrayLike, previous: npt.ArrayLike) -> FloatArray:
    """Relative fall of a count between two equal windows, in [0, 1]: max(0, 1 - recent/previous).

    0 when there was nothing to fall from (previous == 0) or activity held or rose; 1 when it
    stopped.
    """
    now = np.asarray(recent, dtype=np.float64)
    before = np.asarray(previous, dtype=np.float64)
    ratio = np.divide(now, before, out=np.ones(np.broadcast(now, before).shape), where=before > 0)
    return np.asarray(np.clip(1.0 - ratio, 0.0, 1.0), dtype=np.float64)


def churn_risk(
    p_alive: npt.ArrayLike,
    recent_purchases: npt.ArrayLike,
    previous_purchases: npt.ArrayLike,
    recent_interactions: npt.ArrayLike,
    previous_interactions: npt.ArrayLike,
    config: ChurnRiskConfig = ChurnRiskConfig(),
) -> FloatArray:
    """Churn risk in [0, 1]:  1 - P(alive) (1 - w sqrt(fall_purchases fall_interactions)).

    P(alive) (BG/NBD) reads only purchase timing and reacts slowly for customers with a long
    regular history. The earlier warning is purchase frequency and
    interaction frequency falling together. The geometric mean of the two falls is zero
    unless both fall, so a customer who only moved to self-service (fewer interactions) or
    only had a quiet quarter (fewer purchases) is not flagged, and equals the common fall
    when both fall alike. The joint fall discounts the survival probability by up to w, so
    the result stays in [0, 1], grows with each fall and never goes below 1 - P(alive).
    Windows are the caller's (for example the lifecycle trend windows).
    """
    alive = np.clip(np.asarray(p_alive, dtype=np.float64), 0.0, 1.0)
    joint_fall = np.sqrt(
        activity_fall(recent_purchases, previous_purchases)
        * activity_fall(recent_interactions, previous_interactions)
    )
    return np.asarray(1.0 - alive * (1.0 - config.trend_weight * joint_fall), dtype=np.float64)


def churn_risk_level(risk: float, config: ChurnRiskConfig = ChurnRiskConfig()) -> RiskLevel:
    if risk >= config.high_threshold:
        return RiskLevel.HIGH
    if risk >= config.medium_threshold:
        return RiskLevel.MEDIUM
    return RiskLevel.LOW


def churn_risk_levels(risk: npt.ArrayLike, config: ChurnRiskConfig = ChurnRiskConfig()) -> StrArray:
    values = np.asarray(risk, dtype=np.float64)
    levels = np.where(
        values >= config.high_threshold,
        RiskLevel.HIGH.value,
        np.where(values >= config.medium_threshold, RiskLevel.MEDIUM.value, RiskLevel.LOW.value),
    )
    return np.asarray(levels, dtype=np.str_)


# --------------------------------------------------------------------------------------------
# Labels: every code scoring answers with, in English and in the Chinese the users speak
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    en: str
    zh: str


# RFM segments (the English names are rfm.SEGMENT_LABELS). 潜力 (has potential) for a buyer,
# as for the potential tier; 潜在 is kept for prospects who never bought.
SEGMENT_NAMES_ZH: dict[Segment, str] = {
    Segment.CHAMPIONS: "冠军客户",
    Segment.LOYAL: "忠诚客户",
    Segment.POTENTIAL_LOYALIST: "潜力忠诚客户",
    Segment.NEW: "新客户",
    Segment.PROMISING: "有望客户",
    Segment.NEED_ATTENTION: "需关注客户",
    Segment.ABOUT_TO_SLEEP: "将沉睡客户",
    Segment.AT_RISK: "流失风险客户",
    Segment.CANT_LOSE_THEM: "不能失去的客户",
    Segment.HIBERNATING: "沉睡客户",
    Segment.LOST: "流失客户",
}

_TIER_NAMES_EN = {
    Tier.GOLD: "Gold",
    Tier.DEVELOPING: "Developing",
    Tier.POTENTIAL: "Potential",
    Tier.FORGOTTEN: "Forgotten",
}
_VALUE_CLASS_NAMES_EN = {
    ValueClass.MVC: "Most valuable customer",
    ValueClass.STC: "Second-tier customer",
    ValueClass.BZ: "Below-zero customer",
}
_LIFECYCLE_NAMES = {
    LifecycleStage.PROSPECT: ("Prospect", "潜在期"),
    LifecycleStage.EXPLORATION: ("Exploration", "探索期"),
    LifecycleStage.GROWTH: ("Growth", "成长期"),
    LifecycleStage.MATURITY: ("Maturity", "成熟期"),
    LifecycleStage.DECLINE: ("Decline", "衰退期"),
    LifecycleStage.CHURNED: ("Churned", "流失"),
}
_RISK_NAMES = {
    RiskLevel.LOW: ("Low risk", "低风险"),
    RiskLevel.MEDIUM: ("Medium risk", "中风险"),
    RiskLevel.HIGH: ("High risk", "高风险"),
}

# The kinds of code, by the name of the field that carries them in scoring's answers.
LABELS: dict[str, dict[str, Label]] = {
    "segment": {s.value: Label(SEGMENT_LABELS[s], SEGMENT_NAMES_ZH[s]) for s in Segment},
    "tier": {t.value: Label(_TIER_NAMES_EN[t], TIER_PLAYBOOKS[t].name_zh) for t in Tier},
    "value_class": {
        v.value: Label(_VALUE_CLASS_NAMES_EN[v], VALUE_CLASS_NAMES_ZH[v]) for v in ValueClass
    },
    "lifecycle": {stage.value: Label(*_LIFECYCLE_NAMES[stage]) for stage in LifecycleStage},
    "churn_level": {level.value: Label(*_RISK_NAMES[level]) for level in RiskLevel},
}


def labelled(row: dict[str, object]) -> dict[str, object]:
    """The row with `<field>_label_en` and `<field>_label_zh` beside each coded field it has
    (fields added, none renamed, so existing clients read the row as before)."""
    extra: dict[str, object] = {}
    for field_name, names in LABELS.items():
        code = row.get(field_name)
        if isinstance(code, str) and code in names:
            extra[f"{field_name}_label_en"] = names[code].en
            extra[f"{field_name}_label_zh"] = names[code].zh
    return row | extra
