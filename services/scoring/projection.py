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
5. Score the customers whose facts the batch changed (purchases, interactions, complaints,
   profile events: strategic value is one), against the population of the last re-score
   that saw a buyer, and store their rows (source 'live'), so that every read is a lookup
   (issue 16, items 1 and 5). Before that re-score there is nothing to rank against: reads
   compute until then. Two instances can fold the same customer at once (step 1): each
   would score from its own transaction's facts, the later commit missing the other's, so
   this step takes the customers' scoring stripes exclusively (after step 1's, both in
   ascending order): the second scores once the first has committed. It comes last, so the
   stripes are held only for it and the commit.
6. Outbox: nothing here. Scoring's derived events (class changes, tier summaries) come from
   the re-score, which writes them with its snapshot (rescore.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo

from services.scoring import store
from services.scoring.domain import History, history_of, personal_data
from services.scoring.population import Models, Reference, score
from services.scoring.settings import ScoringSettings
from shared.db import Connection
from shared.erasure import erasures_for, record_erasures
from shared.events import Event, Topic

LOCK_STRIPES = 1024  # most advisory locks one batch holds
SCORING_STRIPES = 256  # most scoring locks one batch holds (step 5)


class ScoringProjection:
    name = "scoring"
    topics: Sequence[str] = (
        Topic.CUSTOMERS,
        Topic.PURCHASES,
        Topic.INTERACTIONS,
        Topic.COMPLAINTS,
        Topic.SURVEYS,
    )

    def __init__(self, zone: tzinfo, settings: ScoringSettings | None = None) -> None:
        self._zone = zone
        self._settings = settings or ScoringSettings()
        self._config = self._settings.scoring_config()
        # The last re-score's population and the latest models, reloaded when they change.
        self._reference: tuple[int, Reference] | None = None
        self._models: Models | None = None

    async def store(self, conn: Connection, events: list[Event]) -> None:
        profiled, erasing = personal_data(events)
        if profiled or erasing:
            await store.lock_stripes(conn, *lock_plan(profiled, erasing))
        if erasing:
            await store.erase_personal_data(conn, await record_erasures(conn, events))
        erasures = await erasures_for(conn, list(profiled)) if profiled else {}
        history = history_of(events, self._zone, erasures)
        await store.insert_history(conn, history)
        changed = scored_customers(history)
        if changed:
            await self._score(conn, changed)

    async def _score(self, conn: Connection, customers: list[str]) -> None:
        """Step 5: the customers' rows, scored now against the last re-score's population."""
        run_id, model_version = await store.scoring_basis(conn)
        if run_id is None:
            return
        if self._reference is None or self._reference[0] != run_id:
            self._reference = run_id, await store.run_reference(conn, run_id)
        if model_version is not None and (
            self._models is None or self._models.version != model_version
        ):
            self._models = await store.latest_models(conn)
        await store.lock_scoring_stripes(conn, sorted({scoring_stripe(c) for c in customers}))
        settings = self._settings
        population = await store.load_population(
            conn,
            datetime.now(UTC),
            self._zone,
            settings.scoring_trend_window_days,
            customers,
            count_zero_value=settings.scoring_count_zero_value_orders,
        )
        scores = score(population, self._reference[1], self._models, self._config)
        departed = sorted(set(customers) - set(population.customer_id.tolist()))
        version = self._models.version if self._models else None
        await store.save_live_scores(conn, run_id, version, scores, population, departed)


def scored_customers(history: History) -> list[str]:
    """Customers whose scores the rows may change (a survey answer changes none), sorted."""
    rows = (history.purchases, history.interactions, history.complaints, history.profile_events)
    return sorted({row[0] for table in rows for row in table})


def scoring_stripe(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode()) % SCORING_STRIPES


def stripe(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode()) % LOCK_STRIPES


def lock_plan(profiled: Iterable[str], erasing: Iterable[str]) -> tuple[list[int], list[bool]]:
    """The stripes to lock, ascending, and for each whether exclusively (an erasure)."""
    exclusive: dict[int, bool] = dict.fromkeys(map(stripe, profiled), False)
    exclusive.update(dict.fromkeys(map(stripe, erasing), True))
    stripes = sorted(exclusive)
    return stripes, [exclusive[s] for s in stripes]
