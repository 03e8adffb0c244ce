"""Two instances of scoring and of reporting share the partitions; killing one mid-stream
ends with the read models of a single uninterrupted instance."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_pipeline import post, stream, wait_for_model
from tests.helpers import ServiceProcess, api_client, wait_until
from tooling.embedded import free_port

pytestmark = pytest.mark.e2e


async def test_two_instances_then_one_killed_mid_stream(stack: Stack) -> None:
    twins = {
        name: ServiceProcess(
            name, stack.services[name].env, stack.services[name].log_dir / "twin", free_port()
        ).start()
        for name in ("scoring", "reporting")
    }
    try:
        for twin in twins.values():
            await twin.wait_ready()

        async def shared_partitions() -> bool:
            async with api_client(timeout=5) as client:
                for name, twin in twins.items():
                    first = (await client.get(f"{stack.url(name)}/readyz")).json()
                    second = (await client.get(f"{twin.url}/readyz")).json()
                    if not (first["consumer"]["partitions"] and second["consumer"]["partitions"]):
                        return False
            return True

        await wait_until(shared_partitions, timeout=60, what="both instances owning partitions")
        events = stream(customers=60, count=3000, seed=21)
        for start in range(0, 1500, 250):
            assert (await post(stack, events[start : start + 250])).receipt.startswith("ingest:")
        stack.services["scoring"].kill()
        twins["reporting"].kill()
        for start in range(1500, 3000, 250):
            assert (await post(stack, events[start : start + 250])).receipt.startswith("ingest:")
        await wait_for_model(stack, events)
    finally:
        for twin in twins.values():
            twin.stop()
