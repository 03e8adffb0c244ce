"""Reporting's fold, pure: a batch of events -> the rows it adds to the read models.

The read models (migrations/002_kpis.sql) are of two kinds, both independent of the order
in which events arrive, so that a late event corrects its own past bucket and a rebuild
from the start of the topics gives the same tables:

- additive: per (day, customer, dimension) counters and sums. The consumer runtime hands
  each event id over once, so adding is exact; a redelivery adds nothing.
- keyed: one row per fact, where the latest (or earliest) by the event's own time wins, with
  the event id breaking ties. Within a batch they are reduced here per key, because one
  PostgreSQL upsert cannot touch a row twice.

Distinct counts stay exact because additive rows keep the customer: a window's buyers are a
count(DISTINCT customer_id) over its days, never a sum of daily counts.

Days are local dates in the reporting time zone (`kpi.local_date`). A missing dimension
value (a purchase without a channel, an item without a category) is `UNKNOWN`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_DOWN, Decimal
from functools import cache
from typing import Any, Final, NamedTuple

from services.reporting.kpi import local_date
from shared.events import (
    ClassChanged,
    ComplaintEvent,
    ComplaintFeedback,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintResolved,
    CrisisDetected,
    CustomerRegistered,
    CustomerUpdated,
    Event,
    InteractionLogged,
    LineItem,
    MarketingSpend,
    PurchaseCompleted,
    PurchaseRefunded,
    SlaClockStopped,
    SlaEventData,
    SurveyCsat,
    SurveyNps,
    TierSummary,
)

UNKNOWN: Final = "unknown"
MONEY_QUANTUM: Final = Decimal("0.000001")  # the event contract's finest amount (6 places)
_WHOLE: Final = Decimal(1)
_UNCATEGORISED: Final = ((UNKNOWN,), (_WHOLE,))  # an order without items: categories, shares
CLASS_KINDS: Final = {
    "crm.customer.tier_changed": "tier",
    "crm.customer.segment_changed": "segment",
}
SLA_BREACHED: Final = "crm.complaint.sla_breached"

# Order of facts about the same key: by the event's own time, then its id (deterministic).
Stamp = tuple[datetime, str]
ClockKey = tuple[str, str, int]  # an SLA clock: complaint, SLA metric, cycle


@dataclass
class SaleDelta:
    orders: int = 0
    revenue: Decimal = Decimal(0)  # gross, reporting currency; refunds are kept apart


class Order(NamedTuple):  # one per purchase: a tuple is built in half the time
    completed_at: datetime
    event_id: str
    channel: str
    categories: tuple[str, ...]
    shares: tuple[Decimal, ...]  # fraction of the order's amount per category, sum 1


@dataclass(frozen=True)
class Refund:
    event_id: str
    customer_id: str
    order_id: str
    day: date
    time: datetime
    amount: Decimal
    reason: str | None


@dataclass(frozen=True)
class Latest:
    """A profile field's value and when it was set (latest wins)."""

    at: datetime
    event_id: str
    value: str

    @property
    def stamp(self) -> Stamp:
        return (self.at, self.event_id)


@dataclass(frozen=True)
class ClassRow:
    as_of: datetime
    event_id: str
    value: str


@dataclass(frozen=True)
class TierRow:
    as_of: datetime
    customers: int
    customer_equity: Decimal | None  # None: not known (scoring had no lifetime-value model)
    average_clv: Decimal | None


@dataclass(frozen=True)
class Opening:
    customer_id: str
    at: datetime
    event_id: str
    day: date
    channel: str
    category: str
    priority: str


@dataclass(frozen=True)
class ComplaintMark:
    """A complaint's latest resolution or reopening in the batch."""

    customer_id: str
    at: datetime


@dataclass(frozen=True)
class Resolution:
    event_id: str
    complaint_id: str
    customer_id: str
    day: date


@dataclass(frozen=True)
class Feedback:
    event_id: str
    complaint_id: str
    customer_id: str
    day: date
    score: int


@dataclass(frozen=True)
class ClockStop:
    customer_id: str
    at: datetime
    event_id: str
    day: date
    outcome: str
    elapsed_seconds: float
    target_seconds: float
    tier: str | None
    category: str | None
    channel: str | None


@dataclass(frozen=True)
class Breach:
    customer_id: str
    at: datetime
    event_id: str
    day: date
    tier: str | None
    category: str | None
    channel: str | None


