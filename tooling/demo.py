"""The demo history: a synthetic shop simulated from published models, as CloudEvents.

Pure: ``simulate(DemoParams)`` returns the raw events (JSON-ready dicts) for a seed and
parameters, with no I/O and no clock; ``posting_order`` sorts them for loading. Posting them
is `tooling.demo_post` (`crm demo`).

The models (their sources; docs/demo.md says more):

* Purchases: BG/NBD (P. S. Fader, B. G. S. Hardie, K. L. Lee, "Counting Your Customers the
  Easy Way: An Alternative to the Pareto/NBD Model", Marketing Science 24(2), 2005), with the
  CDNOW parameters that paper estimates, per week: r = 0.243, alpha = 4.414, a = 0.793,
  b = 2.426. A buyer's first purchase is time 0; repeat purchases follow a Poisson process of
  rate lambda ~ Gamma(r, alpha); after each repeat purchase the buyer drops out for good with
  probability p ~ Beta(a, b).
* Spend per purchase: Gamma-Gamma (P. S. Fader, B. G. S. Hardie, K. L. Lee, "RFM and CLV:
  Using Iso-Value Curves for Customer Base Analysis", Journal of Marketing Research 42(4),
  2005), CDNOW parameters p = 6.25, q = 3.74, gamma = 15.44: a customer's mean spend is p/nu
  with nu ~ Gamma(q, gamma), and each purchase's value is Gamma(p, nu), in USD.
* Seasonality (our assumption, not fitted: shaped like online retail with its weekend dip,
  evening peak and November-December high season): the purchase rate is multiplied by a
  weekday, a month and an hour-of-day factor, each averaging 1, and realised by thinning
  (P. A. W. Lewis, G. S. Shedler, "Simulation of nonhomogeneous Poisson processes by
  thinning", Naval Research Logistics Quarterly 26(3), 1979). ``seasonality=False`` leaves
  the BG/NBD process exactly as published.
* Everything else (channels, contacts, complaints and their handling times, surveys,
  marketing spend, the crisis wave) is drawn from the rates and shares in this module's
  tables, chosen to look plausible, not estimated from data.

Every customer draws from a random stream of its own (seed and index), so the first 200
customers of `--customers 3000` are the 200 customers of `--customers 200`. Event ids depend
on the seed and the customer only; times depend on `until`, so a demo loaded again with the
same options is stored once.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")
WEEK = timedelta(weeks=1)
CURRENCY = "USD"  # the CDNOW spend parameters are in US dollars

# ---- the published parameters ---------------------------------------------------------------


@dataclass(frozen=True)
class BgNbd:
    """BG/NBD purchase process, rates per week (CDNOW, Fader, Hardie & Lee 2005)."""

    r: float = 0.243
    alpha: float = 4.414
    a: float = 0.793
    b: float = 2.426


@dataclass(frozen=True)
class GammaGamma:
    """Spend per purchase (CDNOW, Fader, Hardie & Lee 2005b): E[mean spend] = p*gamma/(q-1)."""

    p: float = 6.25
    q: float = 3.74
    gamma: float = 15.44


# ---- seasonality (relative weights; each profile is scaled to average 1) --------------------

WEEKDAY_WEIGHTS = (1.10, 1.05, 1.00, 0.98, 0.92, 0.85, 1.10)  # Monday .. Sunday
MONTH_WEIGHTS = (0.90, 0.85, 0.95, 0.95, 1.00, 0.95, 0.95, 0.95, 0.95, 1.00, 1.20, 1.35)
SHOPPING_HOURS = (  # 00:00 .. 23:00 UTC: online shopping peaks in the evening
    0.35, 0.2, 0.15, 0.1, 0.1, 0.15, 0.3, 0.55, 0.8, 1.0, 1.15, 1.25,
    1.3, 1.3, 1.25, 1.2, 1.2, 1.3, 1.45, 1.6, 1.7, 1.55, 1.1, 0.65,
)  # fmt: skip
CONTACT_HOURS = (  # customers call, write and complain mostly in the daytime
    0.05, 0.03, 0.02, 0.02, 0.02, 0.05, 0.2, 0.6, 1.2, 1.6, 1.7, 1.6,
    1.4, 1.5, 1.6, 1.6, 1.5, 1.3, 1.1, 1.0, 0.9, 0.7, 0.4, 0.15,
)  # fmt: skip
GROWTH = (0.7, 1.3)  # registrations per day grow linearly over the history, from / to


def _normalised(weights: Sequence[float]) -> tuple[float, ...]:
    mean = sum(weights) / len(weights)
    return tuple(w / mean for w in weights)


_WEEKDAY = _normalised(WEEKDAY_WEIGHTS)
_MONTH = _normalised(MONTH_WEIGHTS)
_SHOPPING = _normalised(SHOPPING_HOURS)
_CONTACT = _normalised(CONTACT_HOURS)


def shopping_season(moment: datetime) -> float:
    """The purchase rate's multiplier at `moment` (weekday x month x hour; mean about 1)."""
    return _WEEKDAY[moment.weekday()] * _MONTH[moment.month - 1] * _SHOPPING[moment.hour]


