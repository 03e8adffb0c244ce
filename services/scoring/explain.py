"""Why a customer has their classes, pure: the rule that applied and the numbers it used.

For each class scoring gives (RFM segment, tier, value class, lifecycle stage, churn level,
MAN lead class) an `Explanation`: the code, a rule code naming the branch of the rule that
decided it, the numbers that branch compared, and one sentence in English and in Chinese.
Each function walks its rule in the order customer_classes.py applies it (the vectorised rules
there score populations; these explain one customer), so the code explained is the code
scored; the tests check that they agree on every branch.

Money is in `currency`, the deployment's reporting currency; durations carry their unit in
their name (days).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.scoring import customer_classes, rfm
from services.scoring.customer_classes import ACTIVE_TIERS, LABELS, ManLead, TierRule
from services.scoring.population import Population, Scores, ScoringConfig

Numbers = dict[str, Any]


@dataclass(frozen=True)
class Explanation:
    code: str
    rule: str
    numbers: Numbers
    en: str
    zh: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "rule": self.rule,
            "numbers": self.numbers,
            "text_en": self.en,
            "text_zh": self.zh,
        }


@dataclass(frozen=True)
class CustomerFacts:
    """One customer's statistics and scores, as the rules read them."""

    recency_score: int
    frequency_score: int
    monetary_score: int
    days_since_last: float
    days_since_first: float
    orders: int
    net_spent: float
    purchase_days: int
    span_days: float
    recent_purchase_days: int
    previous_purchase_days: int
    recent_spend: float
    previous_spend: float
    recent_interactions: int
    previous_interactions: int
    interactions: int
    complaints: int
    strategic_value: float
    p_alive: float | None
    churn_risk: float
    mvc_threshold: float


def facts_of(
    population: Population, scores: Scores, index: int, mvc_threshold: float
) -> CustomerFacts:
    """Customer `index` of a scored population."""
    strategic = population.strategic_value
    p_alive = float(scores.p_alive[index])
    return CustomerFacts(
        recency_score=int(scores.recency_score[index]),
        frequency_score=int(scores.frequency_score[index]),
        monetary_score=int(scores.monetary_score[index]),
        days_since_last=float(population.days_since_last[index]),
        days_since_first=float(population.days_since_first[index]),
        orders=int(population.orders[index]),
        net_spent=float(population.net_spent[index]),
        purchase_days=int(population.purchase_days[index]),
        span_days=float(population.span_days[index]),
        recent_purchase_days=int(population.recent_purchase_days[index]),
        previous_purchase_days=int(population.previous_purchase_days[index]),
        recent_spend=float(population.recent_spend[index]),
        previous_spend=float(population.previous_spend[index]),
        recent_interactions=int(population.recent_interactions[index]),
        previous_interactions=int(population.previous_interactions[index]),
        interactions=int(population.interactions[index]),
        complaints=int(population.complaints[index]),
        strategic_value=0.0 if strategic is None else float(strategic[index]),
        p_alive=None if p_alive != p_alive else p_alive,  # NaN: no model
        churn_risk=float(scores.churn_risk[index]),
        mvc_threshold=mvc_threshold,
    )


def _expected_gap(facts: CustomerFacts, rhythm: customer_classes.RhythmConfig) -> float:
    """customer_classes.expected_gap_days for one customer, in plain arithmetic (a
    request's worth)."""
    gaps = max(facts.purchase_days - 1.0, 0.0)
    span = max(facts.span_days, 0.0)
    return (span + rhythm.prior_weight * rhythm.prior_gap_days) / (gaps + rhythm.prior_weight)


def _fall(recent: float, previous: float) -> float:
    """customer_classes.activity_fall for one pair of counts."""
    return min(max(1.0 - recent / previous, 0.0), 1.0) if previous > 0 else 0.0


def _days(value: float) -> int:
    return round(value)


def _name(kind: str, code: str) -> tuple[str, str]:
    label = LABELS[kind][code]
    return label.en, label.zh


def _rfm(facts: CustomerFacts) -> str:
    return f"R={facts.recency_score} F={facts.frequency_score} M={facts.monetary_score}"


