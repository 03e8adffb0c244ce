"""The KPI catalogue of the API: each metric's ingredients, formula, unit and slices, pure.

`store.py` reads the ingredients of every (period, slice) cell from the read models (sums,
exact distinct counts, score tallies, lists of durations); `METRICS` turns them into KPI
values with the formulas of `kpi.py`, each written once there with its source. Nothing here
does I/O.

Slices (`by`): a metric can be sliced by a dimension when all its sources know it:

- tier, segment: the customer's tier or RFM segment from scoring's derived events
  (crm.customer.tier_changed / .segment_changed), the one in force on the fact's local day
  (for customer-base counts: on the period's first day); a customer scored later than the
  fact counts under their first tier; one never scored is "unscored". SLA facts use the tier
  the complaints service recorded on them when present.
- channel: the purchase's channel for sales, the profile's acquisition channel for the
  customer base, CAC and churn reasons, the marketing spend's channel, the interaction's,
  the survey's and the complaint's channel; crisis alerts raised on the channel dimension.
- category: line-item category for sales (an order's amount is split by line totals), the
  complaint's category for complaints and SLAs; crisis alerts on the category dimension.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any, Final

from services.reporting import kpi
from services.reporting.domain import CHURN_REASONS, UNKNOWN
from services.reporting.kpi import Unit

Value = Decimal | int | float | None


class Dimension(StrEnum):
    TIER = "tier"
    SEGMENT = "segment"
    CHANNEL = "channel"
    CATEGORY = "category"


class Source(StrEnum):
    """The read-model query a metric needs (one query per source and request)."""

    SALES = "sales"
    REPEAT = "repeat"  # buyers and repeat buyers of each period's repeat window
    BASE = "base"  # active, starting, ending, new and lost customers
    MARKETING = "marketing"
    VALUE = "value"
    SURVEYS = "surveys"
    COMPLAINTS = "complaints"
    SLA = "sla"
    CRISIS = "crisis"
    INTERACTIONS = "interactions"


_ALL = frozenset(Dimension)
_CUSTOMER = frozenset({Dimension.TIER, Dimension.SEGMENT, Dimension.CHANNEL})
SOURCE_DIMENSIONS: Final[dict[Source, frozenset[Dimension]]] = {
    Source.SALES: _ALL,
    Source.REPEAT: _ALL,
    Source.BASE: _CUSTOMER,
    Source.MARKETING: frozenset({Dimension.CHANNEL}),
    Source.VALUE: frozenset({Dimension.TIER}),
    Source.SURVEYS: _CUSTOMER,
    Source.COMPLAINTS: _ALL,
    Source.SLA: _ALL,
    Source.CRISIS: frozenset({Dimension.CHANNEL, Dimension.CATEGORY}),
    Source.INTERACTIONS: _CUSTOMER,
}
SLA_METRICS: Final = ("first_response", "next_response", "resolution")


# --------------------------------------------------------------------------- ingredients


@dataclass
class Sales:
    revenue: Decimal = Decimal(0)  # net of refunds
    orders: int = 0
    buyers: int = 0  # distinct customers with 1+ order
    new_buyers: int = 0  # buyers whose first purchase ever is in the period


@dataclass
class Repeat:
    """The period's repeat window (kpi.repeat_window): its buyers and repeat buyers."""

    buyers: int = 0  # distinct customers with 1+ order in the window
    repeat_buyers: int = 0  # of those, with 2+ orders in it (kpi.REPEAT_MIN_ORDERS)


@dataclass
class Base:
    at_start: int = 0  # active on the day before the period
    at_end: int = 0  # active on its last day (today for the current period)
    new: int = 0  # first purchase in the period
    won_back: int = 0  # bought in the period, had before, but was not active at its start
    active: int = 0  # active on at least one day of the period
    lost: int = 0  # of those at the start, inactive for the window on a day of the period
    reasons: Counter[str] = field(default_factory=Counter)  # lost customers per reason


@dataclass
class Marketing:
    spend: Decimal = Decimal(0)


@dataclass
class TierValue:
    tier: str
    customers: int
    customer_equity: Decimal | None  # None: not known (scoring had no lifetime-value model)
    average_clv: Decimal | None


