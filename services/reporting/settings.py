"""Reporting's settings (environment variables; defaults documented in the README)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class ReportingSettings(CommonSettings):
    reporting_repeat_window_days: int = Field(
        default=7,
        ge=1,
        le=366,
        description="Shortest window of the repeat purchase rate: a period shorter than this"
        " (a day) counts repeat purchases over this many days up to its last day.",
    )
    reporting_crisis_open_hours: float = Field(
        default=24,
        gt=0,
        description="A crisis alert stays open this long after the end of its window.",
    )
    reporting_answer_memo_mb: int = Field(
        default=32,
        ge=0,
        description="Megabytes of KPI answers an instance keeps under the read model's version "
        "and serves again until the fold applies something (0: none kept).",
    )
    reporting_dashboard_refresh_seconds: int = Field(
        default=30, ge=5, description="How often the dashboard reloads its data."
    )