def contact_hours(moment: datetime) -> float:
    """Contacts and complaints: the hour of day only."""
    return _CONTACT[moment.hour]


def _flat(_: datetime) -> float:
    return 1.0


# ---- the shop's tables (shares are relative weights) ----------------------------------------

ACQUISITION_CHANNELS = {
    "organic": 0.25,
    "search": 0.22,
    "social": 0.18,
    "referral": 0.12,
    "email": 0.08,
    "display": 0.08,
    "affiliate": 0.07,
}
# Paid channels: weekly marketing spend = new registrations x this cost x noise.
COST_PER_REGISTRATION = {"search": 38.0, "social": 27.0, "display": 52.0, "affiliate": 21.0}
EMAIL_WEEKLY_COST = 120.0  # newsletters cost the same whatever they bring
SALES_CHANNELS = {"web": 0.55, "app": 0.30, "store": 0.10, "phone": 0.05}
CATALOGUE: dict[str, tuple[str, ...]] = {
    "music": ("Vinyl: Blue Train", "CD: Kind of Blue", "CD box: The Complete Sessions"),
    "books": ("Field Guide to Birds", "The Long Walk (paperback)", "Cooking for Two"),
    "electronics": ("Aurora X2 wireless earbuds", "Nimbus speaker", "USB-C charger 65W"),
    "home": ("Linen bed set", "Cast-iron pan", "Desk lamp"),
    "fashion": ("Merino scarf", "Canvas tote", "Rain jacket"),
    "toys": ("Wooden train set", "Puzzle 1000 pieces", "Kite"),
}
CATEGORY_SHARES = {
    "music": 0.24,
    "books": 0.2,
    "electronics": 0.2,
    "home": 0.14,
    "fashion": 0.14,
    "toys": 0.08,
}
CRISIS_PRODUCT = "Aurora X2 wireless earbuds"
REFUND_SHARE = 0.02
REFUND_REASONS = {"product_quality": 0.5, "price": 0.2, "other": 0.3}
PROSPECT_SHARE = 0.12  # registered, never bought
ORGANISATION_SHARE = 0.08
ITEMS_PER_ORDER = {1: 0.6, 2: 0.28, 3: 0.12}

# Contacts: (channel, synchronous, share of bots, share inbound, duration in minutes or None)
CONTACT_CHANNELS: dict[str, tuple[bool, float, float, tuple[float, float] | None]] = {
    "phone": (True, 0.0, 0.85, (3, 15)),
    "chat": (True, 0.4, 0.95, (4, 20)),
    "email": (False, 0.15, 0.7, None),
    "sms": (False, 0.9, 0.1, None),
    "social": (False, 0.2, 0.8, None),
    "video": (True, 0.0, 0.6, (10, 30)),
    "visit": (True, 0.0, 1.0, (10, 40)),
}
CONTACT_SHARES = {
    "phone": 0.26,
    "chat": 0.26,
    "email": 0.22,
    "sms": 0.1,
    "social": 0.1,
    "video": 0.02,
    "visit": 0.04,
}
CONTACTS_PER_YEAR = 3.0  # mean of a customer's own rate (Gamma, shape 2)
ENGAGED_AFTER_DROPOUT_WEEKS = 8.0  # a buyer who dropped out still gets in touch for a while
CONTACT_TOPICS = {
    "order_status": 0.3,
    "product_question": 0.22,
    "billing": 0.12,
    "returns": 0.12,
    "account": 0.1,
    "promotion": 0.14,
}
SENTIMENTS = {"positive": 0.32, "neutral": 0.6, "negative": 0.08}
AGENTS = tuple(f"agent-{n:02d}" for n in range(1, 21))
BOT = "bot-assistant"

