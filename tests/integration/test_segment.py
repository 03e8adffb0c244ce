"""Segment/RudderStack collection on a real PostgreSQL and broker: a shop's tracking calls
stored and published as CRM events, retries stored once, unmapped calls answered."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from services.ingest.main import app as ingest_app
from services.ingest.settings import IngestSettings
from shared.events import Topic
from shared.settings import CommonSettings
from tests.helpers import TEST_TOKEN, read_topic, wait_until

pytestmark = pytest.mark.integration

# How Segment's libraries authenticate: the write key (here an API key) as Basic user name.
WRITE_KEY = {"Authorization": "Basic " + base64.b64encode(f"{TEST_TOKEN}:".encode()).decode()}


@pytest.fixture
async def client(settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = ingest_app(IngestSettings(**settings.model_dump()))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=WRITE_KEY
        ) as http:
            yield http


async def stored_events(settings: CommonSettings) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch("SELECT body FROM ingest.events ORDER BY seq")
        return [orjson.loads(r["body"]) for r in rows]
    finally:
        await conn.close()


def a_minute_ago() -> str:
    """As Segment's libraries write it: UTC, milliseconds, Z."""
    return (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def order_completed(when: str) -> dict[str, Any]:
    """A track call as the e-commerce spec's example sends it."""
    return {
        "messageId": "ajs-next-6b2b1c0f",
        "userId": "cust-seg-1",
        "anonymousId": "507f191e810c19729de860ea",
        "event": "Order Completed",
        "timestamp": when,
        "sentAt": when,
        "context": {"library": {"name": "analytics-node", "version": "2.1.0"}},
        "properties": {
            "order_id": "50314b8e9bcf000000000000",
            "affiliation": "Google Store",
            "total": 27.5,
            "revenue": 25.0,
            "shipping": 3,
            "tax": 2,
            "discount": 2.5,
            "currency": "USD",
            "products": [
                {"product_id": "507f1f77bcf86cd799439011", "sku": "45790-32", "price": 19,
                 "quantity": 1, "name": "Monopoly: 3rd Edition", "category": "Games"},
                {"product_id": "505bd76785ebb509fc183733", "sku": "46493-32", "price": 3,
                 "quantity": 2, "name": "Uno Card Game", "category": "Games"},
            ],
        },
    }  # fmt: skip


async def test_order_completed_becomes_a_purchase_and_a_retry_is_a_duplicate(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    when = a_minute_ago()
    call = order_completed(when)
    response = await client.post("/v1/track", json=call)
    assert response.status_code == 200, response.text
    answer = response.json()
    # The first event of the store, on the topic of purchases: its receipt, as /v1/events'.
    assert answer.pop("receipt").startswith("ingest:crm.purchases:")
    assert answer == {"success": True, "accepted": 1, "duplicates": [], "ignored": []}
    # By hand from the mapping table: the total is the amount, the products its lines.
    expected = {
        "specversion": "1.0",
        "id": "ajs-next-6b2b1c0f",
        "source": "segment",
        "type": "crm.purchase.completed",
        "time": when.replace("Z", "000Z"),  # stored to the microsecond
        "subject": "cust-seg-1",
        "datacontenttype": "application/json",
        "data": {
            "order_id": "50314b8e9bcf000000000000",
            "amount": "27.5",
            "currency": "USD",
            "channel": "Google Store",
            "items": [
                {"sku": "45790-32", "name": "Monopoly: 3rd Edition", "category": "Games",
                 "quantity": 1, "unit_price": "19"},
                {"sku": "46493-32", "name": "Uno Card Game", "category": "Games",
                 "quantity": 2, "unit_price": "3"},
            ],
        },
    }  # fmt: skip
    assert await stored_events(settings) == [expected]

    # The library retries (the answer was lost): a later sentAt, the same messageId.
    retry = {**call, "sentAt": a_minute_ago()}
    again = await client.post("/v1/batch", json={"batch": [{**retry, "type": "track"}]})
    assert again.json() | {"receipt": ""} == {
        "receipt": "",
        "success": True,
        "accepted": 0,
        "duplicates": ["ajs-next-6b2b1c0f"],
        "ignored": [],
    }
    assert len(await stored_events(settings)) == 1

    async def published() -> list[Any]:
        return await read_topic(settings.kafka_bootstrap_servers, Topic.PURCHASES)

    records = await wait_until(published, what="the purchase on crm.purchases")
    assert [orjson.loads(r.value) for r in records] == [expected]


async def test_an_unmapped_event_is_answered_as_ignored_and_not_stored(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    viewed = {
        "messageId": "m-viewed",
        "userId": "cust-seg-2",
        "event": "Product Viewed",
        "timestamp": a_minute_ago(),
        "properties": {"product_id": "507f1f77bcf86cd799439011"},
    }
    response = await client.post("/v1/track", json=viewed)
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (0, [])
    [ignored] = body["ignored"]
    assert ignored["index"] == 0
    assert ignored["messageId"] == "m-viewed"
    assert (ignored["type"], ignored["event"]) == ("track", "Product Viewed")
    assert ignored["reason"].startswith("track 'Product Viewed' has no mapping")
    assert "'Order Completed', 'Order Refunded'" in ignored["reason"]
    assert await stored_events(settings) == []


async def test_a_batch_stores_what_maps_and_lists_the_rest(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    when = a_minute_ago()
    batch = [
        {"type": "identify", "messageId": "m-id", "userId": "cust-seg-3", "timestamp": when,
         "traits": {"firstName": "Grace", "lastName": "Hopper", "email": "grace@example.com"}},
        {"type": "page", "messageId": "m-page", "userId": "cust-seg-3", "name": "Checkout"},
        {"type": "track", "messageId": "m-anon", "anonymousId": "a-1", "timestamp": when,
         "event": "Order Completed", "properties": {"order_id": "o-a", "total": 5}},
        {"type": "track", "messageId": "m-refund", "userId": "cust-seg-3", "timestamp": when,
         "event": "Order Refunded", "properties": {"order_id": "o-1", "total": "12.00"}},
    ]  # fmt: skip
    response = await client.post("/v1/batch", json={"batch": batch, "sentAt": when})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(i["index"], i["messageId"], i["type"]) for i in body["ignored"]] == [
        (1, "m-page", "page"),
        (2, "m-anon", "track"),
    ]
    stored = {e["id"]: (e["type"], e["subject"], e["data"]) for e in await stored_events(settings)}
    assert stored == {
        "m-id": (
            "crm.customer.updated",
            "cust-seg-3",
            {"name": "Grace Hopper", "email": "grace@example.com"},
        ),
        "m-refund": (
            "crm.purchase.refunded",
            "cust-seg-3",
            {"order_id": "o-1", "amount": "12.00", "currency": "USD"},
        ),
    }


async def test_an_invalid_message_refuses_the_batch_in_the_messages_terms(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    when = a_minute_ago()
    good = {**order_completed(when), "type": "track"}
    negative = {
        **good,
        "messageId": "m-negative",
        "properties": {"order_id": "o-2", "total": -4, "currency": "USD"},
    }
    response = await client.post("/v1/batch", json={"batch": [good, negative]})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "index": 1,
            "id": "m-negative",
            "field": "properties.total",
            "message": "Input should be greater than or equal to 0",
        }
    ]
    assert await stored_events(settings) == []  # the good one neither: all or nothing


async def test_the_write_key_is_an_api_key_with_events_write(client: httpx.AsyncClient) -> None:
    call = order_completed(a_minute_ago())
    wrong = base64.b64encode(b"crm_7e57000000000000_" + b"x" * 43 + b":").decode()
    refused = await client.post("/v1/track", json=call, headers={"Authorization": f"Basic {wrong}"})
    assert refused.status_code == 401
    bearer = await client.post(
        "/v1/track", json=call, headers={"Authorization": f"Bearer {TEST_TOKEN}"}
    )
    assert bearer.status_code == 200
    no_colon = base64.b64encode(TEST_TOKEN.encode()).decode()  # older senders
    again = await client.post(
        "/v1/track", json=call, headers={"Authorization": f"Basic {no_colon}"}
    )
    assert again.json()["duplicates"] == ["ajs-next-6b2b1c0f"]
    anonymous = httpx.Headers({"Authorization": ""})
    missing = await client.post("/v1/identify", json={}, headers=anonymous)
    assert missing.status_code == 401
    assert "Basic" in missing.headers["www-authenticate"]