@dataclass(frozen=True)
class Alert:
    event_id: str
    detected_at: datetime
    day: date
    dimension: str
    value: str
    window_start: datetime
    window_end: datetime
    count: int
    baseline: float
    score: float


@dataclass(frozen=True)
class Spend:
    event_id: str
    day: date
    channel: str
    campaign: str | None
    amount: Decimal


@dataclass
class Batch:
    """What one batch of events adds to the read models."""

    sales: dict[tuple[date, str, str], SaleDelta] = field(default_factory=dict)
    # The part of `sales` from orders without line items: all of category UNKNOWN.
    uncategorised: dict[tuple[date, str, str], SaleDelta] = field(default_factory=dict)
    item_category_sales: dict[tuple[date, str, str], SaleDelta] = field(default_factory=dict)
    orders: dict[tuple[str, str], Order] = field(default_factory=dict)  # earliest wins
    refunds: list[Refund] = field(default_factory=list)
    first_purchase: dict[str, date] = field(default_factory=dict)  # least wins
    customer_months: set[tuple[str, date]] = field(default_factory=set)  # (customer, month)
    acquisition_channel: dict[str, Latest] = field(default_factory=dict)
    churn_reason: dict[str, Latest] = field(default_factory=dict)
    classes: dict[tuple[str, str, date], ClassRow] = field(default_factory=dict)
    tier_summaries: dict[tuple[str, date], TierRow] = field(default_factory=dict)
    interactions: dict[tuple[date, str, str], list[int]] = field(default_factory=dict)
    # Per (day, customer, channel, handled_by, mode): interactions (additive).
    interaction_kinds: dict[tuple[date, str, str, str, str], int] = field(default_factory=dict)
    surveys: dict[tuple[date, str, str, str, int], int] = field(default_factory=dict)
    complaint_customers: dict[str, str] = field(default_factory=dict)
    openings: dict[str, Opening] = field(default_factory=dict)  # earliest wins
    resolved: dict[str, ComplaintMark] = field(default_factory=dict)  # latest wins
    reopened: dict[str, ComplaintMark] = field(default_factory=dict)  # latest wins
    resolutions: list[Resolution] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    clocks: dict[ClockKey, ClockStop] = field(default_factory=dict)  # latest
    breaches: dict[ClockKey, Breach] = field(default_factory=dict)  # earliest
    alerts: list[Alert] = field(default_factory=list)
    spend: list[Spend] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not any(getattr(self, name) for name in self.__dataclass_fields__)

    @property
    def category_sales(self) -> dict[tuple[date, str, str], SaleDelta]:
        """Sales per day, customer and category: the line items' categories, and UNKNOWN for
        orders without items (kept with their sales rows, store.py)."""
        merged = {k: SaleDelta(d.orders, d.revenue) for k, d in self.item_category_sales.items()}
        for (day, customer, _), d in self.uncategorised.items():
            into = merged.setdefault((day, customer, UNKNOWN), SaleDelta())
            into.orders += d.orders
            into.revenue += d.revenue
        return merged

    @property
    def buyer_days(self) -> set[tuple[date, str]]:
        return {(day, customer) for day, customer, _ in self.sales}


def fold(events: Iterable[Event], zone: tzinfo) -> Batch:
    """The rows a batch of events adds (`apply` for each event, in any order)."""
    batch = Batch()
    for event in events:
        apply(batch, event, zone)
    return batch


def apply(batch: Batch, event: Event, zone: tzinfo) -> None:
    data = event.data
    handler = _handler_of(type(data))
    if handler is not None:
        handler(batch, event, data, local_date(event.time, zone), zone)


# What an event adds, by the class of its data. A fold handles thousands of events per batch:
# the class is matched against this table once (`_handler_of`), not per event.
Handler = Callable[[Batch, Event, Any, date, tzinfo], None]


@cache
def _handler_of(data_class: type) -> Handler | None:
    """The first handler whose data class `data_class` is (or derives from)."""
    return next((h for kinds, h in _HANDLERS if issubclass(data_class, kinds)), None)


