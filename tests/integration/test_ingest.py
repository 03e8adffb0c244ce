"""Ingest on a real PostgreSQL and broker: all or nothing, duplicates, outbox while down,
and CloudEvents binary content mode over HTTP and over Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from services.ingest.main import app as ingest_app
from services.ingest.settings import IngestSettings
from shared import db
from shared.consumer import ConsumerRuntime
from shared.db import Connection
from shared.events import Event, PurchaseCompleted, Topic, ValidationContext
from shared.settings import CommonSettings
from tests.helpers import (
    api_client,
    produce_with_headers,
    purchase,
    read_topic,
    wait_until,
    without_receipt,
)
from tooling.embedded import Broker

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
    assert without_receipt(await client.post("/v1/events", json=first)) == {
        "accepted": 1,
        "duplicates": [],
    }
    again = await client.post("/v1/events", json=[first, purchase("c-1", "2.00")])
    assert again.status_code == 202
    assert without_receipt(again) == {"accepted": 1, "duplicates": [first["id"]]}

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


# ---- CloudEvents binary content mode ----------------------------------------------------


def a_minute_ago() -> str:
    """An RFC 3339 time at +01:00 without fractions: the form the store keeps as it is."""
    plus_one = timezone(timedelta(hours=1))
    return (
        (datetime.now(UTC) - timedelta(minutes=1))
        .astimezone(plus_one)
        .replace(microsecond=0)
        .isoformat()
    )


def structured_purchase(event_id: str, subject: str, when: str, amount: str) -> dict[str, Any]:
    """The structured form, written out by hand: the oracle for either binary binding."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "shop/Zürich web",
        "type": "crm.purchase.completed",
        "time": when,
        "subject": subject,
        "datacontenttype": "application/json",
        # As stored: the defaults of the data filled in (no line items).
        "data": {"order_id": f"o-{event_id}", "amount": amount, "currency": "USD", "items": []},
    }


async def stored_body(settings: CommonSettings, event_id: str) -> Any:
    conn = await asyncpg.connect(settings.database_url)
    try:
        body = await conn.fetchval("SELECT body FROM ingest.events WHERE id = $1", event_id)
        return None if body is None else orjson.loads(body)
    finally:
        await conn.close()


async def test_a_binary_mode_post_is_stored_and_published_as_its_structured_form(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    when = a_minute_ago()
    expected = structured_purchase("bin-1", "c-bin", when, "59.90")
    headers = {
        "content-type": "application/json; charset=utf-8",
        "ce-specversion": "1.0",
        "ce-id": "bin-1",
        "ce-source": "shop/Z%C3%BCrich%20web",  # percent-encoded, as the HTTP binding says
        "ce-type": "crm.purchase.completed",
        "ce-time": when,
        "ce-subject": "c-bin",
    }
    body = orjson.dumps(expected["data"])
    response = await client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert without_receipt(response) == {"accepted": 1, "duplicates": []}
    assert await stored_body(settings, "bin-1") == expected

    # The structured form is the same event, byte for byte: a duplicate, stored once (and
    # its datacontenttype may carry parameters too).
    with_charset = {**expected, "datacontenttype": "application/json; charset=utf-8"}
    again = await client.post("/v1/events", json=with_charset)
    assert without_receipt(again) == {"accepted": 0, "duplicates": ["bin-1"]}
    # ... while other data under the same id is a conflict (the comparison is real).
    other = orjson.dumps({**expected["data"], "amount": "59.91"})
    conflict = await client.post("/v1/events", content=other, headers=headers)
    assert conflict.status_code == 409

    async def published() -> list[Any]:
        return await read_topic(settings.kafka_bootstrap_servers, Topic.PURCHASES)

    records = await wait_until(published, what="the event on crm.purchases")
    assert [orjson.loads(r.value) for r in records] == [expected]
    assert await stored(settings) == 1


async def test_a_binary_mode_post_without_an_event_gets_a_clear_answer(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "bin-2", "content-type": "text/plain"}
    refused = await client.post("/v1/events", content=b"59.90", headers=headers)
    assert refused.status_code == 415
    assert "application/json" in refused.json()["detail"]
    missing = await client.post(
        "/v1/events", content=b"{}", headers={**headers, "content-type": "application/json"}
    )
    assert missing.status_code == 422
    fields = {e["field"] for e in missing.json()["errors"]}
    assert {"source", "type", "time", "subject"} <= fields  # the headers it lacks, by name
    assert await stored(settings) == 0


class Purchases:
    """A downstream fold: purchase amounts per customer, from what the relay publishes."""

    name = "purchases-downstream"
    topics: Sequence[str] = (Topic.PURCHASES,)

    async def store(self, conn: Connection, events: list[Event]) -> None:
        rows = [(e.subject, e.data.amount) for e in events if isinstance(e.data, PurchaseCompleted)]
        await conn.executemany(
            "INSERT INTO spent (subject, total) VALUES ($1, $2) ON CONFLICT (subject) "
            "DO UPDATE SET total = spent.total + EXCLUDED.total",
            rows,
        )


async def test_a_binary_mode_record_published_straight_to_a_topic_is_applied(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    """Kafka protocol binding: `ce_` headers, `content-type`, the value is the data. Ingest's
    archive judges and stores it; the relay's copy is what a downstream consumer folds."""
    when = a_minute_ago()
    expected = structured_purchase("kbin-1", "c-kafka", when, "42.50")
    attributes = {k: v for k, v in expected.items() if k not in ("data", "datacontenttype")}
    headers = [(f"ce_{k}", str(v).encode()) for k, v in attributes.items()]
    headers.append(("content-type", b"application/json; charset=UTF-8"))
    bad = [
        (name, b"text/plain") if name == "content-type" else (name, value)
        for name, value in headers
    ]
    pool = await db.create_pool(settings.database_url, "downstream")
    await db.migrate(pool, "downstream", db.CONSUMER_MIGRATIONS)
    await pool.execute("CREATE TABLE spent (subject text PRIMARY KEY, total numeric NOT NULL)")
    runtime = ConsumerRuntime(settings, pool, Purchases(), ValidationContext())
    await runtime.start()
    try:
        for record_headers in (bad, headers):
            await produce_with_headers(
                settings.kafka_bootstrap_servers,
                Topic.PURCHASES,
                orjson.dumps(expected["data"]),
                key=b"c-kafka",
                headers=record_headers,
            )

        async def folded() -> bool:
            rows = await pool.fetch("SELECT subject, total FROM spent")
            return {r["subject"]: r["total"] for r in rows} == {"c-kafka": Decimal("42.50")}

        await wait_until(folded, timeout=60, what="the binary record folded downstream")
    finally:
        await runtime.stop()
        await pool.close()
    assert await stored_body(settings, "kbin-1") == expected
    dead = await read_topic(settings.kafka_bootstrap_servers, Topic.DEADLETTER)
    assert len(dead) == 1  # the text/plain one, with the reason
    assert b"datacontenttype" in dict(dead[0].headers)["crm-error"]
