"""Ingest's SQL: the event store is the shared event log (shared/outbox.py)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.events import Event
from shared.outbox import AppendResult, append_events


class Conflict(Exception):
    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"ids reused with other content: {ids}")
        self.ids = ids


async def store_batch(pool: asyncpg.Pool, events: Sequence[Event]) -> AppendResult:
    """Commit the whole batch or nothing: a conflicting id rolls it back."""
    async with pool.acquire() as conn, conn.transaction():
        result = await append_events(conn, events)
        if result.conflicts:
            raise Conflict(result.conflicts)
    return result


async def count_events(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM events")
    return count
