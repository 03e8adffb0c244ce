"""`crm rebuild SERVICE`: fold a service's topics from their start into a shadow schema while
the live one keeps serving, then swap the two in one transaction.

1. `<schema>_rebuild` is created afresh with the service's migrations.
2. The service's own projection folds every topic it reads (API keys included) from offset 0
   into it, through the same consumer runtime as the service, under a Kafka group of its own
   and the service's consumer name, so the offsets and applied ids it stores are the ones the
   live service will continue from. Dead letters were sent the first time: not again.
3. Once every partition is assigned and the lag is small, the rebuild pauses and, in one
   transaction that holds off the live consumers' commits, checks that it has applied at
   least what they have (else it folds on and tries again), moves over the tables the
   service writes itself rather than folds (its event log and outbox, job state:
   `ServiceSpec.kept_on_rebuild`), renames the live schema `<schema>_previous` and the
   shadow `<schema>`. Readers see the old tables or the new ones, never neither (PostgreSQL
   DDL is transactional), and never older data than a moment before.
4. The live consumers' partition claims are not in the new schema: their next commit, or
   their next idle lease check, is refused (fenced), and they re-read from the offsets the
   rebuild stored. Nothing is skipped or applied twice.

`<schema>_previous` stays for inspection or rollback until the next rebuild of the service.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from shared import db
from shared.consumer import ConsumerRuntime
from shared.service import ServiceSpec, validation_context
from shared.settings import CommonSettings
from tooling import registry

REBUILDABLE = registry.FOLDING
LOG_TABLES = ("events", "outbox", "relay_marks", "relay_state")  # of a service that publishes
# How long a rebuild within --max-lag may try to swap before giving up: it must get ahead of
# the live consumers' offsets, which move on while events arrive.
SWAP_PATIENCE_SECONDS = 300.0
SWAP_LOCK_SECONDS = 30.0  # how long a swap keeps trying to lock the tables it moves


@dataclass(frozen=True)
class Progress:
    read: int  # records read from the topics
    end: int  # records in the topics (their log ends), growing while events arrive
    rate: float  # records per second since the start
    partitions: int  # partitions assigned to the rebuild


class RebuildError(Exception):
    pass


def spec_of(service: str) -> ServiceSpec:
    if service == "ingest":
        raise RebuildError("ingest's read model is the event store itself: nothing to rebuild")
    if service not in REBUILDABLE:
        raise RebuildError(f"no service {service!r}; one of {', '.join(REBUILDABLE)}")
    return registry.service(service).spec()


def carried_tables(spec: ServiceSpec) -> tuple[str, ...]:
    return (*(LOG_TABLES if spec.publishes else ()), *spec.kept_on_rebuild)


async def rebuild(
    service: str,
    settings: CommonSettings | None = None,
    *,
    max_lag: int = 500,
    on_progress: Callable[[Progress], None] = lambda _: None,
) -> Progress:
    """Rebuild `service`'s read models; return the progress at the swap."""
    spec = spec_of(service)
    settings = spec.own_settings(settings)
    shadow = f"{spec.schema}_rebuild"
    guard = await asyncpg.connect(settings.database_url)
    try:
        lock = zlib.crc32(f"rebuild:{spec.schema}".encode())
        if not await guard.fetchval("SELECT pg_try_advisory_lock($1)", lock):
            raise RebuildError(f"a rebuild of {service} is running already")
        if not await guard.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", spec.schema):
            raise RebuildError(f"{service} has no read models yet: start it once first")
        await guard.execute(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE')
        pool = await db.create_pool(settings.database_url, shadow, max_size=4)
        try:
            await db.migrate(pool, shadow, *spec.migration_directories())
            return await _fold_and_swap(spec, settings, pool, guard, max_lag, on_progress)
        finally:
            await pool.close()
    finally:
        await guard.close()


async def _fold_and_swap(
    spec: ServiceSpec,
    settings: CommonSettings,
    pool: db.Pool,
    guard: asyncpg.Connection[asyncpg.Record],
    max_lag: int,
    on_progress: Callable[[Progress], None],
) -> Progress:
    assert spec.projection is not None
    projection = spec.projection(settings)
    runtime = ConsumerRuntime(
        settings,
        pool,
        projection,
        validation_context(settings),
        group=f"{spec.name}-rebuild-{uuid.uuid4().hex[:8]}",
        send_dead_letters=False,
    )
    started = time.monotonic()
    swap_by: float | None = None
    await runtime.start()
    try:
        while True:
            await asyncio.sleep(0.5)  # a progress display's refresh, not synchronisation
            read, end, partitions = runtime.progress()
            rate = read / max(time.monotonic() - started, 1e-9)
            progress = Progress(read, max(end or 0, read), rate, partitions)
            on_progress(progress)
            if runtime.status.last_error and not runtime.status.running:
                raise RebuildError(f"the rebuild's consumer stopped: {runtime.status.last_error}")
            every_partition = partitions and partitions == runtime.partition_count()
            if not (every_partition and end is not None and end - read <= max_lag):
                continue
            swap_by = swap_by or time.monotonic() + SWAP_PATIENCE_SECONDS
            async with runtime.paused():
                if await _swap(guard, spec, projection.name, carried_tables(spec)):
                    runtime.halt()  # its pool now points at a schema that is gone
                    return progress
            if time.monotonic() > swap_by:
                raise RebuildError(
                    f"the rebuild did not catch up with the live consumers in "
                    f"{SWAP_PATIENCE_SECONDS:.0f} s (more events arrive than it folds)"
                )
    finally:
        await runtime.stop()


async def _lock_all_at_once(conn: asyncpg.Connection[asyncpg.Record], tables: list[str]) -> None:
    """Lock the moved tables exclusively, all of them or none: a read takes its tables in
    the planner's order, so waiting for them one by one while holding the others could
    deadlock with it (PostgreSQL then aborts one side: a failed read). Each attempt is
    NOWAIT in a savepoint, whose rollback releases what it took; it tries again until
    SWAP_LOCK_SECONDS. The carried tables come before the offsets, the order a live batch
    takes them in."""
    if not tables:
        return
    deadline = time.monotonic() + SWAP_LOCK_SECONDS
    while True:
        try:
            async with conn.transaction():  # a savepoint
                await conn.execute(
                    f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE NOWAIT"
                )
            return
        except asyncpg.LockNotAvailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


async def _swap(
    conn: asyncpg.Connection[asyncpg.Record],
    spec: ServiceSpec,
    consumer: str,
    carried: tuple[str, ...],
) -> bool:
    """Swap the shadow in, unless it is behind what the live consumers applied (then the
    readers would see older data for a moment): False, and nothing changed."""
    live, shadow, previous = spec.schema, f"{spec.schema}_rebuild", f"{spec.schema}_previous"
    async with conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '30s'")
        await _lock_all_at_once(conn, [f'"{live}"."{table}"' for table in carried])
        # Holds off the live consumers' commits: their offsets stay put while compared.
        await conn.execute(f'LOCK TABLE "{live}".consumer_offsets IN EXCLUSIVE MODE')
        behind = await conn.fetchval(
            f"""
            SELECT count(*) FROM "{live}".consumer_offsets l
            LEFT JOIN "{shadow}".consumer_offsets s
              ON s.consumer = l.consumer AND s.topic = l.topic AND s.partition = l.partition
            WHERE l.consumer = $1 AND coalesce(s.next_offset, -1) < l.next_offset
            """,
            consumer,
        )
        if behind:
            return False
        await conn.execute(f'DROP SCHEMA IF EXISTS "{previous}" CASCADE')
        for table in carried:
            await conn.execute(f'DROP TABLE "{shadow}"."{table}" CASCADE')
        for table in carried:
            await conn.execute(f'ALTER TABLE "{live}"."{table}" SET SCHEMA "{shadow}"')
        await conn.execute(f'ALTER SCHEMA "{live}" RENAME TO "{previous}"')
        await conn.execute(f'ALTER SCHEMA "{shadow}" RENAME TO "{live}"')
    return True
