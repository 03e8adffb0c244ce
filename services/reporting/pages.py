"""Reporting's web page: the dashboard at /, with its scripts and styles under /static. The
page holds no data: it asks for a key and sends it with every call to /v1. Its configuration
(refresh period, currency, time zone) comes from the settings, in the page's JSON block."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

from services.reporting.resources import ReportingResources
from shared.http import page_router


def dashboard_config(request: Request) -> dict[str, object]:
    # The running service's (shared.service.resources, which is a FastAPI dependency: this
    # is not, so it reads them where create_app put them).
    res: ReportingResources = request.app.state.resources
    settings = res.settings
    return {
        "refresh_seconds": settings.reporting_dashboard_refresh_seconds,
        "currency": settings.reporting_currency,
        # Times on the page are shown in the deployment's zone, not the browser's.
        "timezone": settings.timezone,
    }


pages = page_router(Path(__file__).parent / "static", {"/": "index.html"}, dashboard_config)
