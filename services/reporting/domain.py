"""Reporting's fold, pure: purchase events -> additive per-day deltas.

Deltas are additive, so a late event simply adds to its own past day. Buyers per day are
kept as (day, customer) pairs, which makes distinct counts exact rather than estimated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, tzinfo
from decimal import Decimal

from services.reporting.kpi import local_date
from shared.events import Event, PurchaseCompleted, PurchaseRefunded


@dataclass
class DayDelta:
    revenue: Decimal = Decimal(0)  # net of refunds, reporting currency
    orders: int = 0
    buyers: set[str] = field(default_factory=set)


def daily_deltas(events: Iterable[Event], zone: tzinfo) -> dict[date, DayDelta]:
    deltas: dict[date, DayDelta] = {}
    for event in events:
        data = event.data
        if not isinstance(data, PurchaseCompleted | PurchaseRefunded):
            continue
        delta = deltas.setdefault(local_date(event.time, zone), DayDelta())
        if isinstance(data, PurchaseCompleted):
            delta.revenue += data.value
            delta.orders += 1
            delta.buyers.add(event.subject)
        else:
            delta.revenue -= data.value
    return deltas
