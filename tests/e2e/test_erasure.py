"""Right to erasure, end to end: personal data leaves every read model and the event store,
the aggregates stay, and a replay after a broker loss does not bring it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from shared.events import Topic
from tests.e2e.conftest import Stack
from tests.helpers import api_client, event, purchase, read_topic, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]

NAME, EMAIL, TEXT = "Li Wei", "li.wei@example.com", "Li Wei, 5 Main Street, was overcharged"


async def views(stack: Stack, client: httpx.AsyncClient) -> tuple[Any, Any]:
    customer = (await client.get(f"{stack.url('scoring')}/v1/customers/cust-erase")).json()
    complaint = (await client.get(f"{stack.url('complaints')}/v1/complaints/cmp-erase")).json()
    return customer, complaint


def personal(value: Any) -> bool:
    text = orjson.dumps(value).decode()
    return NAME in text or EMAIL in text or "Main Street" in text


async def test_erasure_removes_personal_data_everywhere_and_stays_after_replay(
    stack: Stack,
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=10)
    history = [
        event("crm.customer.registered", "cust-erase", {"name": NAME, "email": EMAIL}, time=at),
        event(
            "crm.complaint.opened",
            "cust-erase",
            {
                "complaint_id": "cmp-erase",
                "channel": "email",
                "category": "price_billing",
                "description": TEXT,
            },
            time=at + timedelta(minutes=1),
        ),
        purchase("cust-erase", "10.00", time=at + timedelta(minutes=2)),
    ]
    async with api_client(timeout=10) as client:
        assert (
            await client.post(f"{stack.url('ingest')}/v1/events", json=history)
        ).status_code == 202

        async def known() -> bool:
            customer, complaint = await views(stack, client)
            return customer.get("profile", {}).get("name") == NAME and "history" in complaint

        await wait_until(known, what="the customer's data in scoring and complaints")

        erased = event(
            "crm.customer.erased",
            "cust-erase",
            {"reason": "customer request"},
            time=datetime.now(UTC) - timedelta(seconds=1),
        )
        assert (
            await client.post(f"{stack.url('ingest')}/v1/events", json=erased)
        ).status_code == 202

        async def forgotten() -> Any:
            customer, complaint = await views(stack, client)
            gone = not personal(customer) and not personal(complaint)
            return (customer, complaint) if gone else None

        customer, complaint = await wait_until(forgotten, what="the personal data gone")
        assert customer["profile"] == {}
        assert customer["counts"]["purchases"] == 1  # the aggregates stay
        assert complaint["category"] == "price_billing"

        stored = await stack.fetch("SELECT body FROM ingest.events WHERE subject = 'cust-erase'")
        assert len(stored) == 4
        assert not any(personal(r["body"]) for r in stored)
        assert any('"amount":"10.00"' in r["body"].replace(" ", "") for r in stored)

        stack.broker.restart()  # the store is re-published: redacted, and nothing comes back
        await client.post(f"{stack.url('ingest')}/v1/events", json=purchase("cust-other", "1.00"))

        async def replayed() -> bool:
            records = await read_topic(stack.broker.bootstrap, Topic.CUSTOMERS)
            return len(records) >= 2

        await wait_until(replayed, timeout=60, what="the customers topic re-published")
        records = await read_topic(stack.broker.bootstrap, Topic.CUSTOMERS)
        assert not any(personal(orjson.loads(r.value)) for r in records)
        customer, complaint = await views(stack, client)
        assert not personal(customer)
        assert not personal(complaint)
