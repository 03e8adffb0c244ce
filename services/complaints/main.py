"""Complaints: workflow, SLA clocks, crisis detection (port 8003)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.complaints.api import router
from services.complaints.store import ComplaintsProjection
from shared.service import ServiceSpec, create_app, serve, validation_context
from shared.settings import CommonSettings

SPEC = ServiceSpec(
    name="complaints",
    schema="complaints",
    default_port=8003,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    projection=lambda settings: ComplaintsProjection(validation_context(settings)),
    description="The complaint workflow and its state per complaint.",
)


def app(settings: CommonSettings | None = None) -> FastAPI:
    return create_app(SPEC, settings or CommonSettings())


def main() -> None:
    serve(SPEC, CommonSettings())
