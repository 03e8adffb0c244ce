"""Complaints' SQL: record each complaint's events, re-derive the complaints a batch touches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

import asyncpg

from services.complaints.domain import Complaint, complaint_id_of, derive
from shared.db import Connection
from shared.events import Event, Topic, ValidationContext, decode_event

_COLUMNS = [f.name for f in fields(Complaint)]


class ComplaintsProjection:
    name = "complaints"
    topics: Sequence[str] = (Topic.COMPLAINTS,)

    def __init__(self, validation: ValidationContext) -> None:
        self._validation = validation

    async def store(self, conn: Connection, events: list[Event]) -> None:
        rows = [(complaint_id_of(e), e) for e in events]
        rows = [(cid, e) for cid, e in rows if cid is not None]
        if not rows:
            return
        await conn.execute(
            "INSERT INTO complaint_events (complaint_id, event_id, time, body) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[]) "
            "ON CONFLICT DO NOTHING",
            [cid for cid, _ in rows],
            [e.id for _, e in rows],
            [e.time for _, e in rows],
            [e.to_bytes().decode() for _, e in rows],
        )
        touched = sorted({cid for cid, _ in rows if cid})
        history = await self._history(conn, touched)
        complaints = [derive(cid, evs[0].subject, evs) for cid, evs in history.items()]
        await _save(conn, complaints)

    async def _history(self, conn: Connection, ids: list[str]) -> dict[str, list[Event]]:
        records = await conn.fetch(
            "SELECT complaint_id, body FROM complaint_events WHERE complaint_id = ANY($1::text[])",
            ids,
        )
        history: dict[str, list[Event]] = {}
        for r in records:
            # Re-validated with the same rules; a stored event was valid when it arrived.
            event = decode_event(r["body"].encode(), self._validation)
            history.setdefault(r["complaint_id"], []).append(event)
        return history


async def _save(conn: Connection, complaints: list[Complaint]) -> None:
    columns = ", ".join(_COLUMNS)
    types = [
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "int",
        "int",
    ]
    params = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:])
    values: list[list[Any]] = [[asdict(c)[name] for c in complaints] for name in _COLUMNS]
    await conn.execute(
        f"INSERT INTO complaints ({columns}) SELECT * FROM unnest({params}) "
        f"ON CONFLICT (complaint_id) DO UPDATE SET {updates}, updated_at = now()",
        *values,
    )


async def load_complaint(pool: asyncpg.Pool, complaint_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {', '.join(_COLUMNS)} FROM complaints WHERE complaint_id = $1", complaint_id
    )
    return dict(row) if row else None