@dataclass
class Lifetime:
    tiers: list[TierValue] = field(default_factory=list)  # the period's last re-score


@dataclass
class Surveys:
    nps: Counter[int] = field(default_factory=Counter)
    csat: Counter[int] = field(default_factory=Counter)


@dataclass
class Complaints:
    opened: int = 0
    opened_resolved: int = 0  # of those opened in the period, resolved now
    resolved: int = 0  # distinct complaints resolved in the period
    feedback: Counter[int] = field(default_factory=Counter)


@dataclass
class Sla:
    met: Counter[str] = field(default_factory=Counter)  # per SLA metric
    breached: Counter[str] = field(default_factory=Counter)
    elapsed: dict[str, list[float]] = field(default_factory=dict)  # business seconds
    breaches: int = 0  # breach events in the period


@dataclass
class Crisis:
    alerts: int = 0


@dataclass
class Interactions:
    interactions: int = 0
    customers: int = 0  # distinct customers who interacted
    negative: int = 0
    # From interaction_kinds (migrations/005): who handled the contact and how.
    by_human: int = 0
    by_bot: int = 0
    synchronous: int = 0
    asynchronous: int = 0  # the rest of interaction_kinds' contacts did not say


class Cell:
    """Everything known about one (period, slice). Each part is made when first read: a
    daily table of a year builds hundreds of cells, and a metric reads one or two parts."""

    def __init__(self, **parts: object) -> None:
        for name, part in parts.items():
            if not isinstance(getattr(type(self), name, None), cached_property):
                raise TypeError(f"a Cell has no part {name!r}")
            setattr(self, name, part)

    @cached_property
    def sales(self) -> Sales:
        return Sales()

    @cached_property
    def repeat(self) -> Repeat:
        return Repeat()

    @cached_property
    def base(self) -> Base:
        return Base()

    @cached_property
    def marketing(self) -> Marketing:
        return Marketing()

    @cached_property
    def value(self) -> Lifetime:
        return Lifetime()

    @cached_property
    def surveys(self) -> Surveys:
        return Surveys()

    @cached_property
    def complaints(self) -> Complaints:
        return Complaints()

    @cached_property
    def sla(self) -> Sla:
        return Sla()

    @cached_property
    def crisis(self) -> Crisis:
        return Crisis()

    @cached_property
    def interactions(self) -> Interactions:
        return Interactions()


# --------------------------------------------------------------------------- formulas

Formula = Callable[[Cell], Value]


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _durations(cell: Cell, metric: str) -> list[timedelta]:
    return [timedelta(seconds=s) for s in cell.sla.elapsed.get(metric, [])]


def _compliance(cell: Cell, metric: str | None) -> Decimal | None:
    names = SLA_METRICS if metric is None else (metric,)
    met = sum(cell.sla.met[m] for m in names)
    breached = sum(cell.sla.breached[m] for m in names)
    return kpi.sla_compliance(met, breached)


def _compliance_of(metric: str) -> Formula:
    return lambda cell: _compliance(cell, metric)


def _lost_for(reason: str) -> Formula:
    return lambda cell: cell.base.reasons[reason]


def _equity(cell: Cell) -> Decimal | None:
    """Unknown (None, "not enough data") unless every tier's equity is known: a sum over the
    tiers that have one would understate it, and read as a fall against the period before."""
    equities = [t.customer_equity for t in cell.value.tiers]
    if not equities or any(e is None for e in equities):
        return None
    return kpi.customer_equity(e for e in equities if e is not None)


def _growth(current: Value, previous: Value) -> Decimal | None:
    if not isinstance(current, int | Decimal) or not isinstance(previous, int | Decimal):
        return None
    return kpi.growth_rate(current, previous)


