"""The scheduled re-score and model refit: population -> models -> scores -> derived events.

Recency moves with the clock, so a customer can change class with no new event; this job
re-scores everyone every SCORING_RESCORE_SECONDS and emits crm.customer.segment_changed,
.tier_changed and .churn_risk_raised for those whose class changed, through scoring's own
outbox in the same transaction as the new snapshot. With several instances, a PostgreSQL
advisory lock makes one of them do it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from services.scoring import store
from services.scoring.population import (
    Change,
    FittedModels,
    Models,
    Population,
    Reference,
    ScoringConfig,
    changes,
    fit_models,
    score,
    weekly_discount_rate,
)
from services.scoring.resources import ScoringResources
from services.scoring.settings import ScoringSettings
from shared import db
from shared.db import Connection, Pool
from shared.events import ClassChanged, Event, TierSummary, new_event
from shared.outbox import append_events
from shared.service import every

log = logging.getLogger(__name__)

RESCORE_LOCK = zlib.crc32(b"scoring:rescore")
SOURCE = "crm/scoring"
EVENTS_PER_APPEND = 2000
EVENTS_PER_YIELD = 100
_IDS = uuid.UUID("6f1d2c1e-8c59-4f7e-9a53-0f1c1b0c7e11")


async def fit_and_save(
    conn: Connection | Pool, population: Population, config: ScoringConfig
) -> tuple[Models | None, FittedModels]:
    started = time.perf_counter()
    fitted = await asyncio.to_thread(fit_models, population, config)
    if fitted.bgnbd is None:
        return None, fitted
    record: dict[str, Any] = {
        "observation_end": population.as_of,
        "time_unit": config.time_unit,
        "customers": fitted.customers,
        "fit_seconds": time.perf_counter() - started,
        "r": fitted.bgnbd.params.r,
        "alpha": fitted.bgnbd.params.alpha,
        "a": fitted.bgnbd.params.a,
        "b": fitted.bgnbd.params.b,
        "bgnbd_log_likelihood": fitted.bgnbd.log_likelihood,
        "bgnbd_method": fitted.bgnbd.method,
    }
    if fitted.gamma_gamma is not None:
        record |= {
            "p": fitted.gamma_gamma.params.p,
            "q": fitted.gamma_gamma.params.q,
            "gamma": fitted.gamma_gamma.params.gamma,
            "gamma_gamma_log_likelihood": fitted.gamma_gamma.log_likelihood,
            "gamma_gamma_customers": fitted.gamma_gamma.n_customers,
        }
    return await store.save_models(conn, record), fitted


async def _current_models(
    conn: Connection, population: Population, settings: ScoringSettings
) -> Models | None:
    rows = await store.model_rows(conn)
    stale = not rows or (
        (datetime.now(UTC) - rows[0]["fitted_at"]).total_seconds() > settings.scoring_refit_seconds
    )
    if stale:
        models, _ = await fit_and_save(conn, population, settings.scoring_config())
        return models or (store.models_of(rows[0]) if rows else None)
    return store.models_of(rows[0])


async def rescore(settings: ScoringSettings, now: datetime | None = None) -> int | None:
    """Re-score every customer; return the run id, or None if another instance holds it.
    On a connection of its own (SCORING_RESCORE_TIMEOUT_SECONDS per statement), closed at
    the end, which also ends its advisory lock."""
    conn = await db.connect(
        settings.database_url,
        store.SCHEMA,
        command_timeout=settings.scoring_rescore_timeout_seconds,
    )
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RESCORE_LOCK):
            return None
        return await _rescore_locked(conn, settings, now or datetime.now(UTC))
    finally:
        await conn.close()


async def _rescore_locked(conn: Connection, settings: ScoringSettings, as_of: datetime) -> int:
    started = time.perf_counter()
    config = settings.scoring_config()
    zone = ZoneInfo(settings.timezone)
    loaded_at = await store.database_clock(conn)  # before the load's snapshot is taken
    population = await store.load_population(
        conn,
        as_of,
        zone,
        settings.scoring_trend_window_days,
        count_zero_value=settings.scoring_count_zero_value_orders,
    )
    models = await _current_models(conn, population, settings)
    reference = Reference.of(population, config)
    scores = await asyncio.to_thread(score, population, reference, models, config)
    async with conn.transaction():
        previous = await store.previous_classes(conn)
        seconds = time.perf_counter() - started
        terms = money_terms(settings)
        run_id = await store.save_run(conn, as_of, models, reference, seconds, loaded_at, terms)
        await store.save_scores(
            conn,
            run_id,
            scores,
            population,
            previous,
            model_version=models.version if models else None,
            loaded_at=loaded_at,
        )
        found = await asyncio.to_thread(changes, previous, scores)
        del previous
        # The first re-score announces every customer's classes (three events each): built
        # and appended a slice at a time, so memory holds one slice of events, not all.
        for start in range(0, len(found), EVENTS_PER_APPEND):
            chunk = found[start : start + EVENTS_PER_APPEND]
            await append_events(conn, await _change_events(chunk, as_of, run_id))
        summaries = await asyncio.to_thread(
            _tier_summaries, scores.tier, scores.predicted_clv, as_of, run_id, config.horizon_weeks
        )
        await append_events(conn, summaries)
    log.info(
        "re-scored customers",
        extra={
            "run_id": run_id,
            "customers": population.size,
            "changes": len(found),
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return run_id


def money_terms(settings: ScoringSettings) -> store.MoneyTerms:
    """What the money figures of scores made with these settings mean."""
    config = settings.scoring_config()
    return store.MoneyTerms(
        currency=settings.reporting_currency,
        horizon_weeks=config.horizon_weeks,
        discount_rate_per_week=weekly_discount_rate(config),
        margin=config.margin,
    )


async def _change_events(found: list[Change], as_of: datetime, run_id: int) -> list[Event]:
    """Built on the event loop, giving way every EVENTS_PER_YIELD events (about 50 us
    each): a thread would hold the GIL in turns of 5 ms against every system call of the
    loop's and stall the consumer and the API for hundreds of milliseconds."""
    events = []
    for start in range(0, len(found), EVENTS_PER_YIELD):
        events += [_change_event(c, as_of, run_id) for c in found[start : start + EVENTS_PER_YIELD]]
        await asyncio.sleep(0)
    return events


