"""The walking skeleton's promises, on real processes, broker and database."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from crm_client import ProblemError, Receipt

from services.scoring.domain import PurchaseSummary, fold
from shared.events import Topic, ValidationContext, validate_event
from tests.e2e.conftest import Stack
from tests.e2e.crm import crm_client, found
from tests.helpers import event, produce_raw, purchase, read_topic, wait_until

pytestmark = pytest.mark.e2e


async def post(stack: Stack, events: list[dict[str, Any]]) -> Receipt:
    """Post a batch with the client; a refusal raises ProblemError."""
    async with crm_client(stack) as crm:
        return await crm.post_events(events)


def outcome(receipt: Receipt) -> tuple[int, list[str]]:
    """Events newly stored and the duplicates; the receipt must name the event store's log."""
    assert receipt.receipt.startswith("ingest:"), receipt
    return receipt.accepted, receipt.duplicates


def stream(customers: int, count: int, seed: int) -> list[dict[str, Any]]:
    """A reproducible purchase stream spread over the last 30 days."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=30)
    return [
        purchase(
            f"cust-{rng.randrange(customers)}",
            f"{rng.randrange(100, 50_000) / 100:.2f}",
            time=start + timedelta(minutes=rng.randrange(30 * 24 * 60)),
        )
        for _ in range(count)
    ]


def expected_scoring(events: list[dict[str, Any]]) -> dict[str, tuple[int, Decimal]]:
    """The read model computed offline by the same pure fold the service uses."""
    by_customer: dict[str, list[Any]] = defaultdict(list)
    for raw in events:
        validated = validate_event(raw, ValidationContext())
        by_customer[validated.subject].append(validated)
    return {
        cid: (s.purchase_count, s.total_spent)
        for cid, evs in by_customer.items()
        for s in [fold(PurchaseSummary(cid), evs)]
    }


async def scoring_rows(stack: Stack) -> dict[str, tuple[int, Decimal]]:
    rows = await stack.fetch(
        "SELECT customer_id, purchase_count, total_spent FROM scoring.purchase_summaries"
    )
    return {r["customer_id"]: (r["purchase_count"], r["total_spent"]) for r in rows}


async def reporting_totals(stack: Stack) -> tuple[int, Decimal]:
    rows = await stack.fetch(
        "SELECT coalesce(sum(orders), 0) o, coalesce(sum(revenue), 0) r FROM reporting.daily_sales"
    )
    return rows[0]["o"], rows[0]["r"]


async def wait_for_model(stack: Stack, events: list[dict[str, Any]]) -> None:
    expected = expected_scoring(events)
    total = sum((t for _, t in expected.values()), Decimal(0))

    async def converged() -> bool:
        return await scoring_rows(stack) == expected and await reporting_totals(stack) == (
            len(events),
            total,
        )

    await wait_until(converged, timeout=90, what="read models equal to the offline fold")


async def test_purchase_and_complaint_are_visible_in_every_service(stack: Stack) -> None:
    now = datetime.now(UTC) - timedelta(minutes=5)
    complaint = event(
        "crm.complaint.opened",
        "cust-7",
        {"complaint_id": "cmp-1", "channel": "hotline", "category": "delivery", "priority": "high"},
        time=now,
    )
    receipt = await post(stack, [purchase("cust-7", "42.50", time=now), complaint])
    assert outcome(receipt) == (2, [])

    async with crm_client(stack, timeout=15) as crm:
        # The receipt makes each read wait until its service has applied the two events.
        seen = receipt.receipt
        rfm = await wait_until(
            lambda: found(crm.get_rfm("cust-7", min_position=seen)),
            what="the purchase in scoring",
        )
        assert rfm.frequency == 1
        assert rfm.monetary == Decimal("42.50")

        opened = await wait_until(
            lambda: found(crm.get_complaint("cmp-1", min_position=seen)),
            what="the complaint in complaints",
        )
        assert (opened.status, opened.customer_id, opened.priority) == ("opened", "cust-7", "high")

        day = now.date()

        async def sold() -> list[Any] | None:
            rows = await crm.get_daily(day, day, min_position=seen)
            return rows if rows[0].orders == 1 else None

        rows = await wait_until(sold, what="the purchase in reporting")
        assert [r.model_dump(mode="json") for r in rows] == [
            {"day": day.isoformat(), "revenue": "42.50", "orders": 1, "buyers": 1}
        ]


async def test_duplicate_delivery_changes_nothing(stack: Stack) -> None:
    original = purchase("cust-dup", "10.00")
    assert outcome(await post(stack, [original])) == (1, [])
    assert outcome(await post(stack, [original])) == (0, [original["id"]])
    # Another system publishing the same event straight to the topic, twice.
    raw = orjson.dumps(original)
    await produce_raw(stack.broker.bootstrap, Topic.PURCHASES, [raw, raw], key=b"cust-dup")
    marker = purchase("cust-dup", "1.00")
    assert outcome(await post(stack, [marker])) == (1, [])
    await wait_for_model(stack, [original, marker])
    stored = await stack.fetch("SELECT count(*) c FROM ingest.events")
    assert stored[0]["c"] == 2


async def test_two_systems_may_use_the_same_id(stack: Stack) -> None:
    """CloudEvents 1.0: identity is (source, id). The web shop and the till both send order
    "1001"; both are stored, both are folded, and each source's own re-send is a duplicate."""
    web = {**purchase("cust-same-id", "10.00", order="W-1001"), "id": "1001", "source": "shop/web"}
    till = {**purchase("cust-same-id", "4.00", order="T-1001"), "id": "1001", "source": "pos/till"}
    assert outcome(await post(stack, [web])) == (1, [])
    assert outcome(await post(stack, [till])) == (1, [])
    assert outcome(await post(stack, [till])) == (0, ["1001"])
    changed = {**till, "data": {**till["data"], "amount": "5.00"}}
    with pytest.raises(ProblemError) as refused:
        await post(stack, [changed])
    assert refused.value.status == 409
    assert [(e.index, e.id, e.field) for e in refused.value.errors] == [(0, "1001", "id")]
    await wait_for_model(stack, [web, till])


