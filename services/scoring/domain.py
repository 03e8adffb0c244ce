"""Scoring's folds, pure: events -> per-customer state.

`PurchaseSummary` is order-independent (min, max, sums), so late or re-ordered events give
the same summary. The profile is the fold of profile events in time order, so a late update
lands where it belongs. Scores (RFM, tiers, CLV) are computed from the history in
`scoring.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.events import (
    CustomerRegistered,
    CustomerUpdated,
    Event,
    LeadAssessed,
    PurchaseCompleted,
    PurchaseRefunded,
)


@dataclass(frozen=True)
class PurchaseSummary:
    customer_id: str
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    purchase_count: int = 0
    total_spent: Decimal = Decimal(0)  # net of refunds, in the reporting currency


def apply(state: PurchaseSummary, event: Event) -> PurchaseSummary:
    data = event.data
    if isinstance(data, PurchaseCompleted):
        return replace(
            state,
            first_purchase_at=min(filter(None, (state.first_purchase_at, event.time))),
            last_purchase_at=max(filter(None, (state.last_purchase_at, event.time))),
            purchase_count=state.purchase_count + 1,
            total_spent=state.total_spent + data.value,
        )
    if isinstance(data, PurchaseRefunded):
        return replace(state, total_spent=state.total_spent - data.value)
    return state


def fold(state: PurchaseSummary, events: Iterable[Event]) -> PurchaseSummary:
    for event in events:
        state = apply(state, event)
    return state


def is_purchase(event: Event) -> bool:
    return isinstance(event.data, PurchaseCompleted | PurchaseRefunded)


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