COMPLAINT_SHARE = 0.035  # of orders
COMPLAINT_CATEGORIES = {
    "delivery": 0.25,
    "product_quality": 0.25,
    "service_quality": 0.14,
    "price_billing": 0.14,
    "communication": 0.1,
    "service_attitude": 0.1,
    "other": 0.02,
}
COMPLAINT_CHANNELS = {
    "hotline": 0.3,
    "online_form": 0.22,
    "chat": 0.2,
    "email": 0.16,
    "social_media": 0.08,
    "store_box": 0.04,
}
PRIORITIES = {"low": 0.2, "medium": 0.5, "high": 0.22, "urgent": 0.08}
# Handling times, wall clock, log-normal: (median hours, sigma), the medians scaled by the
# complaint's priority (urgent ones are handled first). With working hours of 09:00-18:00 and
# the built-in targets, about one complaint in six misses one; complaints still open at the
# end of the history wait in the queue.
FIRST_RESPONSE_HOURS = (2.5, 1.0)
PROPOSAL_HOURS = (12.0, 0.9)
RESOLUTION_HOURS = (14.0, 0.8)
HANDLING_PACE = {"urgent": 0.2, "high": 0.4, "medium": 1.0, "low": 1.5}
WAITING_SHARE = 0.12
ESCALATION_SHARE = 0.05
REOPEN_SHARE = 0.04
FEEDBACK_SHARE = 0.7
CLOSE_AFTER = timedelta(days=7)

NPS_SHARE = 0.12  # of orders answered with an NPS survey a few days later
NPS_SCORES = (2, 1, 1, 2, 2, 5, 7, 12, 18, 22, 28)  # 0..10: NPS about +30
NPS_AFTER_COMPLAINT = (6, 4, 5, 7, 8, 12, 14, 14, 12, 9, 9)  # 0..10: NPS about -40
CSAT_SHARE = 0.25  # of contacts handled by people
CSAT_SCORES = (5, 7, 13, 35, 40)  # 1..5: CSAT 75%
FEEDBACK_SCORES = (8, 10, 17, 35, 30)  # 1..5, after a complaint's resolution

# The crisis: complaints about one product surge over the last days of the history, with a
# first, isolated complaint about it months earlier (so crisis detection knows the series).
CRISIS_HOURS = 36
CRISIS_CHANNELS = {"social_media": 0.35, "hotline": 0.25, "online_form": 0.2, "chat": 0.15}
CRISIS_SLOWDOWN = 4.0  # the team is swamped: handling takes this many times longer


def crisis_size(customers: int) -> int:
    """Complaints in the wave: enough for detection even in a small demo."""
    return max(30, customers // 60)


# ---- parameters and events ------------------------------------------------------------------


@dataclass(frozen=True)
class DemoParams:
    until: datetime  # the end of the history: no event is later
    customers: int = 3000
    seed: int = 1
    weeks: int = 104
    seasonality: bool = True
    crisis: bool = True
    purchases: BgNbd = field(default_factory=BgNbd)
    spend: GammaGamma = field(default_factory=GammaGamma)

    def __post_init__(self) -> None:
        if self.until.tzinfo is None:
            raise ValueError("until must carry a time zone")
        if self.customers < 1 or self.weeks < 1:
            raise ValueError("customers and weeks must be positive")

    @property
    def start(self) -> datetime:
        return self.until - self.weeks * WEEK


def customer_id(seed: int, index: int) -> str:
    return f"demo-{seed}-{index:05d}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _event(
    type_name: str, source: str, event_id: str, at: datetime, subject: str, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type_name,
        "time": _iso(at),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# ---- random helpers -------------------------------------------------------------------------


def _pick(rng: random.Random, shares: dict[T, float]) -> T:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def _lognormal_hours(rng: random.Random, median_sigma: tuple[float, float]) -> timedelta:
    median, sigma = median_sigma
    return timedelta(hours=rng.lognormvariate(math.log(median), sigma))


def arrivals(
    rng: random.Random,
    start: datetime,
    end: datetime,
    per_week: float,
    shape: Callable[[datetime], float],
    peak: float,
) -> Iterator[datetime]:
    """The times of a Poisson process of rate `per_week` x shape(t) in (start, end], by
    thinning: candidates at rate per_week x peak, each kept with probability shape/peak."""
    if per_week <= 0:
        return
    moment = start
    while True:
        gap = rng.expovariate(per_week * peak)  # weeks; may be astronomically long
        if gap > (end - moment) / WEEK:
            return
        moment += timedelta(weeks=gap)
        if rng.random() * peak < shape(moment):
            yield moment


def _first_arrival(rng: random.Random, start: datetime, mean: timedelta) -> datetime:
    """When someone gets in touch after `start`: `mean` later on average, in the daytime."""
    horizon = start + 1000 * mean
    found = next(arrivals(rng, start, horizon, WEEK / mean, contact_hours, max(_CONTACT)), None)
    return found or horizon


# ---- one customer ---------------------------------------------------------------------------


@dataclass
class Customer:
    """One customer's simulation state: its random stream and the events it produced."""

    params: DemoParams
    index: int
    rng: random.Random
    events: list[dict[str, Any]] = field(default_factory=list)
    registered_at: datetime | None = None
    channel: str = ""
    orders: list[tuple[datetime, str, int, list[str]]] = field(default_factory=list)
    complaints: list[datetime] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)

    @property
    def id(self) -> str:
        return customer_id(self.params.seed, self.index)

    def next_id(self, kind: str) -> str:
        self.counters[kind] += 1
        return f"{self.id}:{kind}:{self.counters[kind]}"

    def add(self, type_name: str, source: str, event_id: str, at: datetime, data: Any) -> None:
        self.events.append(_event(type_name, source, event_id, at, self.id, data))