@dataclass(frozen=True)
class Metric:
    name: str
    group: str
    label_en: str
    label_zh: str
    unit: Unit
    formula: str
    source: str
    sources: tuple[Source, ...]
    compute: Formula
    growth_of: str | None = None  # period-over-period growth of another metric
    dimensions: frozenset[Dimension] | None = None  # default: what all sources know

    @property
    def slices(self) -> frozenset[Dimension]:
        if self.dimensions is not None:
            return self.dimensions
        found = _ALL
        for source in self.sources:
            found &= SOURCE_DIMENSIONS[source]
        return found

    @property
    def snapshot(self) -> bool:
        """A level at the period's end rather than a flow over it."""
        return Source.VALUE in self.sources

    def value(self, cell: Cell, previous: Cell | None) -> Value:
        if self.growth_of is None:
            return self.compute(cell)
        if previous is None:
            return None
        base = METRICS[self.growth_of]
        return _growth(base.compute(cell), base.compute(previous))


# Where a KPI has no published source, its definition is the product's own, written down in
# the repository with the rest of the domain rules.
_D7 = "docs/domain.md, KPIs"
_STEP7 = "docs/domain.md, Complaint handling (step 7: follow-up on satisfaction)"
_NET = "net of refunds (on the refund's day)"


def _m(
    name: str,
    group: str,
    en: str,
    zh: str,
    unit: Unit,
    formula: str,
    source: str,
    sources: tuple[Source, ...],
    compute: Formula,
    *,
    growth_of: str | None = None,
    dimensions: frozenset[Dimension] | None = None,
) -> Metric:
    return Metric(
        name, group, en, zh, unit, formula, source, sources, compute, growth_of, dimensions
    )


S, B, MK, V, SV, C, SL, CR, IN = (
    Source.SALES,
    Source.BASE,
    Source.MARKETING,
    Source.VALUE,
    Source.SURVEYS,
    Source.COMPLAINTS,
    Source.SLA,
    Source.CRISIS,
    Source.INTERACTIONS,
)

