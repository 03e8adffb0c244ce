"""Complaints' schedulers: the SLA sweep and the crisis detectors (the silence sweep, with
its own consumer, is `silence_flow.watch_silence`).

Deadlines are stored, not kept in memory: the sweep asks PostgreSQL which complaints have an
SLA event due (`next_sla_at <= now`) and emits what they owe, so after a restart every breach that
fell due while the service was down is emitted at once, with the time it happened. With
several instances a transaction-scoped advisory lock makes one of them do each pass.
"""

from __future__ import annotations

import logging
import zlib
from datetime import UTC, datetime

from services.complaints.crisis_flow import evaluate_crisis
from services.complaints.projection import sweep_due
from services.complaints.resources import ComplaintsResources
from services.complaints.settings import ComplaintsSettings
from shared.db import Pool
from shared.service import every

log = logging.getLogger(__name__)

SWEEP_LOCK = zlib.crc32(b"complaints:sla-sweep")
CRISIS_LOCK = zlib.crc32(b"complaints:crisis")
SWEEP_BATCH = 500


async def sweep_once(pool: Pool, settings: ComplaintsSettings, now: datetime | None = None) -> int:
    """Emit the SLA events due by now; return how many complaints owed some."""
    now = now or datetime.now(UTC)
    config = settings.sla_config()
    done = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK):
                return done
            swept = await sweep_due(conn, now, SWEEP_BATCH, config)
        done += swept
        if swept < SWEEP_BATCH:
            return done


async def detect_once(pool: Pool, settings: ComplaintsSettings, now: datetime | None = None) -> int:
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", CRISIS_LOCK):
            return 0
        return await evaluate_crisis(
            conn, now or datetime.now(UTC), settings.crisis_config(), settings.severity_config()
        )


async def sweep_sla(res: ComplaintsResources) -> None:
    settings = res.settings

    async def sweep() -> None:
        await sweep_once(res.pool, settings)
        if res.relay is not None:
            res.relay.notify()

    await every(settings.sla_sweep_seconds, "sla_sweep", sweep)


async def detect_crises(res: ComplaintsResources) -> None:
    settings = res.settings

    async def detect() -> None:
        if await detect_once(res.pool, settings) and res.relay is not None:
            res.relay.notify()

    await every(settings.crisis_check_seconds, "crisis_detection", detect)
