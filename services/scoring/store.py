"""Scoring's SQL: load the summaries a batch touches, fold, write them back in one statement."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from services.scoring.domain import PurchaseSummary, fold, is_relevant
from shared.db import Connection, Pool
from shared.events import Event, Topic


class ScoringProjection:
    name = "scoring"
    topics: Sequence[str] = (Topic.PURCHASES,)

    async def store(self, conn: Connection, events: list[Event]) -> None:
        by_customer: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            if is_relevant(event):
                by_customer[event.subject].append(event)
        if not by_customer:
            return
        current = await load_summaries(conn, list(by_customer))
        updated = [
            fold(current.get(cid, PurchaseSummary(cid)), customer_events)
            for cid, customer_events in by_customer.items()
        ]
        await save_summaries(conn, updated)


async def load_summaries(
    conn: Connection | Pool, customer_ids: list[str]
) -> dict[str, PurchaseSummary]:
    rows = await conn.fetch(
        "SELECT customer_id, first_purchase_at, last_purchase_at, purchase_count, total_spent "
        "FROM purchase_summaries WHERE customer_id = ANY($1::text[])",
        customer_ids,
    )
    return {r["customer_id"]: PurchaseSummary(**dict(r)) for r in rows}


async def save_summaries(conn: Connection, summaries: list[PurchaseSummary]) -> None:
    await conn.execute(
        """
        INSERT INTO purchase_summaries
            (customer_id, first_purchase_at, last_purchase_at, purchase_count, total_spent)
        SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int[],
                             $5::numeric[])
        ON CONFLICT (customer_id) DO UPDATE SET
            first_purchase_at = EXCLUDED.first_purchase_at,
            last_purchase_at = EXCLUDED.last_purchase_at,
            purchase_count = EXCLUDED.purchase_count,
            total_spent = EXCLUDED.total_spent,
            updated_at = now()
        """,
        *_columns(summaries),
    )


def _columns(summaries: list[PurchaseSummary]) -> list[list[Any]]:
    return [
        [s.customer_id for s in summaries],
        [s.first_purchase_at for s in summaries],
        [s.last_purchase_at for s in summaries],
        [s.purchase_count for s in summaries],
        [s.total_spent for s in summaries],
    ]
