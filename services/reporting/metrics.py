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


_ALL_DIMENSIONS = frozenset(Dimension)
_CUSTOMER_DIMENSIONS = frozenset({Dimension.TIER, Dimension.SEGMENT, Dimension.CHANNEL})
SOURCE_DIMENSIONS: Final[dict[Source, frozenset[Dimension]]] = {
    Source.SALES: _ALL_DIMENSIONS,
    Source.REPEAT: _ALL_DIMENSIONS,
    Source.BASE: _CUSTOMER_DIMENSIONS,
    Source.MARKETING: frozenset({Dimension.CHANNEL}),
    Source.VALUE: frozenset({Dimension.TIER}),
    Source.SURVEYS: _CUSTOMER_DIMENSIONS,
    Source.COMPLAINTS: _ALL_DIMENSIONS,
    Source.SLA: _ALL_DIMENSIONS,
    Source.CRISIS: frozenset({Dimension.CHANNEL, Dimension.CATEGORY}),
    Source.INTERACTIONS: _CUSTOMER_DIMENSIONS,
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


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One KPI of the catalogue: what GET /v1/kpis/metrics says of it, the read-model queries
    it needs and how its value is computed from them. Written with keywords, so that each
    line of the catalogue says what it sets."""

    name: str
    group: str  # the section it is listed in (sales, acquisition, value, ...)
    label_en: str
    label_zh: str
    unit: Unit
    formula: str  # the formula in words, as the API shows it
    source: str  # where the definition comes from: a publication, or the product's own
    sources: tuple[Source, ...]  # the read-model queries its value needs
    compute: Formula | None = None  # its value from a cell; None for a growth metric
    growth_of: str | None = None  # period-over-period growth of another metric
    dimensions: frozenset[Dimension] | None = None  # default: what all sources know

    def __post_init__(self) -> None:
        if (self.compute is None) == (self.growth_of is None):
            raise ValueError(f"metric {self.name}: give either compute or growth_of")

    @property
    def slices(self) -> frozenset[Dimension]:
        if self.dimensions is not None:
            return self.dimensions
        found = _ALL_DIMENSIONS
        for source in self.sources:
            found &= SOURCE_DIMENSIONS[source]
        return found

    @property
    def snapshot(self) -> bool:
        """A level at the period's end rather than a flow over it."""
        return Source.VALUE in self.sources

    def value(self, cell: Cell, previous: Cell | None) -> Value:
        if self.growth_of is None:
            return self._own_value(cell)
        if previous is None:
            return None
        base = METRICS[self.growth_of]
        return _growth(base._own_value(cell), base._own_value(previous))

    def _own_value(self, cell: Cell) -> Value:
        if self.compute is None:
            raise ValueError(f"{self.name} is a growth metric: its value needs the period before")
        return self.compute(cell)


# Where a KPI has no published source, its definition is the product's own, written down in
# the repository with the rest of the domain rules.
PRODUCT_DEFINITION: Final = "docs/domain.md, KPIs"
COMPLAINT_FOLLOW_UP_DEFINITION: Final = (
    "docs/domain.md, Complaint handling (step 7: follow-up on satisfaction)"
)

_CATALOGUE: list[Metric] = [
    # Sales
    Metric(
        name="revenue",
        group="sales",
        label_en="Revenue",
        label_zh="营业额",
        unit=Unit.MONEY,
        formula="sum of order amounts, net of refunds (on the refund's day)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SALES,),
        compute=lambda cell: cell.sales.revenue,
    ),
    Metric(
        name="orders",
        group="sales",
        label_en="Orders",
        label_zh="订单数",
        unit=Unit.COUNT,
        formula="number of orders",
        source=PRODUCT_DEFINITION,
        sources=(Source.SALES,),
        compute=lambda cell: cell.sales.orders,
    ),
    Metric(
        name="average_order_value",
        group="sales",
        label_en="Average order value",
        label_zh="客单价",
        unit=Unit.MONEY,
        formula="revenue / orders (kpi.average_order_value)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SALES,),
        compute=lambda cell: kpi.average_order_value(cell.sales.revenue, cell.sales.orders),
    ),
    Metric(
        name="buyers",
        group="sales",
        label_en="Buyers",
        label_zh="购买客户数",
        unit=Unit.COUNT,
        formula="distinct customers with 1+ order (exact)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SALES,),
        compute=lambda cell: cell.sales.buyers,
    ),
    Metric(
        name="new_buyers",
        group="sales",
        label_en="New buyers",
        label_zh="新购买客户",
        unit=Unit.COUNT,
        formula="buyers whose first purchase ever is in the period (the new customers CAC counts)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SALES,),
        compute=lambda cell: cell.sales.new_buyers,
    ),
    Metric(
        name="returning_buyers",
        group="sales",
        label_en="Returning buyers",
        label_zh="回头客",
        unit=Unit.COUNT,
        formula="buyers - new buyers (kpi.returning_buyers)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SALES,),
        compute=lambda cell: kpi.returning_buyers(cell.sales.buyers, cell.sales.new_buyers),
    ),
    Metric(
        name="repeat_purchase_rate",
        group="sales",
        label_en="Repeat purchase rate",
        label_zh="复购率",
        unit=Unit.RATIO,
        formula="customers with 2+ orders / customers with 1+ order, both in the repeat window: "
        "the period, or the REPORTING_REPEAT_WINDOW_DAYS days up to its last day when it is "
        "shorter (kpi.repeat_window, kpi.repeat_purchase_rate)",
        source=PRODUCT_DEFINITION,
        sources=(Source.REPEAT,),
        compute=lambda cell: kpi.repeat_purchase_rate(
            cell.repeat.repeat_buyers, cell.repeat.buyers
        ),
    ),
    Metric(
        name="revenue_growth",
        group="sales",
        label_en="Revenue growth",
        label_zh="营业额增长率",
        unit=Unit.RATIO,
        formula="(revenue - previous period's) / previous period's (kpi.growth_rate)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SALES,),
        growth_of="revenue",
    ),
    Metric(
        name="orders_growth",
        group="sales",
        label_en="Order growth",
        label_zh="订单增长率",
        unit=Unit.RATIO,
        formula="(orders - previous period's) / previous period's (kpi.growth_rate)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SALES,),
        growth_of="orders",
    ),
    Metric(
        name="buyers_growth",
        group="sales",
        label_en="Buyer growth",
        label_zh="购买客户增长率",
        unit=Unit.RATIO,
        formula="(buyers - previous period's) / previous period's (kpi.growth_rate)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SALES,),
        growth_of="buyers",
    ),
    # Acquisition and churn
    Metric(
        name="marketing_spend",
        group="acquisition",
        label_en="Marketing spend",
        label_zh="营销费用",
        unit=Unit.MONEY,
        formula="spend events spread evenly over the days of their period",
        source=PRODUCT_DEFINITION,
        sources=(Source.MARKETING,),
        compute=lambda cell: cell.marketing.spend,
    ),
    Metric(
        name="cac",
        group="acquisition",
        label_en="Customer acquisition cost",
        label_zh="获客成本",
        unit=Unit.MONEY,
        formula="marketing spend / new customers, those whose first purchase ever is in the period "
        "(new_buyers; kpi.customer_acquisition_cost)",
        source=PRODUCT_DEFINITION,
        sources=(Source.MARKETING, Source.BASE),
        compute=lambda cell: kpi.customer_acquisition_cost(cell.marketing.spend, cell.base.new),
    ),
    Metric(
        name="won_back_customers",
        group="acquisition",
        label_en="Won-back customers",
        label_zh="挽回客户数",
        unit=Unit.COUNT,
        formula="customers not active at the start who had bought before and bought in the period",
        source=PRODUCT_DEFINITION,
        sources=(Source.BASE,),
        compute=lambda cell: cell.base.won_back,
    ),
    Metric(
        name="active_customers",
        group="acquisition",
        label_en="Active customers",
        label_zh="活跃客户数",
        unit=Unit.COUNT,
        formula="customers with a purchase within the inactivity window on a day of the period",
        source=PRODUCT_DEFINITION,
        sources=(Source.BASE,),
        compute=lambda cell: cell.base.active,
    ),
    Metric(
        name="customers_at_start",
        group="acquisition",
        label_en="Customers at start",
        label_zh="期初客户数",
        unit=Unit.COUNT,
        formula="customers active on the day before the period",
        source=PRODUCT_DEFINITION,
        sources=(Source.BASE,),
        compute=lambda cell: cell.base.at_start,
    ),
    Metric(
        name="customers_at_end",
        group="acquisition",
        label_en="Customers at end",
        label_zh="期末客户数",
        unit=Unit.COUNT,
        formula="customers active on the period's last day (today for the current period)",
        source=PRODUCT_DEFINITION,
        sources=(Source.BASE,),
        compute=lambda cell: cell.base.at_end,
    ),
    Metric(
        name="lost_customers",
        group="acquisition",
        label_en="Lost customers",
        label_zh="流失客户数",
        unit=Unit.COUNT,
        formula="customers at start whose inactivity window ends in the period",
        source=PRODUCT_DEFINITION,
        sources=(Source.BASE,),
        compute=lambda cell: cell.base.lost,
    ),
    Metric(
        name="churn_rate",
        group="acquisition",
        label_en="Churn rate",
        label_zh="流失率",
        unit=Unit.RATIO,
        formula="lost customers / customers at start (kpi.churn_rate)",
        source=PRODUCT_DEFINITION,
        sources=(Source.BASE,),
        compute=lambda cell: kpi.churn_rate(cell.base.lost, cell.base.at_start),
    ),
    Metric(
        name="retention_rate",
        group="acquisition",
        label_en="Retention rate",
        label_zh="客户保持率",
        unit=Unit.RATIO,
        formula="(customers at end - customers acquired) / customers at start, acquired = new "
        "+ won back (kpi.retention_rate)",
        source="V. Kumar & W. Reinartz, Customer Relationship Management (Springer)",
        sources=(Source.BASE,),
        compute=lambda cell: kpi.retention_rate(
            cell.base.at_end, cell.base.new + cell.base.won_back, cell.base.at_start
        ),
    ),
    # Value
    Metric(
        name="customer_equity",
        group="value",
        label_en="Customer equity",
        label_zh="客户资产",
        unit=Unit.MONEY,
        formula="sum of the tiers' predicted CLV at the period's last re-score "
        "(kpi.customer_equity)",
        source="Blattberg & Deighton 1996; crm.scoring.tier_summary",
        sources=(Source.VALUE,),
        compute=_equity,
    ),
    Metric(
        name="average_clv",
        group="value",
        label_en="Average CLV",
        label_zh="平均客户终身价值",
        unit=Unit.MONEY,
        formula="customer-weighted mean of the tiers' average CLV at the period's last re-score "
        "(kpi.average_clv)",
        source="Blattberg & Deighton 1996; crm.scoring.tier_summary",
        sources=(Source.VALUE,),
        compute=lambda cell: kpi.average_clv(
            (t.customers, t.average_clv) for t in cell.value.tiers
        ),
    ),
    Metric(
        name="scored_customers",
        group="value",
        label_en="Scored customers",
        label_zh="已评分客户数",
        unit=Unit.COUNT,
        formula="customers in the period's last re-score",
        source="crm.scoring.tier_summary",
        sources=(Source.VALUE,),
        compute=lambda cell: (
            sum(t.customers for t in cell.value.tiers) if cell.value.tiers else None
        ),
    ),
    Metric(
        name="customer_equity_growth",
        group="value",
        label_en="Customer equity growth",
        label_zh="客户资产增长率",
        unit=Unit.RATIO,
        formula="(equity - previous period's) / previous period's (kpi.growth_rate)",
        source=PRODUCT_DEFINITION,
        sources=(Source.VALUE,),
        growth_of="customer_equity",
    ),
    # Satisfaction
    Metric(
        name="nps",
        group="satisfaction",
        label_en="Net Promoter Score",
        label_zh="净推荐值",
        unit=Unit.NPS_POINTS,
        formula="% of 9-10 answers - % of 0-6 answers (kpi.net_promoter_score)",
        source='F. F. Reichheld, "The One Number You Need to Grow", HBR, 2003',
        sources=(Source.SURVEYS,),
        compute=lambda cell: kpi.net_promoter_score(cell.surveys.nps),
    ),
    Metric(
        name="nps_responses",
        group="satisfaction",
        label_en="NPS responses",
        label_zh="NPS答卷数",
        unit=Unit.COUNT,
        formula="answers to the 0-10 question",
        source=PRODUCT_DEFINITION,
        sources=(Source.SURVEYS,),
        compute=lambda cell: cell.surveys.nps.total(),
    ),
    Metric(
        name="csat",
        group="satisfaction",
        label_en="Customer satisfaction (CSAT)",
        label_zh="客户满意度",
        unit=Unit.PERCENT,
        formula="% of 4-5 answers on the 1-5 question (kpi.customer_satisfaction_score)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SURVEYS,),
        compute=lambda cell: kpi.customer_satisfaction_score(cell.surveys.csat),
    ),
    Metric(
        name="csat_responses",
        group="satisfaction",
        label_en="CSAT responses",
        label_zh="满意度答卷数",
        unit=Unit.COUNT,
        formula="answers to the 1-5 question",
        source=PRODUCT_DEFINITION,
        sources=(Source.SURVEYS,),
        compute=lambda cell: cell.surveys.csat.total(),
    ),
    Metric(
        name="complaint_feedback_score",
        group="satisfaction",
        label_en="Complaint feedback score",
        label_zh="投诉处理满意度",
        unit=Unit.SCORE,
        formula="mean answer (1-5) to the complaint follow-up (kpi.complaint_feedback_score)",
        source=COMPLAINT_FOLLOW_UP_DEFINITION,
        sources=(Source.COMPLAINTS,),
        compute=lambda cell: kpi.complaint_feedback_score(cell.complaints.feedback),
    ),
    Metric(
        name="feedback_responses",
        group="satisfaction",
        label_en="Complaint feedback answers",
        label_zh="投诉回访答卷数",
        unit=Unit.COUNT,
        formula="answers to the complaint follow-up",
        source=COMPLAINT_FOLLOW_UP_DEFINITION,
        sources=(Source.COMPLAINTS,),
        compute=lambda cell: cell.complaints.feedback.total(),
    ),
    # Service
    Metric(
        name="complaints_opened",
        group="service",
        label_en="Complaints opened",
        label_zh="新增投诉",
        unit=Unit.COUNT,
        formula="complaints opened in the period",
        source=PRODUCT_DEFINITION,
        sources=(Source.COMPLAINTS,),
        compute=lambda cell: cell.complaints.opened,
    ),
    Metric(
        name="complaints_resolved",
        group="service",
        label_en="Complaints resolved",
        label_zh="已解决投诉",
        unit=Unit.COUNT,
        formula="distinct complaints with a resolution in the period",
        source=PRODUCT_DEFINITION,
        sources=(Source.COMPLAINTS,),
        compute=lambda cell: cell.complaints.resolved,
    ),
    Metric(
        name="resolution_rate",
        group="service",
        label_en="Resolution rate",
        label_zh="投诉解决率",
        unit=Unit.RATIO,
        formula="of the complaints opened in the period, those resolved now (not reopened since) "
        "(kpi.resolution_rate)",
        source=PRODUCT_DEFINITION,
        sources=(Source.COMPLAINTS,),
        compute=lambda cell: kpi.resolution_rate(
            cell.complaints.opened_resolved, cell.complaints.opened
        ),
    ),
    Metric(
        name="complaints_per_1000_orders",
        group="service",
        label_en="Complaints per 1,000 orders",
        label_zh="每千单投诉率",
        unit=Unit.PER_THOUSAND_ORDERS,
        formula="complaints opened in the period / orders in the period x 1,000 "
        "(kpi.complaints_per_thousand_orders)",
        source="per 1,000 of the business's volume as in the UK FCA's firm-level complaints data; "
        "orders as the base: docs/domain.md, KPIs",
        sources=(Source.SALES, Source.COMPLAINTS),
        compute=lambda cell: kpi.complaints_per_thousand_orders(
            cell.complaints.opened, cell.sales.orders
        ),
        dimensions=frozenset({Dimension.TIER, Dimension.SEGMENT}),
    ),
    Metric(
        name="sla_compliance",
        group="service",
        label_en="SLA compliance",
        label_zh="SLA达标率",
        unit=Unit.RATIO,
        formula="clocks met / (met + breached), all SLA metrics: a breached clock counts on its "
        "breach day, stopped or not, a met one on its stop day, each clock once "
        "(domain.sla_verdicts, kpi.sla_compliance)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SLA,),
        compute=lambda cell: _compliance(cell, None),
    ),
    *(
        Metric(
            name=f"sla_compliance_{metric}",
            group="service",
            label_en=f"SLA compliance: {en}",
            label_zh=f"SLA达标率：{zh}",
            unit=Unit.RATIO,
            formula=f"{en} clocks met / (met + breached), breached on the breach day, met on the "
            "stop day (domain.sla_verdicts, kpi.sla_compliance)",
            source=PRODUCT_DEFINITION,
            sources=(Source.SLA,),
            compute=_compliance_of(metric),
        )
        for metric, en, zh in (
            ("first_response", "first response", "首次响应"),
            ("next_response", "next response", "后续响应"),
            ("resolution", "resolution", "解决"),
        )
    ),
    Metric(
        name="sla_breaches",
        group="service",
        label_en="SLA breaches",
        label_zh="SLA违约次数",
        unit=Unit.COUNT,
        formula="SLA clocks breached in the period (one per clock cycle)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SLA,),
        compute=lambda cell: cell.sla.breaches,
    ),
    Metric(
        name="first_response_time_median",
        group="service",
        label_en="First response time, median",
        label_zh="首次响应时长中位数",
        unit=Unit.DURATION,
        formula="median business seconds of first-response clocks stopped in the period "
        "(kpi.median_duration)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SLA,),
        compute=lambda cell: _seconds(kpi.median_duration(_durations(cell, "first_response"))),
    ),
    Metric(
        name="first_response_time_p90",
        group="service",
        label_en="First response time, p90",
        label_zh="首次响应时长P90",
        unit=Unit.DURATION,
        formula="90th percentile, business seconds (kpi.p90_duration)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SLA,),
        compute=lambda cell: _seconds(kpi.p90_duration(_durations(cell, "first_response"))),
    ),
    Metric(
        name="resolution_time_median",
        group="service",
        label_en="Resolution time, median",
        label_zh="解决时长中位数",
        unit=Unit.DURATION,
        formula="median business seconds of resolution clocks stopped in the period "
        "(kpi.median_duration)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SLA,),
        compute=lambda cell: _seconds(kpi.median_duration(_durations(cell, "resolution"))),
    ),
    Metric(
        name="resolution_time_p90",
        group="service",
        label_en="Resolution time, p90",
        label_zh="解决时长P90",
        unit=Unit.DURATION,
        formula="90th percentile, business seconds (kpi.p90_duration)",
        source=PRODUCT_DEFINITION,
        sources=(Source.SLA,),
        compute=lambda cell: _seconds(kpi.p90_duration(_durations(cell, "resolution"))),
    ),
    Metric(
        name="crisis_alerts",
        group="service",
        label_en="Crisis alerts",
        label_zh="危机预警",
        unit=Unit.COUNT,
        formula="crisis alerts raised in the period",
        source="docs/domain.md, Crises",
        sources=(Source.CRISIS,),
        compute=lambda cell: cell.crisis.alerts,
    ),
    # Relationship depth
    Metric(
        name="interactions",
        group="relationship",
        label_en="Interactions",
        label_zh="互动次数",
        unit=Unit.COUNT,
        formula="interactions logged in the period",
        source=PRODUCT_DEFINITION,
        sources=(Source.INTERACTIONS,),
        compute=lambda cell: cell.interactions.interactions,
    ),
    Metric(
        name="interacting_customers",
        group="relationship",
        label_en="Interacting customers",
        label_zh="互动客户数",
        unit=Unit.COUNT,
        formula="distinct customers with an interaction (exact)",
        source=PRODUCT_DEFINITION,
        sources=(Source.INTERACTIONS,),
        compute=lambda cell: cell.interactions.customers,
    ),
    Metric(
        name="interactions_per_customer",
        group="relationship",
        label_en="Interactions per customer",
        label_zh="人均互动次数",
        unit=Unit.PER_CUSTOMER,
        formula="interactions / the distinct customers who made them, in the period "
        "(kpi.interactions_per_customer)",
        source=PRODUCT_DEFINITION,
        sources=(Source.INTERACTIONS,),
        compute=lambda cell: kpi.interactions_per_customer(
            cell.interactions.interactions, cell.interactions.customers
        ),
    ),
    Metric(
        name="interactions_by_human",
        group="relationship",
        label_en="Contacts handled by people",
        label_zh="人工处理互动",
        unit=Unit.COUNT,
        formula="interactions handled by a person (handled_by = human)",
        source=PRODUCT_DEFINITION,
        sources=(Source.INTERACTIONS,),
        compute=lambda cell: cell.interactions.by_human,
    ),
    Metric(
        name="interactions_by_bot",
        group="relationship",
        label_en="Contacts handled by bots",
        label_zh="机器人处理互动",
        unit=Unit.COUNT,
        formula="interactions handled by a bot (handled_by = bot)",
        source=PRODUCT_DEFINITION,
        sources=(Source.INTERACTIONS,),
        compute=lambda cell: cell.interactions.by_bot,
    ),
    Metric(
        name="bot_share",
        group="relationship",
        label_en="Bot-handled share",
        label_zh="机器人处理占比",
        unit=Unit.RATIO,
        formula="interactions handled by a bot / interactions handled by a bot or a person "
        "(kpi.contact_share); who handled a contact, not whether the bot resolved it",
        source=PRODUCT_DEFINITION,
        sources=(Source.INTERACTIONS,),
        compute=lambda cell: kpi.contact_share(
            cell.interactions.by_bot, cell.interactions.by_bot + cell.interactions.by_human
        ),
    ),
    Metric(
        name="interactions_synchronous",
        group="relationship",
        label_en="Synchronous contacts",
        label_zh="同步互动",
        unit=Unit.COUNT,
        formula="interactions where both sides took part at once (a call, a live chat: "
        "synchronous = true)",
        source=PRODUCT_DEFINITION,
        sources=(Source.INTERACTIONS,),
        compute=lambda cell: cell.interactions.synchronous,
    ),
    Metric(
        name="interactions_asynchronous",
        group="relationship",
        label_en="Asynchronous contacts",
        label_zh="异步互动",
        unit=Unit.COUNT,
        formula="interactions answered later (email, messages: synchronous = false)",
        source=PRODUCT_DEFINITION,
        sources=(Source.INTERACTIONS,),
        compute=lambda cell: cell.interactions.asynchronous,
    ),
    Metric(
        name="synchronous_share",
        group="relationship",
        label_en="Synchronous share",
        label_zh="同步互动占比",
        unit=Unit.RATIO,
        formula="synchronous / (synchronous + asynchronous) interactions; those whose mode was not "
        "recorded are in neither (kpi.contact_share)",
        source=PRODUCT_DEFINITION,
        sources=(Source.INTERACTIONS,),
        compute=lambda cell: kpi.contact_share(
            cell.interactions.synchronous,
            cell.interactions.synchronous + cell.interactions.asynchronous,
        ),
    ),
    # Churn reasons
    *(
        Metric(
            name=f"churn_reason_{reason}",
            group="churn_reasons",
            label_en=f"Lost customers: {en}",
            label_zh=f"流失原因：{zh}",
            unit=Unit.COUNT,
            formula="lost customers whose reason (domain.churn_reason) is " + reason,
            source=PRODUCT_DEFINITION,
            sources=(Source.BASE,),
            compute=_lost_for(reason),
        )
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
