"""Ingest: the write gateway and event store (port 8001)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.ingest.api import router
from services.ingest.resources import ingest_caches
from services.ingest.segment_api import router as segment_router
from services.ingest.settings import IngestSettings
from services.ingest.store import ArchiveProjection
from shared.service import ServiceSpec, create_app, serve

SPEC = ServiceSpec(
    name="ingest",
    schema="ingest",
    default_port=8001,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, segment_router],
    settings_type=IngestSettings,
    caches=ingest_caches,
    publishes=True,
    projection=lambda _settings: ArchiveProjection(),
    consumer_gates_readiness=False,
    description="Takes CloudEvents over HTTP (and Segment/RudderStack calls), stores them, "
    "and publishes them to Kafka; "
    "archives events other systems publish straight to the topics.",
)


def app(settings: IngestSettings | None = None) -> FastAPI:
    return create_app(SPEC, settings or IngestSettings())


def main() -> None:
    serve(SPEC, IngestSettings())
