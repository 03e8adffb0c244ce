"""What an erasure removes beyond names and contacts (issue 13, item 7): extension
attributes a sender added and an interaction's free-text topic and outcome leave the event
stores; the attribute the contract reads stays, and so do the aggregates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_erasure_currency import database_text
from tests.helpers import api_client, caught_up, event, model_differences, wait_until
from tooling.devstack import SERVICES

pytestmark = [pytest.mark.e2e]

CUSTOMER = "cust-leftovers"
EXTENSION, TOPIC, OUTCOME = "Chen Jie, VIP since 2019", "Chen Jie's loan", "Chen Jie calls back"
# The stores that hold events (redacted in place by an erasure).
EVENT_STORES = ('"ingest"."events"', '"complaints"."events"', '"complaints"."complaint_events"')


def history(at: datetime) -> list[dict[str, Any]]:
    registered = event("crm.customer.registered", CUSTOMER, {"name": "Chen Jie"}, time=at)
    registered |= {"customernote": EXTENSION, "schemaversion": "1"}
    interaction = {"channel": "chat", "direction": "inbound", "topic": TOPIC, "outcome": OUTCOME}
    return [
        registered,
        event("crm.interaction.logged", CUSTOMER, interaction, time=at + timedelta(minutes=1)),
        event(
            "crm.purchase.completed",
            CUSTOMER,
            {"order_id": "o-left", "amount": "30.00", "currency": "USD"},
            time=at + timedelta(minutes=2),
        ),
    ]


async def test_erasure_removes_extension_attributes_and_interaction_free_text(
    stack: Stack,
) -> None:
    at = datetime.now(UTC) - timedelta(hours=1)
    urls = [stack.url(name) for name, _ in SERVICES]
    async with api_client(timeout=10) as client:
        ingest = f"{stack.url('ingest')}/v1/events"
        assert (await client.post(ingest, json=history(at))).status_code == 202
        await wait_until(lambda: caught_up(urls), timeout=60, what="every service caught up")

        erasure = event("crm.customer.erased", CUSTOMER, {"reason": "customer request"})
        assert (await client.post(ingest, json=erasure)).status_code == 202

        async def erased_everywhere() -> bool:
            erasures = [
                await stack.fetch(f"SELECT 1 FROM {name}.erasures WHERE customer_id = $1", CUSTOMER)
                for name in ("ingest", "scoring", "complaints")
            ]
            return all(erasures) and await caught_up(urls)

        await wait_until(erased_everywhere, timeout=60, what="the erasure applied everywhere")

    tables = await database_text(stack)
    for store in EVENT_STORES:
        assert EXTENSION not in tables[store], store
        assert TOPIC not in tables[store], store
        assert OUTCOME not in tables[store], store
    assert TOPIC not in tables['"scoring"."interactions"']  # scoring's own read model too
    async with api_client(timeout=10) as client:
        view = await client.get(f"{stack.url('scoring')}/v1/customers/{CUSTOMER}")
    assert view.status_code == 200
    assert view.json()["latest_interactions"], "the interaction itself stays, its text goes"
    assert TOPIC not in view.text
    registration = await stack.fetch(
        "SELECT body::jsonb AS body FROM ingest.events WHERE type = 'crm.customer.registered'"
    )
    assert '"schemaversion": "1"' in registration[0]["body"]  # the contract reads it: kept
    assert '"redacted": "erasure"' in registration[0]["body"]
    summary = await stack.fetch(
        "SELECT purchase_count, total_spent FROM scoring.purchase_summaries WHERE customer_id = $1",
        CUSTOMER,
    )
    assert [tuple(r) for r in summary] == [(1, 30)]
    # A moment when the models equal the offline fold of the redacted store (the SLA sweeper
    # may be emitting, and the complaints fold applying, an escalation meanwhile).
    await wait_until(
        lambda: _no_differences(stack.database_url), timeout=30, what="models equal to the fold"
    )


async def _no_differences(dsn: str) -> bool:
    return not await model_differences(dsn)