def _change_event(change: Change, as_of: datetime, run_id: int) -> Event:
    data = ClassChanged(old=change.old, new=change.new, as_of=as_of, churn_risk=change.churn_risk)
    return new_event(
        f"crm.customer.{change.kind}",
        change.customer_id,
        data,
        source=SOURCE,
        event_id=str(uuid.uuid5(_IDS, f"{run_id}:{change.kind}:{change.customer_id}")),
        time=as_of,
    )


def _tier_summaries(
    tiers: np.ndarray[Any, Any],
    clv: np.ndarray[Any, Any],
    as_of: datetime,
    run_id: int,
    horizon_weeks: int,
) -> list[Event]:
    totals: dict[str, list[float]] = defaultdict(list)
    for tier, value in zip(tiers.tolist(), clv.tolist(), strict=True):
        totals[tier].append(value)
    events = []
    for tier, values in sorted(totals.items()):
        known = [v for v in values if not np.isnan(v)]
        # No predictive CLV (no Gamma-Gamma model yet): equity unknown, not 0.
        equity = Decimal(str(round(sum(known), 2))) if known else None
        average = Decimal(str(round(sum(known) / len(known), 2))) if known else None
        data = TierSummary(
            as_of=as_of,
            tier=tier,
            customers=len(values),
            customer_equity=equity,
            average_clv=average,
            horizon_weeks=horizon_weeks,
        )
        events.append(
            new_event(
                "crm.scoring.tier_summary",
                f"tier:{tier}",
                data,
                source=SOURCE,
                event_id=str(uuid.uuid5(_IDS, f"{run_id}:tier:{tier}")),
                time=as_of,
            )
        )
    return events


async def rescore_periodically(res: ScoringResources) -> None:
    """The scheduler (task "rescore" of `every`): re-score, then refresh the cached reference,
    every SCORING_RESCORE_SECONDS."""
    settings = res.settings

    async def rescore_and_refresh() -> None:
        try:
            await rescore(settings)
        finally:
            # Reads need the stored reference (an earlier run's) even when this run failed.
            await refresh_reference(res)

    await every(settings.scoring_rescore_seconds, "rescore", rescore_and_refresh)


async def refresh_reference(res: ScoringResources) -> None:
    found = await store.latest_reference(res.pool)
    if found is not None:
        res.caches.last_reference = found
