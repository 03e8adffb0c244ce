"""`crm rebuild` under read and write traffic: every service that folds topics is rebuilt
into a shadow schema and swapped in while clients keep reading and posting. No read fails,
the read models end equal to the offline fold (nothing lost, nothing applied twice), and a
service's own event log (complaints' agent commands) comes through the swap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.settings import CommonSettings
from tests.e2e.conftest import Stack
from tests.e2e.test_pipeline import post, stream, wait_for_model
from tests.helpers import TEST_SIGNING_SECRET, api_client, event, wait_until
from tooling import rebuild

pytestmark = [pytest.mark.e2e]


@contextlib.asynccontextmanager
async def readers(stack: Stack, urls: list[str]) -> AsyncIterator[dict[str, Any]]:
    """Clients reading `urls` in a loop until the block ends; what failed is recorded."""
    seen: dict[str, Any] = {"reads": 0, "failures": []}
    stop = asyncio.Event()

    async def read(client: httpx.AsyncClient, url: str) -> None:
        while not stop.is_set():
            try:
                response = await client.get(url)
                if response.status_code != 200:
                    seen["failures"].append((url, response.status_code, response.text[:200]))
            except httpx.HTTPError as error:
                seen["failures"].append((url, type(error).__name__, str(error)))
            seen["reads"] += 1

    async with api_client(timeout=30) as client:
        tasks = [asyncio.create_task(read(client, url)) for url in urls]
        try:
            yield seen
        finally:
            stop.set()
            await asyncio.gather(*tasks)


async def test_rebuilds_under_traffic_fail_no_read_and_lose_nothing(stack: Stack) -> None:
    events = stream(customers=40, count=3000, seed=7)
    at = datetime.now(UTC) - timedelta(hours=1)
    opened = event(
        "crm.complaint.opened",
        "cust-1",
        {"complaint_id": "cmp-rb", "channel": "hotline", "category": "delivery"},
        time=at,
    )
    for start in range(0, 2000, 500):
        assert (await post(stack, events[start : start + 500])).receipt.startswith("ingest:")
    assert (await post(stack, [opened])).receipt.startswith("ingest:")
    await wait_for_model(stack, events[:2000])
    complaint = f"{stack.url('complaints')}/v1/complaints/cmp-rb"
    async with api_client(timeout=10) as client:
        await wait_until(
            lambda: _status(client, complaint, 200), timeout=60, what="the complaint folded"
        )
        first = await client.post(f"{complaint}/respond", json={"message": "on it"})
        assert first.status_code == 202, first.text
    settings = CommonSettings(
        database_url=stack.database_url,
        kafka_bootstrap_servers=stack.broker.bootstrap,
        topic_partitions=3,
        consumer_session_timeout_ms=6000,
        metadata_max_age_ms=1000,
        key_signing_secret=TEST_SIGNING_SECRET,
    )
    urls = [
        f"{stack.url('scoring')}/v1/customers/{events[0]['subject']}/rfm",
        f"{stack.url('scoring')}/v1/segments",
        f"{stack.url('reporting')}/v1/kpis/summary?period=month",
        complaint,
        f"{stack.url('complaints')}/v1/complaints?limit=10",
    ]
    async with readers(stack, urls) as seen:

        async def keep_posting() -> None:
            for start in range(2000, 3000, 100):
                assert (await post(stack, events[start : start + 100])).receipt.startswith(
                    "ingest:"
                )

        writer = asyncio.create_task(keep_posting())
        for service in rebuild.REBUILDABLE:
            reached = await rebuild.rebuild(service, settings, max_lag=50)
            # complaints reads no purchases: a handful of records (it may swap before any of
            # them: within max_lag, the live consumers apply the rest)
            assert reached.end >= (3 if service == "complaints" else 2000), (service, reached)
            assert reached.end - reached.read <= 50, (service, reached)
        await writer
        async with api_client(timeout=10) as client:
            second = await client.post(f"{complaint}/respond", json={"message": "done"})
            assert second.status_code == 202, second.text  # the moved log takes commands
        await wait_for_model(stack, events)
        reads_before_end = seen["reads"]
    assert seen["failures"] == [], seen["failures"][:5]
    assert reads_before_end > 50

    async with api_client(timeout=10) as client:

        async def both_answers() -> bool:
            body = (await client.get(complaint)).json()
            steps = [h["type"] for h in body.get("history", [])]
            return steps.count("crm.complaint.responded") == 2

        await wait_until(both_answers, timeout=60, what="both agent answers in the rebuilt model")
    logged = await stack.fetch(
        "SELECT count(*) AS n FROM complaints.events WHERE type = 'crm.complaint.responded'"
    )
    assert logged[0]["n"] == 2  # the agent's log came through the swap whole
    schemas = {r["nspname"] for r in await stack.fetch("SELECT nspname FROM pg_namespace")}
    assert {f"{s}_previous" for s in rebuild.REBUILDABLE} <= schemas
    assert not {f"{s}_rebuild" for s in rebuild.REBUILDABLE} & schemas


async def _status(client: httpx.AsyncClient, url: str, status: int) -> bool:
    return (await client.get(url)).status_code == status