# fmt: off
_CATALOGUE: list[Metric] = [
    # Sales
    _m("revenue", "sales", "Revenue", "营业额", Unit.MONEY, f"sum of order amounts, {_NET}",
       _D7, (S,), lambda c: c.sales.revenue),
    _m("orders", "sales", "Orders", "订单数", Unit.COUNT, "number of orders", _D7, (S,),
       lambda c: c.sales.orders),
    _m("average_order_value", "sales", "Average order value", "客单价", Unit.MONEY,
       "revenue / orders (kpi.average_order_value)", _D7, (S,),
       lambda c: kpi.average_order_value(c.sales.revenue, c.sales.orders)),
    _m("buyers", "sales", "Buyers", "购买客户数", Unit.COUNT,
       "distinct customers with 1+ order (exact)", _D7, (S,), lambda c: c.sales.buyers),
    _m("new_buyers", "sales", "New buyers", "新购买客户", Unit.COUNT,
       "buyers whose first purchase ever is in the period (the new customers CAC counts)",
       _D7, (S,), lambda c: c.sales.new_buyers),
    _m("returning_buyers", "sales", "Returning buyers", "回头客", Unit.COUNT,
       "buyers - new buyers (kpi.returning_buyers)", _D7, (S,),
       lambda c: kpi.returning_buyers(c.sales.buyers, c.sales.new_buyers)),
    _m("repeat_purchase_rate", "sales", "Repeat purchase rate", "复购率", Unit.RATIO,
       "customers with 2+ orders / customers with 1+ order, both in the repeat window: the "
       "period, or the REPORTING_REPEAT_WINDOW_DAYS days up to its last day when it is "
       "shorter (kpi.repeat_window, kpi.repeat_purchase_rate)", _D7, (Source.REPEAT,),
       lambda c: kpi.repeat_purchase_rate(c.repeat.repeat_buyers, c.repeat.buyers)),
    _m("revenue_growth", "sales", "Revenue growth", "营业额增长率", Unit.RATIO,
       "(revenue - previous period's) / previous period's (kpi.growth_rate)", _D7, (S,),
       lambda c: None, growth_of="revenue"),
    _m("orders_growth", "sales", "Order growth", "订单增长率", Unit.RATIO,
       "(orders - previous period's) / previous period's (kpi.growth_rate)", _D7, (S,),
       lambda c: None, growth_of="orders"),
    _m("buyers_growth", "sales", "Buyer growth", "购买客户增长率", Unit.RATIO,
       "(buyers - previous period's) / previous period's (kpi.growth_rate)", _D7, (S,),
       lambda c: None, growth_of="buyers"),
    # Acquisition and churn
    _m("marketing_spend", "acquisition", "Marketing spend", "营销费用", Unit.MONEY,
       "spend events spread evenly over the days of their period", _D7, (MK,),
       lambda c: c.marketing.spend),
    _m("cac", "acquisition", "Customer acquisition cost", "获客成本", Unit.MONEY,
       "marketing spend / new customers, those whose first purchase ever is in the period "
       "(new_buyers; kpi.customer_acquisition_cost)", _D7, (MK, B),
       lambda c: kpi.customer_acquisition_cost(c.marketing.spend, c.base.new)),
    _m("won_back_customers", "acquisition", "Won-back customers", "挽回客户数", Unit.COUNT,
       "customers not active at the start who had bought before and bought in the period",
       _D7, (B,), lambda c: c.base.won_back),
    _m("active_customers", "acquisition", "Active customers", "活跃客户数", Unit.COUNT,
       "customers with a purchase within the inactivity window on a day of the period",
       _D7, (B,), lambda c: c.base.active),
    _m("customers_at_start", "acquisition", "Customers at start", "期初客户数", Unit.COUNT,
       "customers active on the day before the period", _D7, (B,),
       lambda c: c.base.at_start),
    _m("customers_at_end", "acquisition", "Customers at end", "期末客户数", Unit.COUNT,
       "customers active on the period's last day (today for the current period)", _D7,
       (B,), lambda c: c.base.at_end),
    _m("lost_customers", "acquisition", "Lost customers", "流失客户数", Unit.COUNT,
       "customers at start whose inactivity window ends in the period", _D7, (B,),
       lambda c: c.base.lost),
    _m("churn_rate", "acquisition", "Churn rate", "流失率", Unit.RATIO,
       "lost customers / customers at start (kpi.churn_rate)", _D7, (B,),
       lambda c: kpi.churn_rate(c.base.lost, c.base.at_start)),
    _m("retention_rate", "acquisition", "Retention rate", "客户保持率", Unit.RATIO,
       "(customers at end - customers acquired) / customers at start, acquired = new + won "
       "back (kpi.retention_rate)",
       "V. Kumar & W. Reinartz, Customer Relationship Management (Springer)", (B,),
       lambda c: kpi.retention_rate(
           c.base.at_end, c.base.new + c.base.won_back, c.base.at_start
       )),
    # Value
    _m("customer_equity", "value", "Customer equity", "客户资产", Unit.MONEY,
       "sum of the tiers' predicted CLV at the period's last re-score (kpi.customer_equity)",
       "Blattberg & Deighton 1996; crm.scoring.tier_summary", (V,), _equity),
    _m("average_clv", "value", "Average CLV", "平均客户终身价值", Unit.MONEY,
       "customer-weighted mean of the tiers' average CLV at the period's last re-score "
       "(kpi.average_clv)", "Blattberg & Deighton 1996; crm.scoring.tier_summary", (V,),
       lambda c: kpi.average_clv((t.customers, t.average_clv) for t in c.value.tiers)),
    _m("scored_customers", "value", "Scored customers", "已评分客户数", Unit.COUNT,
       "customers in the period's last re-score", "crm.scoring.tier_summary", (V,),
       lambda c: sum(t.customers for t in c.value.tiers) if c.value.tiers else None),
    _m("customer_equity_growth", "value", "Customer equity growth", "客户资产增长率",
       Unit.RATIO, "(equity - previous period's) / previous period's (kpi.growth_rate)",
       _D7, (V,), lambda c: None, growth_of="customer_equity"),
    # Satisfaction
    _m("nps", "satisfaction", "Net Promoter Score", "净推荐值", Unit.NPS_POINTS,
       "% of 9-10 answers - % of 0-6 answers (kpi.net_promoter_score)",
       'F. F. Reichheld, "The One Number You Need to Grow", HBR, 2003', (SV,),
       lambda c: kpi.net_promoter_score(c.surveys.nps)),
    _m("nps_responses", "satisfaction", "NPS responses", "NPS答卷数", Unit.COUNT,
       "answers to the 0-10 question", _D7, (SV,), lambda c: c.surveys.nps.total()),
    _m("csat", "satisfaction", "Customer satisfaction (CSAT)", "客户满意度", Unit.PERCENT,
       "% of 4-5 answers on the 1-5 question (kpi.customer_satisfaction_score)", _D7, (SV,),
       lambda c: kpi.customer_satisfaction_score(c.surveys.csat)),
    _m("csat_responses", "satisfaction", "CSAT responses", "满意度答卷数", Unit.COUNT,
       "answers to the 1-5 question", _D7, (SV,), lambda c: c.surveys.csat.total()),
    _m("complaint_feedback_score", "satisfaction", "Complaint feedback score",
       "投诉处理满意度", Unit.SCORE,
       "mean answer (1-5) to the complaint follow-up (kpi.complaint_feedback_score)",
       _STEP7, (C,),
       lambda c: kpi.complaint_feedback_score(c.complaints.feedback)),
    _m("feedback_responses", "satisfaction", "Complaint feedback answers", "投诉回访答卷数",
       Unit.COUNT, "answers to the complaint follow-up", _STEP7, (C,),
       lambda c: c.complaints.feedback.total()),
    # Service
    _m("complaints_opened", "service", "Complaints opened", "新增投诉", Unit.COUNT,
       "complaints opened in the period", _D7, (C,), lambda c: c.complaints.opened),
    _m("complaints_resolved", "service", "Complaints resolved", "已解决投诉", Unit.COUNT,
       "distinct complaints with a resolution in the period", _D7, (C,),
       lambda c: c.complaints.resolved),
    _m("resolution_rate", "service", "Resolution rate", "投诉解决率", Unit.RATIO,
       "of the complaints opened in the period, those resolved now (not reopened since) "
       "(kpi.resolution_rate)", _D7, (C,),
       lambda c: kpi.resolution_rate(c.complaints.opened_resolved, c.complaints.opened)),
    _m("complaints_per_1000_orders", "service", "Complaints per 1,000 orders", "每千单投诉率",
       Unit.PER_THOUSAND_ORDERS,
       "complaints opened in the period / orders in the period x 1,000 "
       "(kpi.complaints_per_thousand_orders)",
       "per 1,000 of the business's volume as in the UK FCA's firm-level complaints data; "
       "orders as the base: docs/domain.md, KPIs", (S, C),
       lambda c: kpi.complaints_per_thousand_orders(c.complaints.opened, c.sales.orders),
       dimensions=frozenset({Dimension.TIER, Dimension.SEGMENT})),
    _m("sla_compliance", "service", "SLA compliance", "SLA达标率", Unit.RATIO,
       "clocks met / (met + breached), all SLA metrics: a breached clock counts on its "
       "breach day, stopped or not, a met one on its stop day, each clock once "
       "(domain.sla_verdicts, kpi.sla_compliance)",
       _D7, (SL,), lambda c: _compliance(c, None)),
    *(
        _m(f"sla_compliance_{metric}", "service", f"SLA compliance: {en}", f"SLA达标率：{zh}",
           Unit.RATIO,
           f"{en} clocks met / (met + breached), breached on the breach day, met on the stop "
           "day (domain.sla_verdicts, kpi.sla_compliance)", _D7, (SL,),
           _compliance_of(metric))
        for metric, en, zh in (
            ("first_response", "first response", "首次响应"),
            ("next_response", "next response", "后续响应"),
            ("resolution", "resolution", "解决"),
        )
    ),
    _m("sla_breaches", "service", "SLA breaches", "SLA违约次数", Unit.COUNT,
       "SLA clocks breached in the period (one per clock cycle)", _D7, (SL,),
       lambda c: c.sla.breaches),
    _m("first_response_time_median", "service", "First response time, median",
       "首次响应时长中位数", Unit.DURATION,
       "median business seconds of first-response clocks stopped in the period "
       "(kpi.median_duration)", _D7, (SL,),
       lambda c: _seconds(kpi.median_duration(_durations(c, "first_response")))),
    _m("first_response_time_p90", "service", "First response time, p90", "首次响应时长P90",
       Unit.DURATION, "90th percentile, business seconds (kpi.p90_duration)", _D7, (SL,),
       lambda c: _seconds(kpi.p90_duration(_durations(c, "first_response")))),
    _m("resolution_time_median", "service", "Resolution time, median", "解决时长中位数",
       Unit.DURATION,
       "median business seconds of resolution clocks stopped in the period "
       "(kpi.median_duration)", _D7, (SL,),
       lambda c: _seconds(kpi.median_duration(_durations(c, "resolution")))),
    _m("resolution_time_p90", "service", "Resolution time, p90", "解决时长P90", Unit.DURATION,
       "90th percentile, business seconds (kpi.p90_duration)", _D7, (SL,),
       lambda c: _seconds(kpi.p90_duration(_durations(c, "resolution")))),
    _m("crisis_alerts", "service", "Crisis alerts", "危机预警", Unit.COUNT,
       "crisis alerts raised in the period", "docs/domain.md, Crises", (CR,),
       lambda c: c.crisis.alerts),
    # Relationship depth
    _m("interactions", "relationship", "Interactions", "互动次数", Unit.COUNT,
       "interactions logged in the period", _D7, (IN,), lambda c: c.interactions.interactions),
    _m("interacting_customers", "relationship", "Interacting customers", "互动客户数",
       Unit.COUNT, "distinct customers with an interaction (exact)", _D7, (IN,),
       lambda c: c.interactions.customers),
    _m("interactions_per_customer", "relationship", "Interactions per customer",
       "人均互动次数", Unit.PER_CUSTOMER,
       "interactions / the distinct customers who made them, in the period "
       "(kpi.interactions_per_customer)", _D7, (IN,),
       lambda c: kpi.interactions_per_customer(
           c.interactions.interactions, c.interactions.customers
       )),
    _m("interactions_by_human", "relationship", "Contacts handled by people", "人工处理互动",
       Unit.COUNT, "interactions handled by a person (handled_by = human)", _D7, (IN,),
       lambda c: c.interactions.by_human),
    _m("interactions_by_bot", "relationship", "Contacts handled by bots", "机器人处理互动",
       Unit.COUNT, "interactions handled by a bot (handled_by = bot)", _D7, (IN,),
       lambda c: c.interactions.by_bot),
    _m("bot_share", "relationship", "Bot-handled share", "机器人处理占比", Unit.RATIO,
       "interactions handled by a bot / interactions handled by a bot or a person "
       "(kpi.contact_share); who handled a contact, not whether the bot resolved it",
       _D7, (IN,),
       lambda c: kpi.contact_share(
           c.interactions.by_bot, c.interactions.by_bot + c.interactions.by_human
       )),
    _m("interactions_synchronous", "relationship", "Synchronous contacts", "同步互动",
       Unit.COUNT, "interactions where both sides took part at once (a call, a live chat: "
       "synchronous = true)", _D7, (IN,), lambda c: c.interactions.synchronous),
    _m("interactions_asynchronous", "relationship", "Asynchronous contacts", "异步互动",
       Unit.COUNT, "interactions answered later (email, messages: synchronous = false)",
       _D7, (IN,), lambda c: c.interactions.asynchronous),
    _m("synchronous_share", "relationship", "Synchronous share", "同步互动占比", Unit.RATIO,
       "synchronous / (synchronous + asynchronous) interactions; those whose mode was not "
       "recorded are in neither (kpi.contact_share)", _D7, (IN,),
       lambda c: kpi.contact_share(
           c.interactions.synchronous, c.interactions.synchronous + c.interactions.asynchronous
       )),
    # Churn reasons
    *(
        _m(f"churn_reason_{reason}", "churn_reasons", f"Lost customers: {en}",
           f"流失原因：{zh}", Unit.COUNT,
           "lost customers whose reason (domain.churn_reason) is " + reason, _D7, (B,),
           _lost_for(reason))
        for reason, en, zh in (
            ("price", "price", "价格"),
            ("competitor", "competitor", "竞争对手"),
            ("service_quality", "service quality", "服务质量"),
            ("product_quality", "product quality", "产品质量"),
            ("other", "other", "其他"),
            (UNKNOWN, "unknown", "未知"),
        )
    ),
]
# fmt: on

