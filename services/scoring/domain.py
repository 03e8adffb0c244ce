"""Scoring's fold, pure: purchases and refunds -> one summary per customer.

The fold is order-independent (min, max, sums), so late or re-ordered events give the same
summary; RFM scores, tiers and lifetime value are computed from these summaries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from shared.events import Event, PurchaseCompleted, PurchaseRefunded


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


def is_relevant(event: Event) -> bool:
    return isinstance(event.data, PurchaseCompleted | PurchaseRefunded)
