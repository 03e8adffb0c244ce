"""The SQL of crisis handling, and nothing else: alerts with their severity and stage, the
reach of a series over a window, its hourly counts, and the stage changes in the event log.
The detectors' own state and the hourly counts are written by `store.py`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.complaints.crisis import Dimension, SeriesKey
from services.complaints.crisis_severity import Counted, Level, Reach
from shared.db import Connection, Pool, as_columns, insert_unnest
from shared.events import RECORDED, Event, decode_event

STAGE_CHANGED = "crm.crisis.stage_changed"


def alert_id(key: str) -> str:
    """The alert's short id in URLs (its key holds ':' and '+', and a product name anything)."""
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class StoredAlert:
    """An alert row as the detector stored it, with what severity and text it got."""

    key: str
    series: SeriesKey
    window_start: datetime
    window_end: datetime
    count: int
    baseline: float
    score: float
    counted: Counted | None
    reach: Reach
    ratio: float
    magnitude: int
    reach_level: int
    severity: Level
    text_en: str
    text_zh: str


async def insert_alerts(conn: Connection, alerts: Sequence[StoredAlert]) -> None:
    rows = [
        (
            a.key,
            alert_id(a.key),
            a.series.dimension.value,
            a.series.value,
            a.window_start,
            a.window_end,
            a.count,
            a.baseline,
            a.score,
            a.counted,
            a.reach.customers,
            a.reach.channels,
            a.ratio,
            a.magnitude,
            a.reach_level,
            a.severity,
            a.text_en,
            a.text_zh,
        )
        for a in alerts
    ]
    if rows:
        await conn.executemany(
            "INSERT INTO crisis_alerts (key, id, dimension, value, window_start, window_end,"
            " count, baseline, score, counted, customers, channels, ratio, magnitude, reach,"
            " severity, text_en, text_zh) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
            " $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT DO NOTHING",
            rows,
        )


async def series_reach(
    conn: Connection, series: SeriesKey, start: datetime, end: datetime
) -> Reach:
    """Distinct customers and channels of what `series` counted in [start, end): complaints
    opened (from the complaint log) or negative signals (from `signal_reach`)."""
    if series.dimension is Dimension.SIGNAL:
        row = await conn.fetchrow(
            "SELECT count(DISTINCT customer_id), count(DISTINCT channel) FROM signal_reach"
            " WHERE value = $1 AND time >= $2 AND time < $3",
            series.value,
            start,
            end,
        )
    else:
        # The dimension names a field of the opened event's data (category, channel, product).
        row = await conn.fetchrow(
            "SELECT count(DISTINCT body->>'subject'), count(DISTINCT body->'data'->>'channel')"
            " FROM complaint_events WHERE body->>'type' = 'crm.complaint.opened'"
            " AND time >= $1 AND time < $2 AND body->'data'->>$3::text = $4",
            start,
            end,
            series.dimension.value,
            series.value,
        )
    assert row is not None
    return Reach(customers=row[0], channels=row[1])


async def insert_signal_reach(
    conn: Connection, rows: Sequence[tuple[str, datetime, str, str, str | None]]
) -> None:
    """(value, time, event_id, customer_id, channel) of negative signals."""
    if rows:
        await conn.execute(
            insert_unnest(
                "signal_reach",
                "value text",
                "time timestamptz",
                "event_id text",
                "customer_id text",
                "channel text",
            ),
            *as_columns(rows, 5),
        )


# ---- the read side and the stage commands --------------------------------------------------

_ALERT_COLUMNS = (
    "id, key, dimension, value, window_start, window_end, count, baseline, score, counted,"
    " customers, channels, ratio, magnitude, reach, severity, text_en, text_zh, stage,"
    " stage_at, difficulty, detected_at"
)


async def alerts_page(
    pool: Pool,
    *,
    start: datetime | None,
    end: datetime | None,
    stage: str | None,
    limit: int,
    after: tuple[float, str] | None,
) -> list[dict[str, Any]]:
    """Latest window first; keyset-paged on (window end, id)."""
    rows = await pool.fetch(
        f"SELECT {_ALERT_COLUMNS}, extract(epoch FROM window_end)::float8 AS sort_key"
        " FROM crisis_alerts WHERE ($1::timestamptz IS NULL OR window_end >= $1)"
        " AND ($2::timestamptz IS NULL OR window_start <= $2)"
        " AND ($3::text IS NULL OR stage = $3)"
        " AND ($4::float8 IS NULL OR (extract(epoch FROM window_end)::float8, id)"
        " < ($4::float8, $5::text))"
        " ORDER BY window_end DESC, id DESC LIMIT $6",
        start,
        end,
        stage,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [dict(r) for r in rows]


async def alert(conn: Connection | Pool, alert_id: str, *, for_update: bool = False) -> Any:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {_ALERT_COLUMNS} FROM crisis_alerts WHERE id = $1{lock}", alert_id
    )


async def set_stage(
    conn: Connection, alert_id: str, stage: str, at: datetime, difficulty: str | None
) -> None:
    await conn.execute(
        "UPDATE crisis_alerts SET stage = $2, stage_at = $3,"
        " difficulty = coalesce($4, difficulty) WHERE id = $1",
        alert_id,
        stage,
        at,
        difficulty,
    )


async def series_count(
    conn: Connection, series: SeriesKey, first_hour: datetime, last_hour: datetime
) -> int:
    """What the series counted in the hours from `first_hour` through `last_hour`."""
    total: int = await conn.fetchval(
        "SELECT coalesce(sum(count), 0) FROM signal_counts WHERE dimension = $1 AND value = $2"
        " AND hour >= $3 AND hour <= $4",
        series.dimension.value,
        series.value,
        first_hour,
        last_hour,
    )
    return total


async def hourly_counts(
    pool: Pool, series: SeriesKey, first_hour: datetime, last_hour: datetime
) -> dict[datetime, int]:
    rows = await pool.fetch(
        "SELECT hour, count FROM signal_counts WHERE dimension = $1 AND value = $2"
        " AND hour >= $3 AND hour <= $4",
        series.dimension.value,
        series.value,
        first_hour,
        last_hour,
    )
    return {r["hour"]: r["count"] for r in rows}


async def stage_changes(pool: Pool, key: str) -> list[Event]:
    """The alert's stage changes in the event log, in order."""
    rows = await pool.fetch(
        "SELECT body FROM events WHERE type = $1 AND body->'data'->>'alert_id' = $2"
        " ORDER BY time, seq",
        STAGE_CHANGED,
        key,
    )
    return [decode_event(r["body"].encode(), RECORDED) for r in rows]
