"""Complaints: the seven-step workflow, SLA clocks in business hours, crisis detection
(port 8003)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.complaints import crisis_api, policy_api, policy_store, silence_flow
from services.complaints.api import router
from services.complaints.jobs import detect_crises, sweep_sla
from services.complaints.projection import ComplaintsProjection
from services.complaints.settings import ComplaintsSettings
from shared.db import Connection
from shared.events import Event
from shared.service import ServiceSpec, create_app, no_caches, serve


class RulesProjection(ComplaintsProjection):
    """Folds every batch with the SLA rules committed before it, read in the batch's own
    transaction: a complaint opened after a policy change gets the new policy on every
    instance, whatever another instance's copy of the rules."""

    def __init__(self, settings: ComplaintsSettings) -> None:
        super().__init__(settings.sla_config())
        self._settings = settings

    async def store(self, conn: Connection, events: list[Event]) -> None:
        self._config = await policy_store.sla_config(conn, self._settings)
        await super().store(conn, events)


SPEC = ServiceSpec(
    name="complaints",
    schema="complaints",  # policy_store.RULES_TABLE names it too
    default_port=8003,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, policy_api.router, crisis_api.router],
    settings_type=ComplaintsSettings,
    caches=no_caches,
    projection=RulesProjection,
    publishes=True,  # agent commands, SLA events and crisis alerts, through its own outbox
    tasks=[policy_store.keep_rules_fresh, sweep_sla, detect_crises, silence_flow.watch_silence],
    description="The complaint workflow (seven handling steps), SLA clocks in business hours "
    "with warnings, breaches and automatic escalation, and crisis detection.",
    kept_on_rebuild=("sla_emitted", "crisis_state", "crisis_alerts", "sla_rules"),
)


def app(settings: ComplaintsSettings | None = None) -> FastAPI:
    return create_app(SPEC, settings or ComplaintsSettings())


def main() -> None:
    serve(SPEC, ComplaintsSettings())