def _purchase(batch: Batch, event: Event, data: PurchaseCompleted, day: date, _: tzinfo) -> None:
    customer, value = event.subject, data.value
    channel = data.channel or UNKNOWN
    sale = batch.sales.get((day, customer, channel))
    if sale is None:
        sale = batch.sales[(day, customer, channel)] = SaleDelta()
    sale.orders += 1
    sale.revenue += value
    if data.items:
        shares = category_shares(data.items)
        for category, amount in split(value, shares).items():
            by_category = batch.item_category_sales.get((day, customer, category))
            if by_category is None:
                by_category = batch.item_category_sales[(day, customer, category)] = SaleDelta()
            by_category.orders += 1
            by_category.revenue += amount
        categories, fractions = tuple(shares), tuple(shares.values())
    else:
        plain = batch.uncategorised.get((day, customer, channel))
        if plain is None:
            plain = batch.uncategorised[(day, customer, channel)] = SaleDelta()
        plain.orders += 1
        plain.revenue += value
        categories, fractions = _UNCATEGORISED
    first = batch.first_purchase.get(customer)
    if first is None or day < first:
        batch.first_purchase[customer] = day
    batch.customer_months.add((customer, day.replace(day=1)))
    order = Order(event.time, event.id, channel, categories, fractions)
    known = batch.orders.get((customer, data.order_id))
    if known is None or (order.completed_at, order.event_id) < (known.completed_at, known.event_id):
        batch.orders[(customer, data.order_id)] = order


def _refund(batch: Batch, event: Event, data: PurchaseRefunded, day: date, _: tzinfo) -> None:
    batch.refunds.append(
        Refund(event.id, event.subject, data.order_id, day, event.time, data.value, data.reason)
    )


def _profile(
    batch: Batch, event: Event, data: CustomerRegistered | CustomerUpdated, _d: date, _z: tzinfo
) -> None:
    if data.acquisition_channel is not None:
        _latest(batch.acquisition_channel, event.subject, event, data.acquisition_channel)
    if data.reason is not None:
        _latest(batch.churn_reason, event.subject, event, data.reason)


def _class_change(batch: Batch, event: Event, data: ClassChanged, _: date, zone: tzinfo) -> None:
    kind = CLASS_KINDS.get(event.type)
    if kind is None:
        return
    key = (event.subject, kind, local_date(data.as_of, zone))
    row = ClassRow(data.as_of, event.id, data.new)
    old = batch.classes.get(key)
    if old is None or (row.as_of, row.event_id) > (old.as_of, old.event_id):
        batch.classes[key] = row


def _tier_summary(batch: Batch, _: Event, data: TierSummary, _d: date, zone: tzinfo) -> None:
    key = (data.tier, local_date(data.as_of, zone))
    row = TierRow(data.as_of, data.customers, data.customer_equity, data.average_clv)
    known = batch.tier_summaries.get(key)
    if known is None or row.as_of >= known.as_of:
        batch.tier_summaries[key] = row


def _interaction(batch: Batch, event: Event, data: InteractionLogged, day: date, _: tzinfo) -> None:
    counts = batch.interactions.setdefault((day, event.subject, data.channel), [0, 0])
    counts[0] += 1
    counts[1] += data.sentiment == "negative"
    kind = (day, event.subject, data.channel, data.handled_by, contact_mode(data.synchronous))
    batch.interaction_kinds[kind] = batch.interaction_kinds.get(kind, 0) + 1


def contact_mode(synchronous: bool | None) -> str:
    """How a contact took place, as the interaction recorded it: synchronous (both sides
    at once: a call, a live chat), asynchronous (email, messages), or unknown when the
    event did not say."""
    if synchronous is None:
        return UNKNOWN
    return "synchronous" if synchronous else "asynchronous"


def _survey(batch: Batch, event: Event, data: SurveyNps | SurveyCsat, day: date, _: tzinfo) -> None:
    kind = "nps" if isinstance(data, SurveyNps) else "csat"
    key = (day, event.subject, kind, data.channel or UNKNOWN, data.score)
    batch.surveys[key] = batch.surveys.get(key, 0) + 1


def _alert(batch: Batch, event: Event, data: CrisisDetected, day: date, _: tzinfo) -> None:
    batch.alerts.append(
        Alert(
            event.id,
            event.time,
            day,
            data.dimension,
            data.value,
            data.window_start,
            data.window_end,
            data.count,
            data.baseline,
            data.score,
        )
    )


def _spend(batch: Batch, event: Event, data: MarketingSpend, day: date, _: tzinfo) -> None:
    first, last = spend_period(data.period_start, data.period_end, day)
    for spend_day, amount in spread(data.value, first, last):
        batch.spend.append(Spend(event.id, spend_day, data.channel, data.campaign, amount))


