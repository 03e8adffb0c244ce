"""Ingest's SQL: the event store is the shared event log (shared/outbox.py)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.ingest.domain import refusal
from shared.db import Connection
from shared.erasure import erase_stored, record_erasures, without_erased_data
from shared.events import SOURCE_TOPICS, Event
from shared.outbox import AppendResult, append_events, archive_events, record_seen_offsets


class ArchiveProjection:
    """The gateway for events other systems publish straight to the topics: judged like a
    POST (the runtime validates them with the clock and settings, `judge` refuses the rest to
    the dead-letter topic), stored in the event store and published by the relay, whose copy
    is the one every other service folds. So the store holds every event whoever sent it, a
    broker loss loses none of them, and all consumers fold the same events."""

    name = "ingest-archive"
    topics: Sequence[str] = SOURCE_TOPICS
    judges_direct_records = True
    judge = staticmethod(refusal)

    async def store(self, conn: Connection, events: list[Event]) -> None:
        events = await without_erased_data(conn, events)
        await erase_stored(conn, await record_erasures(conn, events))
        await archive_events(conn, events)
        await record_seen_offsets(conn, events)


class Conflict(Exception):
    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"ids reused with other content: {ids}")
        self.ids = ids


class Unavailable(Exception):
    """The database did not answer in time: the client should retry (HTTP 503)."""


async def store_batch(
    pool: asyncpg.Pool, events: Sequence[Event], timeout: float = 5.0
) -> AppendResult:
    """Commit the whole batch or nothing: a conflicting id rolls it back."""
    try:
        return await _store(pool, events, timeout)
    except (
        TimeoutError,
        OSError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        # The server shutting down or restarting under a request (CannotConnectNow,
        # AdminShutdown, CrashShutdown): the client retries, and ids make a retry safe.
        asyncpg.exceptions.OperatorInterventionError,
    ) as error:
        raise Unavailable(f"{type(error).__name__}") from error


async def _store(pool: asyncpg.Pool, events: Sequence[Event], timeout: float) -> AppendResult:
    async with pool.acquire(timeout=timeout) as conn, conn.transaction():
        events = await without_erased_data(conn, events)
        await erase_stored(conn, await record_erasures(conn, events))
        result = await append_events(conn, events)
        if result.conflicts:
            raise Conflict(result.conflicts)
    return result
