"""Scoring's folds, pure: events -> the history rows a batch adds, and per-customer state.

A batch of events folds into `History`, the rows each history table gains (`history_of`);
everything scoring answers is derived from those tables when it is read: RFM and the
population's statistics in SQL (store.py), scores from them in `population.py`, the profile by
`profile_of` in time order (so a late update lands where it belongs).

`summarise` is the definition of one customer's RFM facts over events, order-independent:
the offline reference the read model is checked against.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any, cast

from shared.erasure import is_erased
from shared.events import (
    ComplaintOpened,
    CustomerErased,
    CustomerRegistered,
    CustomerUpdated,
    Event,
    InteractionLogged,
    LeadAssessed,
    PurchaseCompleted,
    PurchaseRefunded,
    SurveyCsat,
    SurveyNps,
)


@dataclass(frozen=True)
class PurchaseSummary:
    customer_id: str
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    purchase_count: int = 0
    total_spent: Decimal = Decimal(0)  # net of refunds, in the reporting currency


def summarise(
    customer_id: str, events: Iterable[Event], *, count_zero_value: bool = False
) -> PurchaseSummary:
    """One customer's RFM facts by the rules the read model applies in SQL (store.py
    `_BUYERS`), computed offline and order-independently: the reference it is checked against.

    An order (source, order_id) counts once (its first event by time and id, whatever other
    event ids repeat it); the refunds of its order_id net out of its value; an order whose
    net value is not positive is no purchase (an order of value 0 is one only with
    `count_zero_value`). total_spent is net of every refund, whether its order counts or not.
    """
    placed: dict[tuple[str, str], Event] = {}  # by (source, order_id)
    refunds: dict[str, Decimal] = {}
    spent = Decimal(0)
    for event in events:
        data = event.data
        if isinstance(data, PurchaseRefunded):
            refunds[data.order_id] = refunds.get(data.order_id, Decimal(0)) + data.value
            spent -= data.value
        elif isinstance(data, PurchaseCompleted):
            order = (event.envelope.source, data.order_id)
            known = placed.get(order)
            if known is None or (event.time, event.id) < (known.time, known.id):
                placed[order] = event
    purchases = []
    for (_, order_id), event in placed.items():
        value = _value(event)
        spent += value
        net = value - refunds.get(order_id, Decimal(0))
        if net > 0 or (count_zero_value and value == 0):
            purchases.append(event.time)
    return PurchaseSummary(
        customer_id,
        first_purchase_at=min(purchases, default=None),
        last_purchase_at=max(purchases, default=None),
        purchase_count=len(purchases),
        total_spent=spent,
    )


def fold(state: PurchaseSummary, events: Iterable[Event]) -> PurchaseSummary:
    """`summarise` from an empty summary (the rules need every order's events together, so
    there is no fold from a non-empty one)."""
    if state != PurchaseSummary(state.customer_id):
        raise ValueError("fold starts from an empty summary")
    return summarise(state.customer_id, events)


def _value(event: Event) -> Decimal:
    assert isinstance(event.data, PurchaseCompleted)
    return event.data.value


def is_purchase(event: Event) -> bool:
    return isinstance(event.data, PurchaseCompleted | PurchaseRefunded)


# Personal data: the profile and lead events (an erasure removes them).
PROFILE_KINDS = frozenset({CustomerRegistered, CustomerUpdated, LeadAssessed})


def personal_data(events: Iterable[Event]) -> tuple[set[str], set[str]]:
    """The customers whose events carry personal data (profile events, an interaction's free
    text), and those whose erasures, `events` hold."""
    profiled: set[str] = set()
    erasing: set[str] = set()
    for e in events:
        kind = type(e.data)
        if kind in PROFILE_KINDS or (kind is InteractionLogged and _has_topic(e)):
            profiled.add(e.subject)
        elif kind is CustomerErased:
            erasing.add(e.subject)
    return profiled, erasing


def _has_topic(event: Event) -> bool:
    return cast(InteractionLogged, event.data).topic is not None


# One row per event and table, in the column order of store.py's tables (it writes each list
# with one COPY or INSERT ... unnest). Rows are facts keyed by their event: storing is
# insertion only, and two batches' rows commute.
PurchaseRow = tuple[str, str, str, str, datetime, date, Decimal, bool]
InteractionRow = tuple[str, str, str, datetime, str, str, str | None, str | None]
ComplaintRow = tuple[str, str, str, str, datetime, str]
ProfileRow = tuple[str, str, str, datetime, str, str]
SurveyRow = tuple[str, str, str, datetime, str, int, str | None, str | None]


@dataclass
class History:
    """The rows one batch adds to scoring's history tables."""

    purchases: list[PurchaseRow] = field(default_factory=list)
    interactions: list[InteractionRow] = field(default_factory=list)
    complaints: list[ComplaintRow] = field(default_factory=list)
    profile_events: list[ProfileRow] = field(default_factory=list)
    surveys: list[SurveyRow] = field(default_factory=list)


