"""Chaos: a realistic mixed stream through ingest while services are SIGKILLed, the broker
restarts (losing its memory) and PostgreSQL restarts; at the end every read model equals the
one computed offline from the event store by the same pure domain functions.

`make chaos` runs it for CHAOS_SECONDS (default 300); `make test` runs a short form.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.complaints.domain import complaint_id_of, derive
from services.scoring.domain import PurchaseSummary, fold, is_purchase
from shared.devstack import SERVICES
from shared.embedded import Broker, Database, free_port, service_environment
from shared.events import STORED, Event, decode_event
from tests.helpers import ServiceProcess, api_client, event, purchase, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]

SECONDS = float(os.environ.get("CHAOS_SECONDS", "25"))


class World:
    def __init__(self, root: Path) -> None:
        self.broker = Broker(log_path=root / "broker.log").start()
        self.database = Database(root / "pg").start()
        self.dsn = self.database.create_database("chaos")
        env = service_environment(
            self.broker,
            self.dsn,
            TOPIC_PARTITIONS="4",
            CONSUMER_SESSION_TIMEOUT_MS="6000",
            METADATA_MAX_AGE_MS="1000",
            SLA_ALWAYS_OPEN="true",
            SCORING_RESCORE_SECONDS="5",
        )
        self.services = {
            name: ServiceProcess(name, env, root / "logs", free_port()).start()
            for name, _ in SERVICES
        }
        self.faults: list[str] = []

    async def ready(self) -> None:
        await asyncio.gather(*(s.wait_ready(timeout=120) for s in self.services.values()))

    def close(self) -> None:
        for service in self.services.values():
            service.stop()
        self.broker.stop()
        self.database.stop()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    running = World(tmp_path)
    try:
        await running.ready()
        yield running
    finally:
        running.close()


def mixed_stream(seed: int, count: int) -> list[dict[str, Any]]:
    """Purchases, refunds, interactions, surveys and complaint steps over 60 days, their
    times shuffled against the order they are sent in (late and out-of-order events)."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=60)
    events: list[dict[str, Any]] = []
    complaints: list[tuple[str, str, datetime]] = []
    for n in range(count):
        customer = f"cust-{rng.randrange(40)}"
        at = start + timedelta(minutes=rng.randrange(60 * 24 * 59))
        kind = rng.random()
        if kind < 0.5:
            events.append(purchase(customer, f"{rng.randrange(100, 30_000) / 100:.2f}", time=at))
        elif kind < 0.55:
            events.append(
                event(
                    "crm.purchase.refunded",
                    customer,
                    {"order_id": f"r{n}", "amount": "3.00", "currency": "USD"},
                    time=at,
                )
            )
        elif kind < 0.7:
            events.append(
                event(
                    "crm.interaction.logged",
                    customer,
                    {"channel": rng.choice(["chat", "phone"]), "direction": "inbound"},
                    time=at,
                )
            )
        elif kind < 0.8:
            events.append(event("crm.survey.nps", customer, {"score": rng.randrange(11)}, time=at))
        elif kind < 0.9 or not complaints:
            cid = f"cmp-{n}"
            complaints.append((cid, customer, at))
            events.append(
                event(
                    "crm.complaint.opened",
                    customer,
                    {
                        "complaint_id": cid,
                        "channel": "email",
                        "category": rng.choice(["delivery", "price_billing"]),
                        "priority": rng.choice(["low", "high"]),
                    },
                    time=at,
                )
            )
        else:
            cid, owner, opened = rng.choice(complaints)
            step = rng.choice(["responded", "resolved", "waiting", "customer_replied"])
            events.append(
                event(
                    f"crm.complaint.{step}",
                    owner,
                    {"complaint_id": cid},
                    time=min(
                        opened + timedelta(minutes=rng.randrange(1, 3000)),
                        start + timedelta(days=59),
                    ),
                )
            )
    rng.shuffle(events)
    return events


async def send_all(world: World, events: list[dict[str, Any]], rng: random.Random) -> None:
    """Post in batches; on any failure (ingest killed, database restarting) post the same
    batch again: ids make that safe. Some batches are sent twice on purpose."""
    async with api_client(timeout=10) as client:
        for begin in range(0, len(events), 50):
            batch = events[begin : begin + 50]
            last: object = None
            for _attempt in range(600):
                try:
                    url = f"{world.services['ingest'].url}/v1/events"
                    response = await client.post(url, json=batch)
                    if response.status_code == 202:
                        break
                    last = (response.status_code, response.text[:500])
                    assert response.status_code >= 500 or response.status_code == 503, last
                except httpx.HTTPError as error:
                    last = error
                await asyncio.sleep(0.1)  # ingest is down: retry, bounded by the attempts
            else:
                raise AssertionError(f"ingest did not come back: {last!r}")
            if rng.random() < 0.1:  # a client that retries a success: duplicates
                await client.post(f"{world.services['ingest'].url}/v1/events", json=batch)
            await asyncio.sleep(0.02)


