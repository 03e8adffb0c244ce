"""Reporting's projection: the one way a batch of events reaches the read models.

The consumer runtime calls `store` with the batch's new events, in partition order, inside
the transaction that also stores its offsets. The flow is the same for every batch:

1. erasure: nothing to do here. Reporting keeps no personal data (customer ids, times,
   labels and amounts only), so a `crm.customer.erased` event changes none of its rows;
2. the pure fold (`domain.fold`): the batch aggregated in memory per day, slice, customer
   and fact key, in Python, without the database;
3. the store (`store.write`): each table written with one statement for the whole batch,
   commutative under concurrent transactions (see store.py);
4. outbox: none, reporting derives no events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo

from services.reporting import domain, store
from shared.db import Connection
from shared.events import Event, Topic


class ReportingProjection:
    name = "reporting"
    topics: Sequence[str] = (
        Topic.CUSTOMERS,
        Topic.PURCHASES,
        Topic.INTERACTIONS,
        Topic.COMPLAINTS,
        Topic.SURVEYS,
        Topic.MARKETING,
        Topic.DERIVED,
    )

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone

    async def store(self, conn: Connection, events: list[Event]) -> None:
        batch = domain.fold(events, self._zone)
        if not batch.is_empty():
            await store.write(conn, batch)