def _latest(into: dict[str, Latest], customer: str, event: Event, value: str) -> None:
    candidate = Latest(event.time, event.id, value)
    known = into.get(customer)
    if known is None or candidate.stamp > known.stamp:
        into[customer] = candidate


def _complaint(batch: Batch, event: Event, data: ComplaintEvent, day: date, _: tzinfo) -> None:
    complaint, customer = data.complaint_id, event.subject
    batch.complaint_customers.setdefault(complaint, customer)
    if isinstance(data, ComplaintOpened):
        opening = Opening(
            customer, event.time, event.id, day, data.channel, data.category, data.priority
        )
        known = batch.openings.get(complaint)
        if known is None or (opening.at, opening.event_id) < (known.at, known.event_id):
            batch.openings[complaint] = opening
    elif isinstance(data, ComplaintResolved):
        batch.resolutions.append(Resolution(event.id, complaint, customer, day))
        _mark(batch.resolved, complaint, customer, event.time)
    elif isinstance(data, ComplaintReopened):
        _mark(batch.reopened, complaint, customer, event.time)
    elif isinstance(data, ComplaintFeedback):
        batch.feedback.append(Feedback(event.id, complaint, customer, day, data.score))


def _mark(into: dict[str, ComplaintMark], complaint: str, customer: str, at: datetime) -> None:
    known = into.get(complaint)
    if known is None or at > known.at:
        into[complaint] = ComplaintMark(customer, at)


def _sla(batch: Batch, event: Event, data: SlaEventData, day: date, _: tzinfo) -> None:
    key: ClockKey = (data.complaint_id, data.metric, data.cycle)
    if isinstance(data, SlaClockStopped):
        stop = ClockStop(
            event.subject,
            event.time,
            event.id,
            day,
            data.outcome,
            data.elapsed_seconds,
            data.target_seconds,
            data.tier,
            data.category,
            data.channel,
        )
        known = batch.clocks.get(key)
        if known is None or (stop.at, stop.event_id) > (known.at, known.event_id):
            batch.clocks[key] = stop
    elif event.type == SLA_BREACHED:
        breach = Breach(
            event.subject, event.time, event.id, day, data.tier, data.category, data.channel
        )
        found = batch.breaches.get(key)
        if found is None or (breach.at, breach.event_id) < (found.at, found.event_id):
            batch.breaches[key] = breach


# In the order of the checks: SLA events are complaint events that only the SLA tables keep.
_HANDLERS: tuple[tuple[type | tuple[type, ...], Handler], ...] = (
    (PurchaseCompleted, _purchase),
    (PurchaseRefunded, _refund),
    ((CustomerRegistered, CustomerUpdated), _profile),
    (ClassChanged, _class_change),
    (TierSummary, _tier_summary),
    (InteractionLogged, _interaction),
    ((SurveyNps, SurveyCsat), _survey),
    (SlaEventData, _sla),
    (ComplaintEvent, _complaint),
    (CrisisDetected, _alert),
    (MarketingSpend, _spend),
)


# --------------------------------------------------------------------------- SLA verdicts


@dataclass(frozen=True)
class SlaVerdict:
    """What a clock counts as in SLA compliance, and the local day it counts on."""

    day: date
    metric: str
    outcome: str  # "met" or "breached"


def sla_verdicts(
    clocks: dict[ClockKey, ClockStop], breaches: dict[ClockKey, Breach]
) -> dict[ClockKey, SlaVerdict]:
    """Each clock's one verdict for SLA compliance (SLA达标率), from its latest stop and its
    earliest breach (the rows of `sla_clocks` and `sla_breaches`; store.py's `_VERDICTS`
    reads the same rule in SQL):

    - a clock that breached is breached on the day of its breach, whether it ever stops or
      not: a complaint abandoned after its deadline lowers the rate of the breach's period,
      and its later stop (outcome breached) is not a second breach;
    - a clock that never breached counts its latest stop's outcome on the stop's day (met;
      breached only when the stop says so but its breach event is missing);
    - a clock still running before its deadline has no verdict yet.
    """
    found = {key: SlaVerdict(breach.day, key[1], "breached") for key, breach in breaches.items()}
    for key, stop in clocks.items():
        if key not in found:
            found[key] = SlaVerdict(stop.day, key[1], stop.outcome)
    return found


