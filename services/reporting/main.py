"""Reporting: KPI read models, the KPI API and the dashboard (port 8004)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from services.reporting import store
from services.reporting.api import router
from services.reporting.pages import pages
from services.reporting.projection import ReportingProjection
from services.reporting.resources import ReportingResources, reporting_caches
from services.reporting.settings import ReportingSettings
from shared.http import REVALIDATE
from shared.service import ServiceSpec, create_app, every, serve

# How often an instance checks that the customer-base counters count every customer with
# its CHURN_AFTER_DAYS (after migration 006, a rebuild or a change of the setting they
# do not, and reads compute the base from the purchases until they do).
BASE_CHECK_SECONDS = 60.0


async def count_the_base(res: ReportingResources) -> None:
    """Bring the fold's customer-base counters to this instance's CHURN_AFTER_DAYS."""
    window = res.settings.churn_after_days
    await every(BASE_CHECK_SECONDS, "base_counters", lambda: store.converge_base(res.pool, window))


SPEC = ServiceSpec(
    name="reporting",
    schema="reporting",
    default_port=8004,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, pages],
    settings_type=ReportingSettings,
    caches=reporting_caches,
    projection=lambda settings: ReportingProjection(ZoneInfo(settings.timezone)),
    description="KPIs by day, week and month, sliced by tier, segment, "
    "channel and category, folded from the event topics; crisis alerts; the dashboard at /.",
    tags=[
        {"name": "kpis", "description": "Key performance indicators and headline cards."},
        {"name": "alerts", "description": "Crisis alerts folded from crm.derived."},
    ],
    tasks=[count_the_base],
    api_cache_control=REVALIDATE,  # aggregates only: browsers keep and revalidate (ETag)
)


def app(settings: ReportingSettings | None = None) -> FastAPI:
    return create_app(SPEC, settings or ReportingSettings())


def main() -> None:
    serve(SPEC, ReportingSettings())
