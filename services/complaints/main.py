"""Complaints: the seven-step workflow, SLA clocks in business hours, crisis detection
(port 8003)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.complaints.api import router
from services.complaints.jobs import detect_crises, sweep_sla
from services.complaints.projection import ComplaintsProjection
from services.complaints.settings import ComplaintsSettings
from shared.service import ServiceSpec, create_app, serve
from shared.settings import CommonSettings


def _projection(settings: CommonSettings) -> ComplaintsProjection:
    assert isinstance(settings, ComplaintsSettings)
    return ComplaintsProjection(settings.sla_config())


SPEC = ServiceSpec(
    name="complaints",
    schema="complaints",
    default_port=8003,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    projection=_projection,
    publishes=True,  # agent commands, SLA events and crisis alerts, through its own outbox
    tasks=[sweep_sla, detect_crises],
    description="The complaint workflow (seven handling steps), SLA clocks in business hours "
    "with warnings, breaches and automatic escalation, and crisis detection.",
    settings_type=ComplaintsSettings,
    kept_on_rebuild=("sla_emitted", "crisis_state", "crisis_alerts"),
)


def app(settings: ComplaintsSettings | None = None) -> FastAPI:
    return create_app(SPEC, settings or ComplaintsSettings())


def main() -> None:
    serve(SPEC, ComplaintsSettings())
