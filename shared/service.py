"""Wiring one service: pool, migrations, consumer runtime, outbox relay, HTTP app, server.

Each service's `main.py` describes itself with a `ServiceSpec`; this module does the rest,
so start-up, readiness and shutdown work the same way everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request

from shared import db, kafka, logs
from shared.auth import KeyRing
from shared.consumer import ConsumerRuntime, Projection
from shared.events import ValidationContext
from shared.http import LatencyMiddleware, install_error_handlers, operations_router
from shared.outbox import OutboxRelay
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

# A consumer that has not polled for this long is not ready (broker unreachable, or stuck).
POLL_STALENESS_SECONDS = 15.0


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    schema: str
    default_port: int
    migrations: Path
    routers: Sequence[APIRouter]
    description: str
    projection: Callable[[CommonSettings], Projection] | None = None
    publishes: bool = False  # has an event log and outbox relay
    # Whether a consumer without partitions makes the service unready. Not for ingest: its
    # consumer only archives, and it must keep taking events while the broker is away.
    consumer_gates_readiness: bool = True
    # Long-running work of the service (schedulers): started after the consumer, cancelled
    # at shutdown. Each gets the running service's resources.
    tasks: Sequence[Callable[[Resources], Awaitable[None]]] = ()
    tags: list[dict[str, str]] = field(default_factory=list)
    settings_type: type[CommonSettings] = CommonSettings
    # Tables the service writes itself rather than folds from topics (job state, fitted
    # models, emitted-event marks): `crm rebuild` carries them over to the rebuilt schema,
    # with the event log and outbox of a service that publishes.
    kept_on_rebuild: tuple[str, ...] = ()

    def migration_directories(self) -> list[Path]:
        """The service's own migrations, the consumer runtime's (every service consumes, at
        least the API keys) and, for a service that publishes, the event log and outbox."""
        directories = [self.migrations, db.CONSUMER_MIGRATIONS]
        if self.publishes:
            directories.append(db.OUTBOX_MIGRATIONS)
        return directories


@dataclass
class Resources:
    settings: CommonSettings
    pool: db.Pool
    keys: KeyRing
    consumer: ConsumerRuntime | None = None
    relay: OutboxRelay | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # a service's own caches


def validation_context(settings: CommonSettings) -> ValidationContext:
    return ValidationContext(
        settings.reporting_currency, timedelta(seconds=settings.future_tolerance_seconds)
    )


def resources(request: Request) -> Resources:
    """FastAPI dependency: the running service's resources."""
    found: Resources = request.app.state.resources
    return found


def create_app(spec: ServiceSpec, settings: CommonSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        res = await _start(spec, settings)
        app.state.resources = res
        try:
            yield
        finally:
            await _stop(res)

    app = FastAPI(
        title=f"CRM analytics: {spec.name}",
        description=spec.description,
        version="0.1.0",
        lifespan=lifespan,
        openapi_tags=spec.tags or None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(LatencyMiddleware)
    app.include_router(operations_router(lambda: _readiness(app, spec)))
    for router in spec.routers:
        app.include_router(router)
    return app


async def _start(spec: ServiceSpec, settings: CommonSettings) -> Resources:
    pool = await db.create_pool(
        settings.database_url,
        spec.schema,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
    )
    await db.migrate(pool, spec.schema, *spec.migration_directories())
    keys = KeyRing(pool, settings.admin_key_sha256, settings.api_key_cache_seconds)
    res = Resources(settings, pool, keys)
    await kafka.wait_for_broker(settings)
    if spec.publishes:
        res.relay = OutboxRelay(settings, pool, spec.schema)
        res.relay.start()
    if spec.projection is not None:
        res.consumer = ConsumerRuntime(
            settings, pool, spec.projection(settings), validation_context(settings)
        )
        await res.consumer.start()
    for task in spec.tasks:
        res.background.append(asyncio.create_task(_supervised(task, res), name=task.__name__))
    log.info("service started", extra={"service": spec.name})
    return res


async def _supervised(task: Callable[[Resources], Awaitable[None]], res: Resources) -> None:
    """Run a service task; if it fails, log and start it again after a pause."""
    while True:
        try:
            await task(res)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task failed; restarting", extra={"task": task.__name__})
            await asyncio.sleep(5)


async def _stop(res: Resources) -> None:
    for task in res.background:
        task.cancel()
    await asyncio.gather(*res.background, return_exceptions=True)
    if res.consumer is not None:
        await res.consumer.stop()
    if res.relay is not None:
        await res.relay.stop()
    await res.pool.close()


async def _readiness(app: FastAPI, spec: ServiceSpec) -> dict[str, Any]:
    res: Resources | None = getattr(app.state, "resources", None)
    if res is None:
        return {"ready": False, "reason": "starting"}
    checks: dict[str, Any] = {}
    reasons: list[str] = []
    try:
        await asyncio.wait_for(res.pool.fetchval("SELECT 1"), 2.0)
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"unreachable: {type(error).__name__}"
        reasons.append("database unreachable")
    if res.consumer is not None:
        status = res.consumer.status
        stale = time.monotonic() - status.last_poll > POLL_STALENESS_SECONDS
        checks["consumer"] = {
            "partitions": len(status.assigned),
            "lag": status.total_lag,
            "last_error": status.last_error,
        }
        if not spec.consumer_gates_readiness:
            pass
        elif stale or not status.running:
            reasons.append("consumer is not polling the broker")
        elif not status.assigned:
            reasons.append("no partitions assigned yet")
    if res.relay is not None:
        relay = res.relay.status
        checks["relay"] = {
            "leader": relay.leader,
            "connected": relay.connected,
            "pending": relay.pending,
            "epoch": relay.epoch,
            "last_error": relay.last_error,
        }
        if relay.pending > res.settings.outbox_backlog_limit:
            reasons.append(
                f"outbox backlog of {relay.pending} events is over its limit (broker slow or away)"
            )
    # An unreachable broker alone does not make a service unready: events wait in the outbox.
    checks["ready"] = not reasons
    if reasons:
        checks["reason"] = "; ".join(reasons)
    return checks


def serve(spec: ServiceSpec, settings: CommonSettings) -> None:
    """Run the service until SIGINT/SIGTERM; uvicorn then drains requests and the lifespan
    stops the consumer after its batch in flight has committed."""
    logs.configure(spec.name, settings.log_level)
    uvicorn.run(
        create_app(spec, settings),
        host=settings.host,
        port=settings.port or spec.default_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