def explain_segment(facts: CustomerFacts) -> Explanation:
    """The RFM grid: R against FM, the mean of F and M rounded half up (rfm.py)."""
    fm = rfm.frequency_monetary_score(facts.frequency_score, facts.monetary_score)
    code = rfm.segment_for(facts.recency_score, facts.frequency_score, facts.monetary_score)
    en, zh = _name("segment", code.value)
    numbers = {
        "recency_score": facts.recency_score,
        "frequency_score": facts.frequency_score,
        "monetary_score": facts.monetary_score,
        "frequency_monetary_score": fm,
        "days_since_last": facts.days_since_last,
        "orders": facts.orders,
        "net_spent": facts.net_spent,
    }
    last = _days(facts.days_since_last)
    return Explanation(
        code.value,
        "segment.rfm_grid",
        numbers,
        f"{en}: {_rfm(facts)} (FM={fm}) on the RFM grid; {facts.orders} orders, "
        f"{facts.net_spent:.2f} spent, last purchase {last} days ago",
        f"{zh}：{_rfm(facts)}（FM={fm}）在 RFM 网格中；{facts.orders} 笔订单，"
        f"消费 {facts.net_spent:.2f}，最近一次购买在 {last} 天前",
    )


def _rule_text(rule: TierRule) -> str:
    bounds = []
    for letter, low, high in (
        ("R", rule.min_recency, rule.max_recency),
        ("F", rule.min_frequency, rule.max_frequency),
        ("M", rule.min_monetary, rule.max_monetary),
    ):
        if low > 1:
            bounds.append(f"{letter}>={low}")
        if high < 5:
            bounds.append(f"{letter}<={high}")
    return ", ".join(bounds) or "any score"


def explain_tier(facts: CustomerFacts, config: ScoringConfig) -> Explanation:
    """customer_classes.tiers_for: the first matching RFM rule, then the churn window, then silence
    beyond the customer's own rhythm."""
    tier = config.tier
    gap = _expected_gap(facts, tier.rhythm)
    matched = next(
        (
            (i, rule)
            for i, rule in enumerate(tier.rules)
            if rule.matches(facts.recency_score, facts.frequency_score, facts.monetary_score)
        ),
        None,
    )
    relative = matched[1].tier if matched else tier.fallback
    numbers: Numbers = {
        "recency_score": facts.recency_score,
        "frequency_score": facts.frequency_score,
        "monetary_score": facts.monetary_score,
        "by_scores": relative.value,
        "days_since_last": facts.days_since_last,
        "expected_gap_days": gap,
        "silent_after_gaps": tier.silent_after_gaps,
        "churn_after_days": tier.churn_after_days,
    }
    last, gap_days = _days(facts.days_since_last), _days(gap)
    rel_en, rel_zh = _name("tier", relative.value)
    if facts.days_since_last >= tier.churn_after_days:
        en, zh = _name("tier", customer_classes.Tier.FORGOTTEN.value)
        return Explanation(
            customer_classes.Tier.FORGOTTEN.value,
            "tier.churn_window",
            numbers,
            f"{en}: last purchase {last} days ago, at or past the churn window of "
            f"{_days(tier.churn_after_days)} days (by {_rfm(facts)} alone: {rel_en})",
            f"{zh}：最近一次购买在 {last} 天前，已达流失窗口 {_days(tier.churn_after_days)} 天"
            f"（仅按 {_rfm(facts)}：{rel_zh}）",
        )
    if relative in ACTIVE_TIERS and facts.days_since_last > tier.silent_after_gaps * gap:
        en, zh = _name("tier", customer_classes.Tier.POTENTIAL.value)
        return Explanation(
            customer_classes.Tier.POTENTIAL.value,
            "tier.silent_beyond_rhythm",
            numbers,
            f"{en}: {_rfm(facts)} would make {rel_en}, but the last purchase {last} days ago "
            f"is more than {tier.silent_after_gaps:g} expected gaps of {gap_days} days",
            f"{zh}：{_rfm(facts)} 本属{rel_zh}，但最近一次购买在 {last} 天前，"
            f"超过 {tier.silent_after_gaps:g} 个预期购买间隔（{gap_days} 天）",
        )
    if matched is None:
        return Explanation(
            relative.value,
            "tier.no_rule_matched",
            numbers,
            f"{rel_en}: {_rfm(facts)} matches no tier rule; last purchase {last} days ago",
            f"{rel_zh}：{_rfm(facts)} 不符合任何分层规则；最近一次购买在 {last} 天前",
        )
    index, rule = matched
    numbers["rule_index"] = index
    return Explanation(
        relative.value,
        "tier.rfm_rule",
        numbers,
        f"{rel_en}: {_rfm(facts)} (rule {index + 1}: {_rule_text(rule)}), last purchase "
        f"{last} days ago, expected gap {gap_days} days",
        f"{rel_zh}：{_rfm(facts)}（规则 {index + 1}：{_rule_text(rule)}），最近一次购买在 "
        f"{last} 天前，预期购买间隔 {gap_days} 天",
    )


