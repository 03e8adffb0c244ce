"""Wiring one service: pool, migrations, consumer runtime, outbox relay, HTTP app, server.

Each service's `main.py` describes itself with a `ServiceSpec`; this module does the rest,
so start-up, readiness and shutdown work the same way everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic

import asyncpg
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from typing_extensions import TypeVar

from shared import db, kafka, logs, metrics, tracing
from shared.auth import FailedAuthentications, KeyRing
from shared.consumer import ConsumerRuntime, ConsumerStatus, Projection
from shared.events import ValidationContext
from shared.freshness import ReadYourWritesMiddleware
from shared.http import (
    NO_STORE,
    EntityTagMiddleware,
    LatencyMiddleware,
    SecurityHeadersMiddleware,
    install_error_handlers,
    operations_router,
)
from shared.outbox import OutboxRelay, RelayStatus
from shared.settings import CommonSettings
from shared.tracing import RequestContextMiddleware

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 50_000
# A consumer that has not polled for this long is not ready (broker unreachable, or stuck).
POLL_STALENESS_SECONDS = 15.0
# Readiness never waits for the database: a background check refreshes a held verdict this
# often, each step (connect, query) bounded by the timeout, and a verdict older than the
# last bound is not trusted (the check itself is stuck).
DATABASE_CHECK_SECONDS = 1.0
DATABASE_CHECK_TIMEOUT = 2.0
DATABASE_VERDICT_MAX_AGE = 10.0

# A service's settings class and caches, which its spec declares and its resources hold
# (a bare `ServiceSpec`: any service's, read through the common settings).
S = TypeVar("S", bound=CommonSettings, default=CommonSettings)
C = TypeVar("C", default=object)
# The same for Resources, covariant, and a bare `Resources` (code for any service: the shared
# tasks and routes) reads the common settings: nothing reassigns `settings` or `caches`.
SettingsT = TypeVar("SettingsT", bound=CommonSettings, covariant=True, default=CommonSettings)
CachesT = TypeVar("CachesT", covariant=True, default=object)


@dataclass(frozen=True)
class ServiceSpec(Generic[S, C]):
    name: str
    schema: str
    default_port: int
    migrations: Path
    routers: Sequence[APIRouter]
    description: str
    # The service's own settings class: create_app builds its resources with settings of it.
    settings_type: type[S]
    # What the service keeps between requests (a small dataclass of its own; None: nothing),
    # made once at start-up from its settings.
    caches: Callable[[S], C]
    projection: Callable[[S], Projection] | None = None
    publishes: bool = False  # has an event log and outbox relay
    # Whether a consumer without partitions makes the service unready. Not for ingest: its
    # consumer only archives, and it must keep taking events while the broker is away.
    consumer_gates_readiness: bool = True
    # Long-running work of the service (schedulers): started after the consumer, cancelled
    # at shutdown. Each gets the running service's resources.
    tasks: Sequence[Callable[[Resources[S, C]], Awaitable[None]]] = ()
    tags: list[dict[str, str]] = field(default_factory=list)
    # Tables the service writes itself rather than folds from topics (job state, fitted
    # models, emitted-event marks): `crm rebuild` carries them over to the rebuilt schema,
    # with the event log and outbox of a service that publishes.
    kept_on_rebuild: tuple[str, ...] = ()
    # Cache-Control of its /v1 answers: `no-store` where they hold personal data; a service
    # of aggregates only may let browsers keep and revalidate them (shared.http.REVALIDATE).
    api_cache_control: str = NO_STORE

    def own_settings(self, settings: CommonSettings | None = None) -> S:
        """`settings` as the service's own class: settings of another class (the common
        ones) keep their values, and the service's other fields are read from the
        environment; None: all from the environment."""
        if settings is None:
            return self.settings_type()
        if isinstance(settings, self.settings_type):
            return settings
        return self.settings_type(**settings.model_dump())

    def migration_directories(self) -> list[Path]:
        """The service's own migrations, the consumer runtime's (every service consumes, at
        least the API keys) and, for a service that publishes, the event log and outbox."""
        directories = [self.migrations, db.CONSUMER_MIGRATIONS]
        if self.publishes:
            directories.append(db.OUTBOX_MIGRATIONS)
        return directories


@dataclass(frozen=True)
class DatabaseVerdict:
    """What the last database check found; readiness answers from it."""

    reachable: bool
    checked_at: float  # time.monotonic() when the check ended
    error: str | None = None  # the type of the failure, never its text (hosts, user names)


@dataclass
class Resources(Generic[SettingsT, CachesT]):
    """What a running service holds: its own settings and caches (typed per service: each
    names its `Resources[XSettings, XCaches]` and the dependency its routes take, in
    services/<name>/resources.py) and the parts every service has."""

    settings: SettingsT
    caches: CachesT
    pool: db.Pool
    keys: KeyRing
    failed_authentications: FailedAuthentications  # per client address (shared.auth.require)
    consumer: ConsumerRuntime | None = None
    # Consumers a service runs beside its main one (complaints' activity consumer), by name:
    # readiness judges each like the main one.
    side_consumers: dict[str, ConsumerRuntime] = field(default_factory=dict)
    relay: OutboxRelay | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)
    # Migrations have just run when this is made: the database answered.
    database: DatabaseVerdict = field(
        default_factory=lambda: DatabaseVerdict(reachable=True, checked_at=time.monotonic())
    )


async def every(seconds: float, task: str, job: Callable[[], Awaitable[object]]) -> None:
    """Run `job` every `seconds` until cancelled, the one loop of the services' scheduled
    work: a failure is logged and tried again next period; each success is recorded in
    crm_task_last_success_timestamp_seconds{task}, which the alert on late jobs reads."""
    while True:
        try:
            await job()
            metrics.TASK_LAST_SUCCESS.labels(task).set_to_current_time()
        except Exception:
            log.exception("scheduled task failed; trying again next period", extra={"task": task})
        await asyncio.sleep(seconds)


def validation_context(settings: CommonSettings) -> ValidationContext:
    return ValidationContext(
        settings.reporting_currency, timedelta(seconds=settings.future_tolerance_seconds)
    )


def no_caches(_settings: CommonSettings) -> None:
    """The caches of a service that keeps nothing between requests."""


async def resources(request: Request) -> Resources:
    """FastAPI dependency: the running service's resources, which create_app built from its
    spec: a service's routes take them typed, `Annotated[Resources[XSettings, XCaches],
    Depends(resources)]` (services/<name>/resources.py). `async` because FastAPI runs a
    plain `def` dependency in its thread pool: a thread hop per request, which was a third of
    a row lookup's CPU (0.72 -> 0.46 ms per RFM lookup, bench/reads_scoring.py --profile)."""
    found: Resources = request.app.state.resources
    return found


def _dump_tasks_on_signal() -> None:
    """SIGUSR1 logs where every task of the service waits (`kill -USR1 <pid>`): for an
    operator facing a service that is up but makes no progress."""
    loop = asyncio.get_running_loop()

    def dump() -> None:
        for task in asyncio.all_tasks(loop):
            frames = io.StringIO()
            task.print_stack(limit=12, file=frames)
            log.warning("task stack", extra={"task": task.get_name(), "stack": frames.getvalue()})

    # Not on every platform, and only from the main thread (tests run apps in threads too).
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGUSR1, dump)


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI operationId: its name (the endpoint function's unless the route
    names itself). FastAPI's default appends the path and method, so moving or renaming a
    path would rename the operation and every generated client method with it."""
    return route.name


def create_app(spec: ServiceSpec[S, C], settings: CommonSettings) -> FastAPI:
    """The service's app, with its own settings (`ServiceSpec.own_settings`) built once, here."""
    own = spec.own_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        res = await _start(spec, own)
        # What start-up made lives as long as the process: out of the collector's way, so a
        # full collection walks only what requests and batches make.
        gc.freeze()
        app.state.resources = res
        _dump_tasks_on_signal()
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
        generate_unique_id_function=operation_id,
    )
    install_error_handlers(app)
    app.add_middleware(EntityTagMiddleware)
    app.add_middleware(ReadYourWritesMiddleware, max_wait_seconds=settings.read_wait_max_seconds)
    # every response, errors included
    app.add_middleware(SecurityHeadersMiddleware, cache_control=spec.api_cache_control)
    app.add_middleware(LatencyMiddleware)
    app.add_middleware(RequestContextMiddleware)  # outermost: request id, trace span
    app.include_router(operations_router(lambda: _readiness(app, spec)))
    for router in spec.routers:
        app.include_router(router)
    return app


async def _start(spec: ServiceSpec[S, C], settings: S) -> Resources[S, C]:
    pool = await db.create_pool(
        settings.database_url,
        spec.schema,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
    )
    await db.migrate(pool, spec.schema, *spec.migration_directories())
    res = Resources(
        settings,
        spec.caches(settings),
        pool,
        KeyRing(pool, settings.admin_key_sha256, settings.api_key_cache_seconds),
        FailedAuthentications(settings),
    )
    await kafka.wait_for_broker(settings)
    if spec.publishes:
        res.relay = OutboxRelay(settings, pool, spec.schema)
        res.relay.start()
    if spec.projection is not None:
        res.consumer = ConsumerRuntime(
            settings, pool, spec.projection(settings), validation_context(settings)
        )
        await res.consumer.start()
    for task in (watch_database, *spec.tasks):
        res.background.append(asyncio.create_task(_supervised(task, res), name=task.__name__))
    log.info("service started", extra={"service": spec.name})
    return res


async def _supervised(
    task: Callable[[Resources[S, C]], Awaitable[None]], res: Resources[S, C]
) -> None:
    """Run a service task; if it fails, log and start it again after a pause."""
    while True:
        try:
            await task(res)
            return
        except (Exception, asyncio.CancelledError) as error:
            if isinstance(error, asyncio.CancelledError) and not kafka.cancelled_from_inside():
                raise  # the service is stopping
            log.exception("background task failed; restarting", extra={"task": task.__name__})
            await asyncio.sleep(5)


async def watch_database(res: Resources) -> None:
    """Refresh `res.database` every DATABASE_CHECK_SECONDS with `SELECT 1` on a connection of
    its own: a pool busy with the service's load is not an unreachable database, and the
    check must not queue behind that load."""
    conn: asyncpg.Connection | None = None
    try:
        while True:
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(
                        res.settings.database_url, timeout=DATABASE_CHECK_TIMEOUT
                    )
                await conn.fetchval("SELECT 1", timeout=DATABASE_CHECK_TIMEOUT)
                _database_verdict(res, DatabaseVerdict(True, time.monotonic()))
            except Exception as error:  # any failure is the verdict; the check goes on
                if conn is not None:
                    conn.terminate()  # a timed-out query leaves it unusable
                    conn = None
                verdict = DatabaseVerdict(False, time.monotonic(), type(error).__name__)
                _database_verdict(res, verdict, error)
            await asyncio.sleep(DATABASE_CHECK_SECONDS)
    finally:
        if conn is not None:
            conn.terminate()


def _database_verdict(
    res: Resources, verdict: DatabaseVerdict, error: Exception | None = None
) -> None:
    """Hold `verdict`; log when reachability changes (the error's text goes to the log only)."""
    if verdict.reachable != res.database.reachable:
        if error is None:
            log.info("database reachable again")
        else:
            log.warning("database unreachable", extra={"error": f"{verdict.error}: {error}"})
    res.database = verdict


async def _stop(res: Resources) -> None:
    for task in res.background:
        task.cancel()
    await asyncio.gather(*res.background, return_exceptions=True)
    if res.consumer is not None:
        await res.consumer.stop()
    if res.relay is not None:
        await res.relay.stop()
    await res.pool.close()


def _readiness(app: FastAPI, spec: ServiceSpec[Any, Any]) -> dict[str, Any]:
    """Readiness from state the service already holds: no database or broker round trip, so
    a probe answers at once however busy the service is."""
    res: Resources | None = getattr(app.state, "resources", None)
    if res is None:
        return {"ready": False, "reason": "starting"}
    reasons: list[str] = []
    checks: dict[str, Any] = {"database": _database_check(res.database, reasons)}
    if res.consumer is not None:
        checks["consumer"] = _consumer_check(
            res.consumer.status, res.settings, spec.consumer_gates_readiness, reasons
        )
    for name, runtime in res.side_consumers.items():
        found: list[str] = []
        checks[f"consumer {name}"] = _consumer_check(runtime.status, res.settings, True, found)
        reasons += [f"{name}: {reason}" for reason in found]
    if res.relay is not None:
        checks["relay"] = _relay_check(res.relay.status, res.settings, reasons)
    # An unreachable broker alone does not make a service unready: events wait in the outbox.
    checks["ready"] = not reasons
    if reasons:
        checks["reason"] = "; ".join(reasons)
    return checks


def _database_check(verdict: DatabaseVerdict, reasons: list[str]) -> str:
    age = time.monotonic() - verdict.checked_at
    if age > DATABASE_VERDICT_MAX_AGE:
        reasons.append(f"database not checked for {age:.0f} s")
        return "unknown"
    if not verdict.reachable:
        reasons.append(f"database unreachable ({verdict.error})")
        return f"unreachable: {verdict.error}"
    return "ok"


def _consumer_check(
    status: ConsumerStatus, settings: CommonSettings, gates: bool, reasons: list[str]
) -> dict[str, Any]:
    """The consumer's part. `gates`: whether its state decides readiness (not for ingest,
    which must keep taking events while the broker is away)."""
    stale = time.monotonic() - status.last_poll > POLL_STALENESS_SECONDS
    failures = status.consecutive_failures
    if not gates:
        pass
    elif failures >= settings.consumer_max_failed_attempts:
        reasons.append(
            f"consumer failed {failures} attempts in a row at the same batch "
            f"({status.last_error}); see the log"
        )
    elif stale or not status.running:
        reasons.append("consumer is not polling the broker")
    elif not status.assigned:
        reasons.append("no partitions assigned yet")
    return {
        "partitions": len(status.assigned),
        "lag": status.total_lag,
        "last_error": status.last_error,  # a type name only
        "consecutive_failures": failures,
    }


def _relay_check(
    status: RelayStatus, settings: CommonSettings, reasons: list[str]
) -> dict[str, Any]:
    if not status.running:
        reasons.append("outbox relay is not running; see the log")
    elif status.pending > settings.outbox_backlog_limit:
        reasons.append(
            f"outbox backlog of {status.pending} events is over its limit (broker slow or away)"
        )
    return {
        "leader": status.leader,
        "connected": status.connected,
        "pending": status.pending,
        "epoch": status.epoch,
        "last_error": _error_type(status.last_error),
    }


def _error_type(described: str | None) -> str | None:
    """The type of an error described as "Type: text": the text can name hosts and users."""
    return None if described is None else described.split(":", 1)[0]


def serve(spec: ServiceSpec[S, C], settings: CommonSettings) -> None:
    """Run the service until SIGINT/SIGTERM; uvicorn then drains requests and the lifespan
    stops the consumer after its batch in flight has committed."""
    logs.configure(spec.name, settings.log_level)
    tracing.configure(spec.name)
    # Every event decoded makes a few dozen short-lived objects: with the default threshold
    # (700) the collector runs every few events and walks the whole young heap. A larger
    # first generation costs a few MB; the runtime alone folded 14.4k instead of 12.4k
    # events/s with it here (`python -m bench.runtime` against `--default-gc`).
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)
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
