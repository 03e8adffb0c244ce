"""Reporting's SQL: add a batch's deltas to its days; read the daily KPIs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from services.reporting.domain import daily_deltas
from shared.db import Connection
from shared.events import Event, Topic


class ReportingProjection:
    name = "reporting"
    topics: Sequence[str] = (Topic.PURCHASES,)

    def __init__(self, zone: ZoneInfo) -> None:
        self._zone = zone

    async def store(self, conn: Connection, events: list[Event]) -> None:
        deltas = daily_deltas(events, self._zone)
        if not deltas:
            return
        days = sorted(deltas)
        await conn.execute(
            "INSERT INTO daily_sales (day, revenue, orders) "
            "SELECT * FROM unnest($1::date[], $2::numeric[], $3::int[]) "
            "ON CONFLICT (day) DO UPDATE SET revenue = daily_sales.revenue + EXCLUDED.revenue, "
            "orders = daily_sales.orders + EXCLUDED.orders",
            days,
            [deltas[d].revenue for d in days],
            [deltas[d].orders for d in days],
        )
        pairs = [(d, c) for d in days for c in sorted(deltas[d].buyers)]
        await conn.execute(
            "INSERT INTO daily_buyers (day, customer_id) "
            "SELECT * FROM unnest($1::date[], $2::text[]) ON CONFLICT DO NOTHING",
            [d for d, _ in pairs],
            [c for _, c in pairs],
        )


async def daily_kpis(pool: asyncpg.Pool, first: date, last: date) -> list[dict[str, Any]]:
    """One row per day in [first, last], days without sales included as zeros."""
    rows = await pool.fetch(
        """
        SELECT d::date AS day,
               coalesce(s.revenue, 0) AS revenue,
               coalesce(s.orders, 0) AS orders,
               (SELECT count(*) FROM daily_buyers b WHERE b.day = d::date) AS buyers
        FROM generate_series($1::date, $2::date, interval '1 day') AS d
        LEFT JOIN daily_sales s ON s.day = d::date
        ORDER BY d
        """,
        first,
        last,
    )
    return [dict(r) for r in rows]