async def inflict(world: World, until: float, rng: random.Random) -> None:
    """Faults in rotation (so every kind happens in a short run), the victim at random."""
    loop = asyncio.get_running_loop()
    kinds = ["kill", "broker", "kill", "postgres"]
    while loop.time() < until:
        await asyncio.sleep(rng.uniform(1.5, 3.5))
        fault = kinds[len(world.faults) % len(kinds)]
        if fault == "kill":
            name = rng.choice(list(world.services))
            world.services[name].kill()
            world.faults.append(f"SIGKILL {name}")
            world.services[name].start()
        elif fault == "broker":
            world.broker.restart()
            world.faults.append("broker restart (memory lost)")
        else:
            await asyncio.to_thread(world.database.restart)
            world.faults.append("PostgreSQL restart")


async def stored_events(dsn: str) -> list[Event]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT body FROM ingest.events UNION ALL "
            "SELECT body FROM complaints.events "
            "WHERE type = 'crm.complaint.escalated_auto'"
        )
    finally:
        await conn.close()
    return [decode_event(r["body"].encode(), STORED) for r in rows]


def expected_models(events: list[Event]) -> dict[str, dict[str, Any]]:
    by_customer: dict[str, list[Event]] = defaultdict(list)
    by_complaint: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if is_purchase(e):
            by_customer[e.subject].append(e)
        if (cid := complaint_id_of(e)) is not None:
            by_complaint[cid].append(e)
    scoring = {}
    for cid, evs in by_customer.items():
        s = fold(PurchaseSummary(cid), evs)
        if s.purchase_count or s.total_spent:
            scoring[cid] = (s.purchase_count, s.total_spent)
    complaints = {}
    for cid, evs in by_complaint.items():
        if any(e.type == "crm.complaint.opened" for e in evs):
            c = derive(cid, evs[0].subject, evs)
            complaints[cid] = (c.status, c.first_response_at, c.resolved_at, c.priority)
    return {"scoring": scoring, "complaints": complaints}


async def actual_models(dsn: str) -> dict[str, dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        scoring = {
            r[0]: (r[1], r[2])
            for r in await conn.fetch(
                "SELECT customer_id, purchase_count, total_spent FROM scoring.purchase_summaries"
            )
        }
        complaints = {
            r[0]: (r[1], r[2], r[3], r[4])
            for r in await conn.fetch(
                "SELECT complaint_id, status, first_response_at, resolved_at, priority "
                "FROM complaints.complaints WHERE opened_at IS NOT NULL"
            )
        }
        return {"scoring": scoring, "complaints": complaints}
    finally:
        await conn.close()


def differences(
    expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]
) -> list[str]:
    found = []
    for model, rows in expected.items():
        for key in sorted(set(rows) | set(actual[model])):
            if rows.get(key) != actual[model].get(key):
                found.append(
                    f"{model} {key}: expected {rows.get(key)}, got {actual[model].get(key)}"
                )
    return found


async def test_nothing_lost_or_counted_twice_under_faults(world: World) -> None:
    rng = random.Random(2026)
    events = mixed_stream(seed=7, count=max(600, int(SECONDS * 40)))
    loop = asyncio.get_running_loop()
    await asyncio.gather(send_all(world, events, rng), inflict(world, loop.time() + SECONDS, rng))
    await world.ready()

    stored = await stored_events(world.dsn)
    posted_ids = {e["id"] for e in events}
    assert {e.id for e in stored} >= posted_ids  # every accepted event is in the store once

    async def settled() -> bool:
        expected = expected_models(await stored_events(world.dsn))
        return not differences(expected, await actual_models(world.dsn))

    try:
        await wait_until(settled, timeout=180, what="read models equal to the offline fold")
    except AssertionError:
        diff = differences(
            expected_models(await stored_events(world.dsn)), await actual_models(world.dsn)
        )
        pytest.fail(
            f"{len(diff)} differences after faults {world.faults}:\n" + "\n".join(diff[:30])
        )
    print(f"\nchaos: {len(events)} events, faults: {world.faults}")
    assert world.faults  # the run did inflict faults