METRICS: Final[dict[str, Metric]] = {metric.name: metric for metric in _CATALOGUE}
assert {f"churn_reason_{r}" for r in CHURN_REASONS} <= set(METRICS)

SUMMARY_METRICS: Final = (
    "revenue",
    "orders",
    "average_order_value",
    "buyers",
    "new_buyers",
    "repeat_purchase_rate",
    "churn_rate",
    "nps",
    "csat",
    "sla_compliance",
    "resolution_rate",
    "customer_equity",
)


def sources_of(names: list[str]) -> set[Source]:
    return {source for name in names for source in METRICS[name].sources}


# --------------------------------------------------------------------------- presentation

_CENT = Decimal("0.01")


def present(value: Value, unit: Unit) -> str | int | float | None:
    """A value as the API shows it: money as a string with cents (exact decimal), counts as
    integers, ratios to 6 places, points and scores to 4, durations in seconds to 3."""
    if value is None:
        return None
    if unit is Unit.MONEY:
        return str(Decimal(value).quantize(_CENT, ROUND_HALF_EVEN))
    if unit is Unit.COUNT:
        return int(value)
    places = {Unit.RATIO: 6, Unit.DURATION: 3}.get(unit, 4)
    return round(float(value), places)


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Period:
    start: date
    last: date  # inclusive
    previous: date | None = None  # start of the period before (for growth)


