"""Scoring's projection: the flow of one batch of fresh events, in the runtime's transaction.

1. Lock. One customer's events can be folded by two instances at once: other systems publish
   straight to the topics, and a librdkafka client (CRC32 keys) puts a customer on another
   partition than aiokafka and the relay (murmur2) do. Scoring's rows are facts keyed by
   their event (purchases, interactions, complaints, profile events), inserted and never
   updated; RFM and the population are derived from them when read. Inserts commute, so two
   instances folding the same customer need no lock: that is the hot path. What does not
   commute is an erasure against a profile event stored at the same time: neither
   transaction sees the other's rows, so the erasure's DELETE would miss the profile event,
   or the profile event would be stored against an erasure it did not see. So a batch first
   locks the stripes of the customers whose personal data it touches, shared to store
   profile events (two such batches never wait for each other), exclusive to erase; in one
   statement, in ascending order, so two instances cannot deadlock. Stripes bound the locks a
   transaction holds (PostgreSQL's lock table is sized per connection).
2. Erasure: record the batch's erasures and delete the profile events they cover; read the
   erasures of the customers whose profile events the batch holds.
3. Fold, pure (domain.history_of): the rows each history table gains.
4. Store: one INSERT ... unnest per table (store.insert_history).
5. Outbox: nothing here. Scoring's derived events (class changes, tier summaries) come from
   the re-score, which writes them with its snapshot (rescore.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import tzinfo

from services.scoring import store
from services.scoring.domain import history_of, personal_data
from shared.db import Connection
from shared.erasure import erasures_for, record_erasures
from shared.events import Event, Topic

LOCK_STRIPES = 1024  # most advisory locks one batch holds


class ScoringProjection:
    name = "scoring"
    topics: Sequence[str] = (
        Topic.CUSTOMERS,
        Topic.PURCHASES,
        Topic.INTERACTIONS,
        Topic.COMPLAINTS,
        Topic.SURVEYS,
    )

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone

    async def store(self, conn: Connection, events: list[Event]) -> None:
        profiled, erasing = personal_data(events)
        if profiled or erasing:
            await store.lock_stripes(conn, *lock_plan(profiled, erasing))
        if erasing:
            await store.erase_personal_data(conn, await record_erasures(conn, events))
        erasures = await erasures_for(conn, list(profiled)) if profiled else {}
        await store.insert_history(conn, history_of(events, self._zone, erasures))


def stripe(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode()) % LOCK_STRIPES


def lock_plan(profiled: Iterable[str], erasing: Iterable[str]) -> tuple[list[int], list[bool]]:
    """The stripes to lock, ascending, and for each whether exclusively (an erasure)."""
    exclusive: dict[int, bool] = dict.fromkeys(map(stripe, profiled), False)
    exclusive.update(dict.fromkeys(map(stripe, erasing), True))
    stripes = sorted(exclusive)
    return stripes, [exclusive[s] for s in stripes]