# --------------------------------------------------------------------------- allocation


def category_shares(items: Sequence[LineItem]) -> dict[str, Decimal]:
    """Each line-item category's share of an order, summing to exactly 1.

    Weights are line totals (quantity x unit price) when every item has a unit price, else
    quantities (a price-less order is split by what it holds). An order without items is
    all `UNKNOWN`. Shares are rounded to 6 places; the rounding rest goes to the largest
    share (the first by name among equals), so they always add up to 1.
    """
    if not items:
        return {UNKNOWN: _WHOLE}
    weights = _weights(items, priced=all(item.unit_price is not None for item in items))
    if sum(weights.values(), Decimal(0)) == 0:  # every item free: split by quantity
        weights = _weights(items, priced=False)
    return _apportion(Decimal(1), weights)


def _weights(items: Sequence[LineItem], *, priced: bool) -> dict[str, Decimal]:
    weights: dict[str, Decimal] = {}
    for item in items:
        unit = item.unit_price if priced and item.unit_price is not None else Decimal(1)
        category = item.category or UNKNOWN
        weights[category] = weights.get(category, Decimal(0)) + item.quantity * unit
    return weights


def split(amount: Decimal, shares: dict[str, Decimal]) -> dict[str, Decimal]:
    """`amount` split by `shares` (summing to 1), to 6 places, adding up to `amount`."""
    if len(shares) == 1:  # the usual order, of one category: all of it, as _apportion gives
        return dict.fromkeys(shares, amount.quantize(MONEY_QUANTUM))
    return _apportion(amount, shares)


def _apportion(amount: Decimal, weights: dict[str, Decimal]) -> dict[str, Decimal]:
    total = sum(weights.values(), Decimal(0))
    names = sorted(weights)
    parts = {
        name: (amount * weights[name] / total).quantize(MONEY_QUANTUM, ROUND_DOWN) for name in names
    }
    largest = min(names, key=lambda name: (-weights[name], name))
    parts[largest] += amount - sum(parts.values(), Decimal(0))
    return parts


def spend_period(start: date | None, end: date | None, day: date) -> tuple[date, date]:
    """The days a marketing spend covers: its period (either bound alone is one day), or the
    event's own day when it names none."""
    first, last = start or end or day, end or start or day
    return (first, last) if first <= last else (last, first)


def spread(amount: Decimal, first: date, last: date) -> list[tuple[date, Decimal]]:
    """`amount` spread evenly over the days first..last (inclusive), to 6 places, the rest on
    the last day, so the parts add up to `amount` exactly. CAC then follows any period:
    a monthly budget counts a quarter in a week-long slice of it."""
    days = (last - first).days + 1
    part = (amount / days).quantize(MONEY_QUANTUM, ROUND_DOWN)
    parts = [(first + timedelta(days=i), part) for i in range(days)]
    parts[-1] = (last, amount - part * (days - 1))
    return parts


# --------------------------------------------------------------------------- churn reasons

CHURN_REASONS: Final = ("price", "competitor", "service_quality", "product_quality", "other")
# A complaint's category as a churn reason: what went wrong in
# the service is a service-quality reason, a faulty product a product-quality one, a billing
# dispute a price one.
COMPLAINT_REASON: Final = {
    "service_attitude": "service_quality",
    "service_quality": "service_quality",
    "communication": "service_quality",
    "delivery": "service_quality",
    "product_quality": "product_quality",
    "price_billing": "price",
    "other": "other",
}


def churn_reason(
    recorded: str | None, last_complaint_category: str | None, last_refund_reason: str | None
) -> str:
    """Why a lost customer left (price, competitor, service quality,
    product quality, other), from what was recorded, in order of authority:

    1. the reason on the customer's record (`reason` of crm.customer.registered/.updated, set
       when a customer is marked lapsed or reluctant);
    2. else the category of their last complaint up to the loss, as `COMPLAINT_REASON` maps it;
    3. else the reason of their last refund up to the loss;
    4. else "unknown" (nothing recorded: silence is itself the signal).
    """
    if recorded in CHURN_REASONS:
        return recorded
    if last_complaint_category is not None:
        return COMPLAINT_REASON.get(last_complaint_category, "other")
    if last_refund_reason in CHURN_REASONS:
        return last_refund_reason
    return UNKNOWN
