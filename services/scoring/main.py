"""Scoring: RFM, tiers, lifetime value and churn risk (port 8002)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.scoring.api import router
from services.scoring.store import ScoringProjection
from shared.service import ServiceSpec, create_app, serve
from shared.settings import CommonSettings

SPEC = ServiceSpec(
    name="scoring",
    schema="scoring",
    default_port=8002,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    projection=lambda _settings: ScoringProjection(),
    description="Per-customer purchase summaries, RFM scores, tiers, lifetime value.",
)


def app(settings: CommonSettings | None = None) -> FastAPI:
    return create_app(SPEC, settings or CommonSettings())


def main() -> None:
    serve(SPEC, CommonSettings())