def simulate_customer(params: DemoParams, index: int) -> Customer:
    """Everything one customer does, drawn from its own stream (seed, index)."""
    customer = Customer(params, index, random.Random(f"demo:{params.seed}:{index}"))
    _register(customer)
    assert customer.registered_at is not None
    engaged_until = params.until
    if customer.rng.random() >= PROSPECT_SHARE:
        dropped_at = _purchases(customer)
        if dropped_at is not None:
            extra = customer.rng.expovariate(1 / ENGAGED_AFTER_DROPOUT_WEEKS)
            engaged_until = min(params.until, dropped_at + timedelta(weeks=extra))
    else:
        _lead(customer)
    _contacts(customer, customer.registered_at, engaged_until)
    for order in customer.orders:
        _after_order(customer, *order)
    return customer


def _registration_time(params: DemoParams, rng: random.Random) -> datetime:
    """A time in the history, more likely later (growth) and in high season."""
    span = params.until - params.start - timedelta(days=1)
    low, high = GROWTH
    peak = high * max(_WEEKDAY) * max(_MONTH)
    while True:
        share = rng.random()
        moment = params.start + share * span
        weight = (low + (high - low) * share) * (
            _WEEKDAY[moment.weekday()] * _MONTH[moment.month - 1] if params.seasonality else 1
        )
        if rng.random() * peak < weight:
            return moment.replace(hour=0, minute=0, second=0) + timedelta(
                hours=rng.choices(range(24), weights=_SHOPPING)[0], minutes=rng.randrange(60)
            )