def table(
    cells: Mapping[tuple[date, str], Cell],
    periods: list[Period],
    names: list[str],
    by: Dimension | None,
) -> list[dict[str, Any]]:
    """One row per period and slice (dense: every slice seen in the range, in every period),
    each with the requested metrics as the API presents them."""
    wanted = {p.start for p in periods}
    slices = sorted({s for (start, s) in cells if start in wanted}) if by else [""]
    rows = []
    for period in periods:
        for slice_ in slices:
            cell = cells.get((period.start, slice_)) or Cell()
            previous = None
            if period.previous is not None:
                previous = cells.get((period.previous, slice_)) or Cell()
            row: dict[str, Any] = {"period": period.start, "period_end": period.last}
            if by is not None:
                row[by.value] = slice_
            for name in names:
                metric = METRICS[name]
                row[name] = present(metric.value(cell, previous), metric.unit)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- cohorts

COHORT_RETENTION: Final = {
    "name": "cohort_retention",
    "label_en": "Cohort retention",
    "label_zh": "同期群留存率",
    "unit": Unit.RATIO,
    "formula": "of the customers whose first purchase ever is in month f (the cohort), the "
    "share who bought in month f + k, k = 0, 1, 2, ... months since (kpi.cohort_retention); "
    "a customer counts in every month they bought in, so a share can rise again",
    "source": 'P. S. Fader & B. G. S. Hardie, "Forecasting Repeat Sales at CDNOW: A Case '
    'Study", Interfaces 31(3), 2001 (cohorts of new customers by first purchase)',
}


def cohort_rows(
    sizes: Mapping[date, int],
    active: Mapping[tuple[date, date], int],
    months: list[date],
    current: date,
) -> list[dict[str, Any]]:
    """One row per cohort month in `months` (first days, ascending): its customers and, for
    k = 0 .. the months up to `current` (the month of today, counted so far), the buyers of
    month f + k among them and their share (None for an empty cohort)."""
    rows = []
    for cohort in months:
        size = sizes.get(cohort, 0)
        counts = [
            active.get((cohort, kpi.add_months(cohort, k)), 0)
            for k in range(kpi.months_between(cohort, current) + 1)
        ]
        rows.append(
            {
                "cohort": cohort,
                "customers": size,
                "active": counts,
                "retention": [present(kpi.cohort_retention(n, size), Unit.RATIO) for n in counts],
            }
        )
    return rows
