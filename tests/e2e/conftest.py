"""The four services as processes on the real broker and PostgreSQL, as `make run` runs them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import ServiceProcess
from tooling.devstack import SERVICES
from tooling.embedded import Broker, free_port, service_environment


@dataclass
class Stack:
    broker: Broker
    database_url: str
    services: dict[str, ServiceProcess]

    def url(self, name: str) -> str:
        return self.services[name].url

    async def restart(self, name: str) -> None:
        self.services[name].start()
        await self.services[name].wait_ready()

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Extra environment of the services; a test module overrides it to tune them."""
    return {}


@pytest.fixture
async def stack(
    broker: Broker, database_url: str, tmp_path: Path, stack_env: dict[str, str]
) -> AsyncIterator[Stack]:
    tuned = {
        "TOPIC_PARTITIONS": "3",
        "CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "METADATA_MAX_AGE_MS": "1000",
        "LOG_LEVEL": "INFO",
        **stack_env,
    }
    env = service_environment(broker, database_url, **tuned)
    services = {
        name: ServiceProcess(name, env, tmp_path, free_port()).start() for name, _ in SERVICES
    }
    running = Stack(broker, database_url, services)
    try:
        await asyncio.gather(*(s.wait_ready() for s in services.values()))
        yield running
    finally:
        for service in services.values():
            service.stop()
