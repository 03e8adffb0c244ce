"""Reporting: KPI read models and the dashboard (port 8004)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from services.reporting.api import router
from services.reporting.store import ReportingProjection
from shared.service import ServiceSpec, create_app, serve
from shared.settings import CommonSettings

SPEC = ServiceSpec(
    name="reporting",
    schema="reporting",
    default_port=8004,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    projection=lambda settings: ReportingProjection(ZoneInfo(settings.timezone)),
    description="Daily KPIs folded from the event topics.",
)


def app(settings: CommonSettings | None = None) -> FastAPI:
    return create_app(SPEC, settings or CommonSettings())


def main() -> None:
    serve(SPEC, CommonSettings())
