"""Fixtures: a real PostgreSQL (embedded) per session, a fresh database and a fresh Tansu
broker per test. No mocks of either."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.embedded import Broker, Database
from shared.settings import CommonSettings

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database(tmp_path_factory.mktemp("pg") / "data").start()
    yield database
    database.stop()


@pytest.fixture
def database_url(postgres: Database) -> str:
    return postgres.create_database(f"test_{next(_databases)}")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(log_path=tmp_path / "broker.log").start()
    yield running
    running.stop()


@pytest.fixture
def settings(broker: Broker, database_url: str) -> CommonSettings:
    return CommonSettings(
        kafka_bootstrap_servers=broker.bootstrap,
        database_url=database_url,
        topic_partitions=3,
        consumer_session_timeout_ms=6000,
        metadata_max_age_ms=1000,
    )