def explain_value_class(facts: CustomerFacts, config: ScoringConfig) -> Explanation:
    """customer_classes.value_class: margin x net spend + strategic value - cost to serve, against 0
    and the MVC threshold (the top mvc_top_share of the base's net values)."""
    value = config.value
    margin_value = config.margin * facts.net_spent
    cost = (
        facts.complaints * value.cost_per_complaint
        + facts.interactions * value.cost_per_interaction
    )
    net = margin_value + facts.strategic_value - cost
    code = customer_classes.value_class(
        margin_value, cost, facts.mvc_threshold, facts.strategic_value
    )
    numbers: Numbers = {
        "net_spent": facts.net_spent,
        "margin": config.margin,
        "margin_value": margin_value,
        "strategic_value": facts.strategic_value,
        "complaints": facts.complaints,
        "cost_per_complaint": value.cost_per_complaint,
        "interactions": facts.interactions,
        "cost_per_interaction": value.cost_per_interaction,
        "cost_to_serve": cost,
        "net_value": net,
        "mvc_threshold": facts.mvc_threshold,
        "mvc_top_share": value.mvc_top_share,
    }
    sum_en = (
        f"net value {net:.2f} = margin {margin_value:.2f} ({config.margin:g} x "
        f"{facts.net_spent:.2f} spent) + strategic {facts.strategic_value:.2f} - cost to serve "
        f"{cost:.2f} ({facts.complaints} complaints, {facts.interactions} interactions)"
    )
    sum_zh = (
        f"净价值 {net:.2f} = 毛利 {margin_value:.2f}"
        f"（{config.margin:g} x 消费 {facts.net_spent:.2f}）"
        f"+ 战略价值 {facts.strategic_value:.2f} - 服务成本 {cost:.2f}"
        f"（{facts.complaints} 次投诉，{facts.interactions} 次互动）"
    )
    en, zh = _name("value_class", code.value)
    if code is customer_classes.ValueClass.BZ:
        rule, tail_en, tail_zh = "value.below_zero", "below 0", "低于 0"
    elif code is customer_classes.ValueClass.MVC:
        rule = "value.top_share"
        tail_en = (
            f"at or above {facts.mvc_threshold:.2f}, the top {value.mvc_top_share:.0%} of the base"
        )
        tail_zh = f"不低于 {facts.mvc_threshold:.2f}，位于客户群前 {value.mvc_top_share:.0%}"
    else:
        rule = "value.second_tier"
        tail_en = (
            f"not below 0, under the top-{value.mvc_top_share:.0%} threshold "
            f"{facts.mvc_threshold:.2f}"
        )
        tail_zh = f"不低于 0，但低于前 {value.mvc_top_share:.0%} 的门槛 {facts.mvc_threshold:.2f}"
    return Explanation(
        code.value, rule, numbers, f"{en}: {sum_en}, {tail_en}", f"{zh}：{sum_zh}，{tail_zh}"
    )


