"""The four services in this process, each served by uvicorn on a thread against one fresh
broker and database: one lifespan (pool, consumer, relay) for every fuzzed request, as in
production, with real HTTP parsing, and much cheaper than a lifespan per example."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from services.complaints.main import app as complaints_app
from services.complaints.settings import ComplaintsSettings
from services.ingest.main import app as ingest_app
from services.ingest.settings import IngestSettings
from services.reporting.main import app as reporting_app
from services.scoring.main import app as scoring_app
from services.scoring.settings import ScoringSettings
from shared.auth import token_sha256
from shared.settings import CommonSettings
from tests.helpers import TEST_TOKEN, api_client, wait_until
from tooling.embedded import Broker, Database, free_port

Factory = Callable[[Any], FastAPI]
SERVICES: dict[str, tuple[Factory, type[CommonSettings]]] = {
    "ingest": (ingest_app, IngestSettings),
    "scoring": (scoring_app, ScoringSettings),
    "complaints": (complaints_app, ComplaintsSettings),
    "reporting": (reporting_app, CommonSettings),
}


@dataclass
class Server:
    """One service's app served by uvicorn on a thread of this process."""

    app: FastAPI
    port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn:{self.port}")
        self.thread.start()
        async with api_client(base_url=self.url, timeout=5) as client:

            async def ready() -> bool:
                assert self.thread is not None
                if not self.thread.is_alive():
                    raise AssertionError(f"{self.app.title} stopped during start-up (see the log)")
                return (await client.get("/readyz")).status_code == 200

            await wait_until(ready, timeout=90, what=f"{self.app.title} ready")

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(60)


@pytest.fixture(scope="package")
async def servers(
    tmp_path_factory: pytest.TempPathFactory, postgres: Database
) -> AsyncIterator[dict[str, Server]]:
    broker = Broker(log_path=tmp_path_factory.mktemp("fuzz") / "broker.log").start()
    common = {
        "kafka_bootstrap_servers": broker.bootstrap,
        "database_url": postgres.create_database("fuzz_api"),
        "topic_partitions": 3,
        "consumer_session_timeout_ms": 6000,
        "metadata_max_age_ms": 1000,
        "admin_key_sha256": token_sha256(TEST_TOKEN),
    }
    running: dict[str, Server] = {}
    try:
        for name, (factory, settings_type) in SERVICES.items():
            running[name] = Server(factory(settings_type(**common)))
            await running[name].start()
        yield running
    finally:
        for server in running.values():
            server.stop()
        broker.stop()