_FIRST_NAMES = ("Ana", "Ben", "Chen", "Dara", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jon")
_LAST_NAMES = ("Li", "Okafor", "Smith", "Garcia", "Novak", "Tanaka", "Haddad", "Berg", "Rossi")
_INDUSTRIES = ("retail", "hospitality", "education", "software", "healthcare")


def _register(customer: Customer) -> None:
    rng, params = customer.rng, customer.params
    at = _registration_time(params, rng)
    customer.registered_at = at
    customer.channel = _pick(rng, ACQUISITION_CHANNELS)
    organisation = rng.random() < ORGANISATION_SHARE
    data: dict[str, Any] = {
        "kind": "organisation" if organisation else "individual",
        "acquisition_channel": customer.channel,
        "segment": "business" if organisation else "consumer",
        "email": f"{customer.id}@example.com",
        "preferred_contact": _pick(rng, {"email": 4, "phone": 2, "sms": 2, "chat": 2}),
        "consent": {"email": rng.random() < 0.7, "sms": rng.random() < 0.4},
    }
    if organisation:
        data["name"] = f"{rng.choice(_LAST_NAMES)} {rng.choice(('& Co', 'Ltd', 'Studio'))}"
        data["industry"] = rng.choice(_INDUSTRIES)
        data["size"] = rng.choice(("1-9", "10-49", "50-249"))
    else:
        data["name"] = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
        data["birth_year"] = rng.randrange(1950, 2006)
        data["gender"] = _pick(rng, {"female": 48, "male": 48, "other": 2, "unspecified": 2})
    customer.add("crm.customer.registered", "demo/shop", f"{customer.id}:registered", at, data)


def _lead(customer: Customer) -> None:
    """Half of the prospects were judged as leads (MAN) a few days after registering."""
    rng = customer.rng
    assert customer.registered_at is not None
    if rng.random() < 0.5:
        return
    at = customer.registered_at + timedelta(days=rng.uniform(1, 10))
    if at > customer.params.until:
        return
    data = {
        "money": rng.random() < 0.6,
        "authority": rng.random() < 0.5,
        "need": rng.random() < 0.7,
        "assessed_by": rng.choice(AGENTS),
    }
    customer.add("crm.lead.assessed", "demo/sales", f"{customer.id}:lead", at, data)


def _purchases(customer: Customer) -> datetime | None:
    """The BG/NBD process from the first purchase; returns when the buyer dropped out."""
    rng, params = customer.rng, customer.params
    model, spend = params.purchases, params.spend
    assert customer.registered_at is not None
    first = customer.registered_at + timedelta(minutes=rng.uniform(2, 90))
    if first > params.until:
        return None
    rate = rng.gammavariate(model.r, 1 / model.alpha)  # per week
    dropout = rng.betavariate(model.a, model.b)
    nu = rng.gammavariate(spend.q, 1 / spend.gamma)  # mean spend p / nu
    customer_channel = _pick(rng, SALES_CHANNELS)
    _order(customer, first, nu, customer_channel)
    shape = shopping_season if params.seasonality else _flat
    peak = max(_WEEKDAY) * max(_MONTH) * max(_SHOPPING) if params.seasonality else 1.0
    for moment in arrivals(rng, first, params.until, rate, shape, peak):
        _order(customer, moment, nu, customer_channel)
        if rng.random() < dropout:
            return moment
    return None


def _order(customer: Customer, at: datetime, nu: float, usual_channel: str) -> None:
    rng = customer.rng
    value = rng.gammavariate(customer.params.spend.p, 1 / nu)
    cents = max(1, round(value * 100))
    channel = usual_channel if rng.random() < 0.7 else _pick(rng, SALES_CHANNELS)
    items = _line_items(rng, cents)
    order_id = f"{customer.id}-o{len(customer.orders) + 1}"
    data = {
        "order_id": order_id,
        "amount": _money(cents),
        "currency": CURRENCY,
        "channel": channel,
        "items": items,
    }
    event_id = customer.next_id("order")
    customer.add("crm.purchase.completed", "demo/shop", event_id, at, data)
    customer.orders.append((at, order_id, cents, [item["name"] for item in items]))


def _line_items(rng: random.Random, cents: int) -> list[dict[str, Any]]:
    """1-3 items whose prices add up to the order's amount exactly."""
    count = min(_pick(rng, ITEMS_PER_ORDER), cents)
    weights = [rng.gammavariate(2.0, 1.0) for _ in range(count)]
    parts = [max(1, int(cents * w / sum(weights))) for w in weights]
    parts[0] += cents - sum(parts)
    if parts[0] < 1:  # rounding took too much from the first: an even split instead
        parts = [cents // count] * count
        parts[0] += cents - sum(parts)
    items = []
    for part in parts:
        category = _pick(rng, CATEGORY_SHARES)
        name = rng.choice(CATALOGUE[category])
        sku = f"SKU-{list(CATALOGUE).index(category) + 1}{CATALOGUE[category].index(name):02d}"
        items.append({"sku": sku, "name": name, "category": category, "unit_price": _money(part)})
    return items


def _after_order(
    customer: Customer, at: datetime, order_id: str, cents: int, products: list[str]
) -> None:
    """What may follow an order: a refund, a complaint, an NPS answer."""
    rng = customer.rng
    if rng.random() < REFUND_SHARE:
        _refund(customer, at + timedelta(days=rng.uniform(3, 20)), order_id, cents)
    if rng.random() < COMPLAINT_SHARE:
        _complaint(customer, _first_arrival(rng, at, timedelta(days=4)), products)
    if rng.random() < NPS_SHARE:
        _nps(customer, _first_arrival(rng, at, timedelta(days=4)))


def _refund(customer: Customer, at: datetime, order_id: str, cents: int) -> None:
    data = {
        "order_id": order_id,
        "amount": _money(cents),
        "currency": CURRENCY,
        "reason": _pick(customer.rng, REFUND_REASONS),
    }
    if at <= customer.params.until:
        customer.add("crm.purchase.refunded", "demo/shop", f"{order_id}:refund", at, data)


def _complaint(customer: Customer, opened: datetime, products: list[str]) -> None:
    rng = customer.rng
    complaint = {
        "channel": _pick(rng, COMPLAINT_CHANNELS),
        "category": _pick(rng, COMPLAINT_CATEGORIES),
        "priority": _pick(rng, PRIORITIES),
        "product": rng.choice(products),
    }
    if opened > customer.params.until:
        return
    complaint_id = f"{customer.id}-k{len(customer.complaints) + 1}"
    customer.complaints.append(opened)
    customer.events += complaint_events(
        rng,
        customer.params.until,
        customer.id,
        complaint_id,
        opened,
        complaint,
    )


def _nps(customer: Customer, answered: datetime) -> None:
    """An NPS answer; customers who complained before answer far more harshly."""
    unhappy = any(opened <= answered for opened in customer.complaints)
    scores = NPS_AFTER_COMPLAINT if unhappy else NPS_SCORES
    data = {
        "score": customer.rng.choices(range(11), weights=scores)[0],
        "survey_id": "nps-after-order",
        "channel": "email",
    }
    if answered <= customer.params.until:
        customer.add("crm.survey.nps", "demo/surveys", customer.next_id("nps"), answered, data)


# ---- contacts -------------------------------------------------------------------------------


def _contacts(customer: Customer, start: datetime, end: datetime) -> None:
    rng = customer.rng
    per_week = rng.gammavariate(2.0, CONTACTS_PER_YEAR / 2) / 52.18
    for at in arrivals(rng, start, end, per_week, contact_hours, max(_CONTACT)):
        _contact(customer, at)


def _contact(customer: Customer, at: datetime, **fixed: Any) -> None:
    rng = customer.rng
    channel = fixed.pop("channel", None) or _pick(rng, CONTACT_SHARES)
    synchronous, bots, inbound, minutes = CONTACT_CHANNELS[channel]
    handled_by = "bot" if rng.random() < bots else "human"
    data: dict[str, Any] = {
        "channel": channel,
        "direction": "inbound" if rng.random() < inbound else "outbound",
        "synchronous": synchronous,
        "handled_by": handled_by,
        "topic": _pick(rng, CONTACT_TOPICS),
        "outcome": _pick(rng, {"resolved": 0.7, "follow_up": 0.22, "escalated": 0.08}),
        "agent_id": BOT if handled_by == "bot" else rng.choice(AGENTS),
        "sentiment": _pick(rng, SENTIMENTS),
    }
    if minutes is not None:
        data["duration_seconds"] = round(rng.uniform(*minutes) * 60)
    data.update(fixed)
    event_id = customer.next_id("contact")
    customer.add("crm.interaction.logged", "demo/contact-center", event_id, at, data)
    if handled_by == "human" and rng.random() < CSAT_SHARE:
        answered = at + timedelta(hours=rng.uniform(0.2, 30))
        if answered <= customer.params.until:
            data = {
                "score": rng.choices(range(1, 6), weights=CSAT_SCORES)[0],
                "survey_id": "csat-after-contact",
                "channel": channel,
                "topic": data["topic"],
            }
            customer.add(
                "crm.survey.csat", "demo/surveys", customer.next_id("csat"), answered, data
            )


# ---- complaints -----------------------------------------------------------------------------


def complaint_events(
    rng: random.Random,
    until: datetime,
    subject: str,
    complaint_id: str,
    opened: datetime,
    complaint: dict[str, Any],
    slowdown: float = 1.0,
) -> list[dict[str, Any]]:
    """A complaint and its handling by the seven steps, as far as `until` lets it go."""
    events = []
    pace = HANDLING_PACE[complaint["priority"]] * slowdown
    for moment, name, data in _handling(rng, opened, complaint, pace):
        if moment > until:
            break  # still in the queue when the history ends
        type_name = "crm.complaint." + _COMPLAINT_TYPES.get(name, name)
        body = {"complaint_id": complaint_id, **data}
        event_id = f"{complaint_id}:{name}"
        events.append(_event(type_name, "demo/complaints", event_id, moment, subject, body))
    return events


def _handling(
    rng: random.Random,
    opened: datetime,
    complaint: dict[str, Any],
    pace: float,
) -> list[tuple[datetime, str, dict[str, Any]]]:
    """The steps in time order: listen, thank, apologise and promise at the first contact,
    sometimes a wait on the customer or an escalation, a proposal, the resolution (sometimes
    reopened), the customer's feedback, and the closing a week later."""
    agent = rng.choice(AGENTS)
    steps: list[tuple[datetime, str, dict[str, Any]]] = [(opened, "opened", complaint)]
    at = opened + pace * _lognormal_hours(rng, FIRST_RESPONSE_HOURS)
    for offset, step in enumerate(("listen", "thank", "apologise", "promise")):
        moment = at + timedelta(minutes=2 * offset)
        steps.append((moment, f"step_{step}", {"step": step, "agent_id": agent}))
    at += timedelta(minutes=10)
    if rng.random() < WAITING_SHARE:
        steps.append((at, "waiting", {"reason": "asked for the order number and photos"}))
        at += timedelta(hours=rng.expovariate(1 / 20))
        steps.append((at, "customer_replied", {"message": "sent the details"}))
    if rng.random() < ESCALATION_SHARE:
        at += timedelta(hours=rng.uniform(1, 24))
        steps.append((at, "escalated", {"level": 1, "reason": "needs a team lead"}))
    at += pace * _lognormal_hours(rng, PROPOSAL_HOURS)
    promised = _iso(at + timedelta(days=rng.uniform(1, 3)))
    proposal = {"solution": "a replacement or a refund", "promised_at": promised}
    steps.append((at, "solution_proposed", proposal))
    at += pace * _lognormal_hours(rng, RESOLUTION_HOURS)
    steps.append((at, "resolved", {"resolution": "replacement sent"}))
    if rng.random() < REOPEN_SHARE:
        at += timedelta(days=rng.uniform(1, 4))
        steps.append((at, "reopened", {"reason": "the replacement has the same fault"}))
        at += pace * _lognormal_hours(rng, RESOLUTION_HOURS)
        steps.append((at, "resolved_again", {"resolution": "refunded"}))
    if rng.random() < FEEDBACK_SHARE:
        score = rng.choices(range(1, 6), weights=FEEDBACK_SCORES)[0]
        steps.append((at + timedelta(days=rng.uniform(1, 5)), "feedback", {"score": score}))
    steps.append((at + CLOSE_AFTER, "closed", {}))
    return steps


_COMPLAINT_TYPES = {
    **{f"step_{s}": "step_done" for s in ("listen", "thank", "apologise", "promise")},
    "resolved_again": "resolved",
}


# ---- the shop as a whole --------------------------------------------------------------------


def simulate(params: DemoParams) -> list[dict[str, Any]]:
    """The whole history: every customer, the marketing spend and the crisis wave, by time."""
    customers = [simulate_customer(params, index) for index in range(params.customers)]
    events = [event for customer in customers for event in customer.events]
    events += marketing_spend(params, customers)
    if params.crisis:
        events += crisis_wave(params, customers)
    return sorted(events, key=lambda e: (e["time"], e["id"]))


def _week_start(moment: datetime) -> date:
    day = moment.date()
    return day - timedelta(days=day.weekday())


def marketing_spend(params: DemoParams, customers: Sequence[Customer]) -> list[dict[str, Any]]:
    """One spend per paid channel and whole week (Monday to Sunday) of the history: the week's
    registrations from the channel at the channel's cost, +-15% noise; email at a flat rate."""
    rng = random.Random(f"demo:{params.seed}:marketing")
    registered: Counter[tuple[str, date]] = Counter(
        (c.channel, _week_start(c.registered_at)) for c in customers if c.registered_at
    )
    first = _week_start(params.start) + timedelta(weeks=1)
    last = _week_start(params.until) - timedelta(weeks=1)  # the last whole week before until
    events = []
    week = first
    while week <= last:
        end = week + timedelta(days=6)
        for channel in (*COST_PER_REGISTRATION, "email"):
            cost = COST_PER_REGISTRATION.get(channel)
            base = EMAIL_WEEKLY_COST if cost is None else cost * registered[(channel, week)]
            cents = round(base * rng.lognormvariate(0, 0.15) * 100)
            if cents <= 0:
                continue
            data = {
                "amount": _money(cents),
                "currency": CURRENCY,
                "channel": channel,
                "campaign": f"{channel}-{week.isoformat()}",
                "period_start": week.isoformat(),
                "period_end": end.isoformat(),
            }
            at = datetime.combine(end, datetime.min.time(), UTC) + timedelta(hours=23)
            event_id = f"demo-{params.seed}:spend:{channel}:{week.isoformat()}"
            events.append(
                _event("crm.marketing.spend", "demo/marketing", event_id, at, "marketing", data)
            )
        week += timedelta(weeks=1)
    return events


def crisis_wave(params: DemoParams, customers: Sequence[Customer]) -> list[dict[str, Any]]:
    """Complaints about CRISIS_PRODUCT rising over the last CRISIS_HOURS (most in the last
    hours), from customers who registered before; one isolated complaint about it months
    earlier; and angry posts on social media alongside."""
    rng = random.Random(f"demo:{params.seed}:crisis")
    wave_start = params.until - timedelta(hours=CRISIS_HOURS)
    known = [c.id for c in customers if c.registered_at and c.registered_at < wave_start]
    if not known:
        return []
    complaint = {
        "channel": "email",
        "category": "product_quality",
        "priority": "medium",
        "product": CRISIS_PRODUCT,
        "description": "the left earbud stops charging",
    }
    earlier = params.until - timedelta(days=rng.uniform(60, 120))
    prefix = f"demo-{params.seed}-crisis"
    events = complaint_events(
        rng,
        params.until,
        rng.choice(known),
        f"{prefix}-0",
        earlier,
        complaint,
    )
    for number in range(1, crisis_size(params.customers) + 1):
        # Density rising linearly to the end: the square root of a uniform draw.
        opened = wave_start + math.sqrt(rng.random()) * timedelta(hours=CRISIS_HOURS)
        subject = rng.choice(known)
        complaint = {
            "channel": _pick(rng, CRISIS_CHANNELS),
            "category": "product_quality",
            "priority": _pick(rng, {"high": 0.6, "urgent": 0.25, "medium": 0.15}),
            "product": CRISIS_PRODUCT,
            "description": "the earbuds overheat while charging",
        }
        complaint_id = f"{prefix}-{number}"
        events += complaint_events(
            rng, params.until, subject, complaint_id, opened, complaint, CRISIS_SLOWDOWN
        )
        if rng.random() < 0.5:
            data = {
                "channel": "social",
                "direction": "inbound",
                "synchronous": False,
                "handled_by": "human",
                "topic": "product_issue",
                "outcome": "escalated",
                "agent_id": rng.choice(AGENTS),
                "sentiment": "negative",
            }
            posted = min(params.until, opened + timedelta(minutes=rng.uniform(5, 120)))
            event_id = f"{complaint_id}:post"
            events.append(
                _event(
                    "crm.interaction.logged", "demo/contact-center", event_id, posted, subject, data
                )
            )
    return events


# ---- loading order --------------------------------------------------------------------------


def is_crisis_signal(event: dict[str, Any]) -> bool:
    """Whether crisis detection counts the event: complaints opened, NPS detractors (0-6),
    CSAT 1-2 and contacts with a negative sentiment (the complaints service's signals)."""
    kind, data = event["type"], event["data"]
    return bool(
        kind == "crm.complaint.opened"
        or (kind == "crm.survey.nps" and data["score"] <= 6)
        or (kind == "crm.survey.csat" and data["score"] <= 2)
        or (kind == "crm.interaction.logged" and data.get("sentiment") == "negative")
    )


def _loading_units(events: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Events that travel together: a complaint's whole history (if its opening came alone,
    the SLA sweeper would see it unanswered, and a breach it publishes stands), else one."""
    units: list[list[dict[str, Any]]] = []
    complaints: dict[str, list[dict[str, Any]]] = {}
    for event in sorted(events, key=lambda e: (e["time"], e["id"])):
        complaint = event["data"].get("complaint_id")
        if complaint is None:
            units.append([event])
        elif complaint in complaints:
            complaints[complaint].append(event)
        else:
            complaints[complaint] = [event]
            units.append(complaints[complaint])
    return units


def _part(unit: list[dict[str, Any]]) -> int:
    """0: marketing spend (it depends on every option, so a demo loaded before with other
    options is refused before anything else is stored); 1: complaints and the other crisis
    signals (crisis detection judges each hour once: the hours it judges should hold all of
    them); 2: the rest."""
    if unit[0]["type"] == "crm.marketing.spend":
        return 0
    return 1 if any(map(is_crisis_signal, unit)) else 2


def posting_batches(events: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """The events in loading order (see `_part`; by time within a part), in batches of at
    most `size` that never split a complaint."""
    units = sorted(_loading_units(events), key=_part)  # stable: time order within a part
    found: list[list[dict[str, Any]]] = [[]]
    for unit in units:
        if found[-1] and len(found[-1]) + len(unit) > size:
            found.append([])
        found[-1].extend(unit)
    return [batch for batch in found if batch]
