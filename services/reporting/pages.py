"""Reporting's web page: the dashboard at /, with its scripts and styles under /static. The
page holds no data: it asks for a key and sends it with every call to /v1. Its configuration
(refresh period, currency, time zone) comes from the settings, in the page's JSON block."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

from services.reporting.settings import ReportingSettings
from shared.http import page_router
from shared.service import resources


def dashboard_config(request: Request) -> dict[str, object]:
    settings = resources(request).settings
    if not isinstance(settings, ReportingSettings):
        # An app built with the common settings: reporting's own come from the environment.
        settings = ReportingSettings(**settings.model_dump())
    return {
        "refresh_seconds": settings.reporting_dashboard_refresh_seconds,
        "currency": settings.reporting_currency,
        # Times on the page are shown in the deployment's zone, not the browser's.
        "timezone": settings.timezone,
    }


pages = page_router(Path(__file__).parent / "static", {"/": "index.html"}, dashboard_config)