def explain_lifecycle(facts: CustomerFacts, config: ScoringConfig) -> Explanation:
    """customer_classes.lifecycle_stages, branch by branch in its order."""
    life = config.lifecycle
    stage = customer_classes.LifecycleStage
    gap = _expected_gap(facts, life.rhythm)
    last, first, gap_days = _days(facts.days_since_last), _days(facts.days_since_first), _days(gap)
    recent, previous = facts.recent_purchase_days, facts.previous_purchase_days
    window = life.trend_window_days
    numbers: Numbers = {
        "purchase_days": facts.purchase_days,
        "days_since_first": facts.days_since_first,
        "days_since_last": facts.days_since_last,
        "expected_gap_days": gap,
        "recent_purchase_days": recent,
        "previous_purchase_days": previous,
        "recent_spend": facts.recent_spend,
        "previous_spend": facts.previous_spend,
        "trend_window_days": window,
    }
    trend_en = (
        f"{recent} purchase days in the last {window} days against {previous} in the "
        f"{window} before"
    )
    trend_zh = f"最近 {window} 天购买 {recent} 天，之前 {window} 天购买 {previous} 天"

    def said(code: customer_classes.LifecycleStage, rule: str, en: str, zh: str) -> Explanation:
        name_en, name_zh = _name("lifecycle", code.value)
        return Explanation(code.value, rule, numbers, f"{name_en}: {en}", f"{name_zh}：{zh}")

    if facts.purchase_days == 0:
        return said(stage.PROSPECT, "lifecycle.never_bought", "no purchase yet", "尚未购买")
    if facts.days_since_last >= life.churn_after_days:
        days = _days(life.churn_after_days)
        return said(
            stage.CHURNED,
            "lifecycle.churn_window",
            f"last purchase {last} days ago, at or past the churn window of {days} days",
            f"最近一次购买在 {last} 天前，已达流失窗口 {days} 天",
        )
    if facts.days_since_last > life.decline_after_gaps * gap:
        gaps = f"{life.decline_after_gaps:g}"
        return said(
            stage.DECLINE,
            "lifecycle.silent_beyond_rhythm",
            f"last purchase {last} days ago, more than {gaps} expected gaps of {gap_days} days",
            f"最近一次购买在 {last} 天前，超过 {gaps} 个预期购买间隔（{gap_days} 天）",
        )
    if (
        facts.days_since_first < life.exploration_days
        or facts.purchase_days <= life.exploration_max_purchase_days
    ):
        return said(
            stage.EXPLORATION,
            "lifecycle.first_purchases",
            f"first purchase {first} days ago, {facts.purchase_days} purchase days (exploring "
            f"for {life.exploration_days} days or up to {life.exploration_max_purchase_days} "
            "purchase days)",
            f"首次购买在 {first} 天前，共 {facts.purchase_days} 个购买日（{life.exploration_days} "
            f"天内或不超过 {life.exploration_max_purchase_days} 个购买日为探索期）",
        )
    if window < life.min_window_purchases * gap:
        return said(
            stage.MATURITY,
            "lifecycle.slow_rhythm",
            f"an expected gap of {gap_days} days is too slow for {window}-day trend windows; "
            "not silent, so stable",
            f"预期购买间隔 {gap_days} 天，{window} 天的趋势窗口不足以判断；未沉默，视为稳定",
        )
    if recent < life.decline_ratio * previous or recent == previous == 0:
        return said(stage.DECLINE, "lifecycle.falling", f"{trend_en}: falling", f"{trend_zh}：下降")
    rising_days = recent > 0 and recent >= life.growth_ratio * previous
    rising_spend = (
        facts.recent_spend > 0 and facts.recent_spend >= life.growth_ratio * facts.previous_spend
    )
    if rising_days or rising_spend:
        return said(
            stage.GROWTH,
            "lifecycle.rising",
            f"{trend_en}, spend {facts.recent_spend:.2f} against "
            f"{facts.previous_spend:.2f}: rising",
            f"{trend_zh}，消费 {facts.recent_spend:.2f} 对比 {facts.previous_spend:.2f}：上升",
        )
    return said(stage.MATURITY, "lifecycle.stable", f"{trend_en}: stable", f"{trend_zh}：稳定")


def explain_prospect() -> Explanation:
    """Lifecycle of a customer known (registered, assessed as a lead) with no purchase that
    counts: a prospect (潜在客户), the stage before exploration."""
    en, zh = _name("lifecycle", customer_classes.LifecycleStage.PROSPECT.value)
    return Explanation(
        customer_classes.LifecycleStage.PROSPECT.value,
        "lifecycle.never_bought",
        {"purchase_days": 0},
        f"{en}: known, but no purchase yet (an order refunded in full is none)",
        f"{zh}：已登记，但尚未购买（全额退款的订单不计）",
    )