async def test_sigkill_mid_stream_ends_with_the_uninterrupted_model(stack: Stack) -> None:
    events = stream(customers=80, count=3000, seed=7)
    for start in range(0, 1500, 250):
        assert outcome(await post(stack, events[start : start + 250])) == (250, [])

    async def applying() -> bool:
        rows = await stack.fetch(
            "SELECT coalesce(sum(purchase_count), 0) n FROM scoring.purchase_summaries"
        )
        return bool(rows[0]["n"] > 0)

    await wait_until(applying, what="scoring to apply part of the stream")
    stack.services["scoring"].kill()
    stack.services["reporting"].kill()
    for start in range(1500, 3000, 250):
        assert outcome(await post(stack, events[start : start + 250])) == (250, [])
    await stack.restart("scoring")
    await stack.restart("reporting")
    await wait_for_model(stack, events)


@pytest.mark.embedded_only
async def test_broker_restart_loses_nothing_and_counts_nothing_twice(stack: Stack) -> None:
    before = stream(customers=30, count=600, seed=11)
    assert outcome(await post(stack, before)) == (600, [])
    await wait_for_model(stack, before)

    stack.broker.restart()  # memory storage: every topic is gone
    after = stream(customers=30, count=400, seed=12)
    assert outcome(await post(stack, after)) == (400, [])
    await wait_for_model(stack, before + after)

    republished = await read_topic(stack.broker.bootstrap, Topic.PURCHASES)
    assert {orjson.loads(r.value)["id"] for r in republished} == {e["id"] for e in before + after}


async def test_malformed_message_is_dead_lettered_and_the_next_is_applied(stack: Stack) -> None:
    good = purchase("cust-m", "5.00")
    garbage = [b"{not json", orjson.dumps({"specversion": "1.0", "type": "crm.nope"})]
    await produce_raw(stack.broker.bootstrap, Topic.PURCHASES, garbage, key=b"cust-m")
    await produce_raw(stack.broker.bootstrap, Topic.PURCHASES, [orjson.dumps(good)], key=b"cust-m")
    await wait_for_model(stack, [good])

    async def dead_letters() -> list[Any]:
        records = await read_topic(stack.broker.bootstrap, Topic.DEADLETTER)
        return records if len(records) >= 2 else []

    # Records published straight to a topic are judged once, by the gateway (ingest's
    # archive); the other consumers fold only what it accepted, so they agree by construction.
    records = await wait_until(dead_letters, what="two dead letters from the gateway")
    assert [dict(r.headers)["crm-consumer"] for r in records] == [b"ingest-archive"] * 2
    assert [r.value for r in records] == garbage
    reasons = [dict(r.headers)["crm-error"].decode() for r in records]
    assert "not JSON" in reasons[0]
    assert "id" in reasons[1]
    assert "subject" in reasons[1]


@pytest.mark.embedded_only
async def test_events_published_straight_to_topics_are_archived_and_survive_broker_loss(
    stack: Stack,
) -> None:
    direct = purchase("cust-direct", "7.00")
    await produce_raw(
        stack.broker.bootstrap, Topic.PURCHASES, [orjson.dumps(direct)], key=b"cust-direct"
    )

    async def archived() -> bool:
        rows = await stack.fetch("SELECT id FROM ingest.events WHERE id = $1", direct["id"])
        return bool(rows)

    await wait_until(archived, what="the direct event in the event store")
    await wait_for_model(stack, [direct])
    # The services fold the gateway's copy, which the relay published with its log position.
    records = await read_topic(stack.broker.bootstrap, Topic.PURCHASES)
    copies = [dict(r.headers).get("crm-log") for r in records]
    assert sorted(copies, key=str) == sorted([None, b"ingest"], key=str)

    stack.broker.restart()  # the topic and the direct event on it are gone
    posted = purchase("cust-direct", "1.00")
    assert outcome(await post(stack, [posted])) == (1, [])

    async def republished() -> bool:
        records = await read_topic(stack.broker.bootstrap, Topic.PURCHASES)
        return {orjson.loads(r.value)["id"] for r in records} == {direct["id"], posted["id"]}

    await wait_until(republished, timeout=60, what="the archived event published again")
    await wait_for_model(stack, [direct, posted])
