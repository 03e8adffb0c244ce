"""Scoring: RFM, tiers, lifetime value and churn risk (port 8002)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from services.scoring import store
from services.scoring.api import router
from services.scoring.pages import pages
from services.scoring.projection import ScoringProjection
from services.scoring.rescore import rescore_periodically
from services.scoring.resources import scoring_caches
from services.scoring.settings import ScoringSettings
from shared.service import ServiceSpec, create_app, serve

SPEC = ServiceSpec(
    name="scoring",
    schema=store.SCHEMA,
    default_port=8002,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, pages],
    settings_type=ScoringSettings,
    caches=scoring_caches,
    projection=lambda settings: ScoringProjection(ZoneInfo(settings.timezone), settings),
    publishes=True,  # derived events: segment, tier and churn-risk changes, tier summaries
    tasks=[rescore_periodically],
    description="The unified customer view; RFM scores and segments, tiers, value classes, "
    "lifecycle stages, MAN lead classes, lifetime value (BG/NBD + Gamma-Gamma) and churn "
    "risk, live and as of any past date.",
    kept_on_rebuild=("clv_models", "score_runs", "customer_scores", "score_history"),
)


def app(settings: ScoringSettings | None = None) -> FastAPI:
    return create_app(SPEC, settings or ScoringSettings())


def main() -> None:
    serve(SPEC, ScoringSettings())
