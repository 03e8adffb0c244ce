"""Ingest on a real PostgreSQL and broker: all or nothing, duplicates, outbox while down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from services.ingest.main import app as ingest_app
from services.ingest.settings import IngestSettings
from shared.embedded import Broker
from shared.events import Topic
from shared.settings import CommonSettings
from tests.helpers import api_client, purchase, read_topic, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = ingest_app(IngestSettings(**settings.model_dump(), max_body_bytes=64 * 1024))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://ingest") as http:
            yield http


async def stored(settings: CommonSettings, table: str = "events") -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        count: int = await conn.fetchval(f"SELECT count(*) FROM ingest.{table}")
        return count
    finally:
        await conn.close()


async def test_a_bad_batch_is_refused_whole_with_field_errors(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    good = purchase("c-1", "10.00")
    bad_amount = purchase("c-1", "-3")
    bad_subject = purchase("c 2", "1.00")
    response = await client.post("/v1/events", json=[good, bad_amount, bad_subject])
    assert response.status_code == 422
    body: dict[str, Any] = response.json()
    assert body["detail"] == "2 of 3 events are invalid; nothing was stored"
    assert [(e["index"], e["id"], e["field"]) for e in body["errors"]] == [
        (1, bad_amount["id"], "data.amount"),
        (2, bad_subject["id"], "subject"),
    ]
    assert await stored(settings) == 0


async def test_duplicates_are_stored_once_and_conflicts_refused(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    first = purchase("c-1", "10.00")
    assert (await client.post("/v1/events", json=first)).json() == {"accepted": 1, "duplicates": []}
    again = await client.post("/v1/events", json=[first, purchase("c-1", "2.00")])
    assert again.status_code == 202
    assert again.json() == {"accepted": 1, "duplicates": [first["id"]]}

    changed = {**first, "data": {**first["data"], "amount": "11.00"}}
    newcomer = purchase("c-1", "3.00")
    conflict = await client.post("/v1/events", json=[newcomer, changed])
    assert conflict.status_code == 409
    assert conflict.json()["errors"] == [
        {
            "index": 1,
            "id": first["id"],
            "field": "id",
            "message": "already stored with other content",
        }
    ]
    assert await stored(settings) == 2  # the newcomer was rolled back with the batch


async def test_oversized_bodies_and_wrong_media_types(client: httpx.AsyncClient) -> None:
    big = [purchase("c-1", "1.00") for _ in range(400)]
    assert (await client.post("/v1/events", json=big)).status_code == 413
    response = await client.post("/v1/events", content=b"{}", headers={"content-type": "text/csv"})
    assert response.status_code == 415
    assert response.json()["detail"] == "unsupported media type 'text/csv'"


@pytest.mark.embedded_only
async def test_events_wait_in_the_outbox_while_the_broker_is_down(
    client: httpx.AsyncClient, settings: CommonSettings, broker: Broker
) -> None:
    broker.kill()
    events = [purchase(f"c-{i}", "1.00") for i in range(5)]
    response = await client.post("/v1/events", json=events)
    assert response.status_code == 202
    assert await stored(settings, "outbox") == 5

    broker.start()

    async def all_published() -> bool:
        records = await read_topic(settings.kafka_bootstrap_servers, Topic.PURCHASES)
        return len(records) == 5 and await stored(settings, "outbox") == 0

    await wait_until(all_published, timeout=60, what="the outbox to drain into the broker")
    readiness = await client.get("/readyz")
    assert readiness.status_code == 200
    assert readiness.json()["relay"]["pending"] == 0


@pytest.mark.embedded_only
async def test_load_is_shed_while_the_broker_is_away_and_taken_again_after(
    settings: CommonSettings, broker: Broker
) -> None:
    app = ingest_app(IngestSettings(**{**settings.model_dump(), "outbox_backlog_limit": 3}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://ingest") as client:
            broker.kill()
            first = [purchase(f"c-{i}", "1.00") for i in range(4)]
            assert (await client.post("/v1/events", json=first)).status_code == 202

            async def shedding() -> httpx.Response | None:
                response = await client.post("/v1/events", json=purchase("c-9", "1.00"))
                return response if response.status_code == 503 else None

            refused = await wait_until(shedding, timeout=30, what="ingest to shed load")
            assert refused.headers["Retry-After"] == "5"
            assert "wait for the broker" in refused.json()["detail"]
            readiness = await client.get("/readyz")
            assert readiness.status_code == 503
            assert "backlog" in readiness.json()["reason"]
            before = await stored(settings, "outbox")
            again = await client.post("/v1/events", json=purchase("c-10", "1.00"))
            assert again.status_code == 503
            assert await stored(settings, "outbox") == before  # nothing refused is stored

            broker.start()

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await wait_until(ready, timeout=60, what="readiness back once the outbox drained")
            assert (
                await client.post("/v1/events", json=purchase("c-9", "1.00"))
            ).status_code == 202