def explain_churn(facts: CustomerFacts, config: ScoringConfig) -> Explanation:
    """customer_classes.churn_risk and its level."""
    churn = config.churn
    alive = 1.0 if facts.p_alive is None else facts.p_alive
    purchase_fall = _fall(facts.recent_purchase_days, facts.previous_purchase_days)
    talk_fall = _fall(facts.recent_interactions, facts.previous_interactions)
    level = customer_classes.churn_risk_level(facts.churn_risk, churn)
    numbers: Numbers = {
        "churn_risk": facts.churn_risk,
        "p_alive": facts.p_alive,
        "purchase_fall": purchase_fall,
        "interaction_fall": talk_fall,
        "trend_weight": churn.trend_weight,
        "medium_threshold": churn.medium_threshold,
        "high_threshold": churn.high_threshold,
    }
    source_en = (
        "no purchase model yet, P(alive) taken as 1"
        if facts.p_alive is None
        else (f"P(alive) {alive:.2f}")
    )
    source_zh = "尚无购买模型，P(存活) 取 1" if facts.p_alive is None else f"P(存活) {alive:.2f}"
    formula = (
        f"{facts.churn_risk:.2f} = 1 - {alive:.2f} x (1 - {churn.trend_weight:g} x "
        f"sqrt({purchase_fall:.2f} x {talk_fall:.2f}))"
    )
    en, zh = _name("churn_level", level.value)
    return Explanation(
        level.value,
        f"churn.{level.value}",
        numbers,
        f"{en}: {formula}; {source_en}, purchase frequency fell {purchase_fall:.0%} and "
        f"interactions {talk_fall:.0%}; medium from {churn.medium_threshold:g}, high from "
        f"{churn.high_threshold:g}",
        f"{zh}：{formula}；{source_zh}，购买频率下降 {purchase_fall:.0%}，互动下降 "
        f"{talk_fall:.0%}；{churn.medium_threshold:g} 起为中风险，"
        f"{churn.high_threshold:g} 起为高风险",
    )


# The MAN rule's actions in Chinese, as the course states them.
_MAN_ZH = {
    customer_classes.LeadAction.PURSUE: "理想目标：立即联系",
    customer_classes.LeadAction.CONTACT_WITH_SKILL: "可以接触，需要技巧：培养需求",
    customer_classes.LeadAction.FIND_DECISION_MAKER: "可以接触，并设法找到决策人",
    customer_classes.LeadAction.CHECK_CREDIT: "可以接触，需调查其信用与融资能力",
    customer_classes.LeadAction.NURTURE: "长期培养",
    customer_classes.LeadAction.STOP: "停止接触",
}


def man_action_zh(action: customer_classes.LeadAction) -> str:
    return _MAN_ZH[action]


def explain_man(lead: ManLead) -> Explanation:
    """The MAN rule: money, authority, need (upper case: has it)."""
    has = [
        ("money", lead.money, "资金"),
        ("authority", lead.authority, "决策权"),
        ("need", lead.need, "需求"),
    ]
    en = ", ".join(f"{'has' if yes else 'lacks'} {name}" for name, yes, _ in has)
    zh = "，".join(f"{'有' if yes else '无'}{word}" for _, yes, word in has)
    return Explanation(
        lead.code,
        f"man.{lead.action.value}",
        {"money": lead.money, "authority": lead.authority, "need": lead.need},
        f"{lead.code}: {en}: {lead.advice}",
        f"{lead.code}：{zh}：{man_action_zh(lead.action)}",
    )


def explain_all(facts: CustomerFacts, config: ScoringConfig) -> dict[str, dict[str, Any]]:
    """Every class of a buyer, explained, by the name of the field that carries its code."""
    return {
        "segment": explain_segment(facts).as_dict(),
        "tier": explain_tier(facts, config).as_dict(),
        "value_class": explain_value_class(facts, config).as_dict(),
        "lifecycle": explain_lifecycle(facts, config).as_dict(),
        "churn_level": explain_churn(facts, config).as_dict(),
    }