def history_of(events: Iterable[Event], zone: tzinfo, erasures: dict[str, datetime]) -> History:
    """The rows `events` add; profile events of erased customers (up to their erasure) are
    left out, and so is an interaction's free-text topic. `day` is the purchase's calendar
    day in the deployment's time zone."""
    history = History()
    # Dispatch on the exact class: an isinstance test of a union goes through the ABC
    # machinery, several times per event on the hot path.
    for e in events:
        data, envelope = e.data, e.envelope
        if type(data) is PurchaseCompleted or type(data) is PurchaseRefunded:
            refund = type(data) is PurchaseRefunded
            history.purchases.append(
                (
                    envelope.subject,
                    envelope.source,
                    envelope.id,
                    data.order_id,
                    envelope.time,
                    envelope.time.astimezone(zone).date(),
                    -data.value if refund else data.value,
                    refund,
                )
            )
        elif type(data) is InteractionLogged:
            history.interactions.append(
                (
                    envelope.subject,
                    envelope.source,
                    envelope.id,
                    envelope.time,
                    data.channel,
                    data.direction,
                    data.sentiment,
                    None if is_erased(e, erasures) else data.topic,  # free text: personal
                )
            )
        elif type(data) is ComplaintOpened:
            history.complaints.append(
                (
                    envelope.subject,
                    envelope.source,
                    envelope.id,
                    data.complaint_id,
                    envelope.time,
                    data.category,
                )
            )
        elif type(data) is SurveyNps or type(data) is SurveyCsat:
            # The score, not the comment: free text is personal data the view does not need.
            history.surveys.append(
                (
                    envelope.subject,
                    envelope.source,
                    envelope.id,
                    envelope.time,
                    "nps" if type(data) is SurveyNps else "csat",
                    data.score,
                    data.survey_id,
                    data.channel,
                )
            )
        elif type(data) in PROFILE_KINDS and not is_erased(e, erasures):
            history.profile_events.append(
                (
                    envelope.subject,
                    envelope.source,
                    envelope.id,
                    envelope.time,
                    envelope.type,
                    e.to_bytes().decode(),
                )
            )
    return history


@dataclass(frozen=True)
class Profile:
    """The customer record (客户档案) and the latest lead assessment."""

    fields: dict[str, Any]
    registered_at: datetime | None = None
    updated_at: datetime | None = None
    lead: dict[str, Any] | None = None


def profile_of(events: Iterable[Event]) -> Profile:
    """Fold profile and lead events in time order; an update sets only the fields it names."""
    profile = Profile(fields={})
    for event in sorted(events, key=lambda e: (e.time, e.id)):
        data = event.data
        if isinstance(data, CustomerRegistered):
            fields = {**profile.fields, **data.model_dump(exclude_none=True)}
            profile = replace(
                profile, fields=fields, registered_at=event.time, updated_at=event.time
            )
        elif isinstance(data, CustomerUpdated):
            changed = data.model_dump(include=data.model_fields_set)
            profile = replace(profile, fields={**profile.fields, **changed}, updated_at=event.time)
        elif isinstance(data, LeadAssessed):
            lead = {**data.model_dump(exclude_none=True), "assessed_at": event.time}
            profile = replace(profile, lead=lead)
    return profile
