"""The SQL of the silence rule, and nothing else: each customer's latest act and resolution,
and the windows after resolutions still open. The flow that uses it is `silence_flow.py`."""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping
from datetime import datetime

from services.complaints.silence import CustomerSilence, Watch
from shared.db import Connection, as_columns, insert_unnest


async def lock_customers(conn: Connection, customers: Collection[str]) -> None:
    """Transaction-scoped, in key order (no deadlock): the activity consumer's instances and
    the sweeper take turns on a customer."""
    keys = sorted({zlib.crc32(f"silence:{c}".encode()) for c in customers})
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k", keys
        )


async def load(conn: Connection, customers: Collection[str]) -> dict[str, CustomerSilence]:
    ids = sorted(customers)
    heads = await conn.fetch(
        "SELECT customer_id, last_activity, latest_resolution FROM silence_customers"
        " WHERE customer_id = ANY($1::text[])",
        ids,
    )
    watches: dict[str, list[Watch]] = {}
    for r in await conn.fetch(
        "SELECT customer_id, complaint_id, resolved_at, first_activity_after,"
        " last_activity_before FROM silence_watches WHERE customer_id = ANY($1::text[])"
        " ORDER BY resolved_at",
        ids,
    ):
        watches.setdefault(r[0], []).append(Watch(*r[1:]))
    return {r[0]: CustomerSilence(r[1], r[2], tuple(watches.get(r[0], ()))) for r in heads}


async def save(conn: Connection, states: Mapping[str, CustomerSilence]) -> None:
    """Write the customers' states whole (their open watches replace the stored ones)."""
    if not states:
        return
    ids = list(states)
    await conn.execute(
        insert_unnest(
            "silence_customers",
            "customer_id text",
            "last_activity timestamptz",
            "latest_resolution timestamptz",
            then="ON CONFLICT (customer_id) DO UPDATE SET last_activity = EXCLUDED.last_activity,"
            " latest_resolution = EXCLUDED.latest_resolution",
        ),
        ids,
        [states[c].last_activity for c in ids],
        [states[c].latest_resolution for c in ids],
    )
    await conn.execute("DELETE FROM silence_watches WHERE customer_id = ANY($1::text[])", ids)
    rows = [(c, *_watch_row(w)) for c in ids for w in states[c].watches]
    if rows:
        await conn.execute(
            insert_unnest(
                "silence_watches",
                "customer_id text",
                "complaint_id text",
                "resolved_at timestamptz",
                "first_activity_after timestamptz",
                "last_activity_before timestamptz",
                then="",  # their watches were deleted above: a conflict would be a bug, and fails
            ),
            *as_columns(rows, 5),
        )


def _watch_row(w: Watch) -> tuple[str, datetime, datetime | None, datetime | None]:
    return (w.complaint_id, w.resolved_at, w.first_activity_after, w.last_activity_before)


async def customers_due(conn: Connection, resolved_by: datetime, limit: int) -> list[str]:
    """Customers with a window that had ended by now (resolved at or before `resolved_by`)."""
    rows = await conn.fetch(
        "SELECT DISTINCT customer_id FROM silence_watches WHERE resolved_at <= $1"
        " ORDER BY customer_id LIMIT $2",
        resolved_by,
        limit,
    )
    return [r[0] for r in rows]
