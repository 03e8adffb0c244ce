"""Complaints' settings (environment variables; defaults documented in the README)."""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import Field

from services.complaints.business_time import Calendar, Holiday
from services.complaints.crisis import CrisisConfig
from services.complaints.sla import SlaConfig
from shared.settings import CommonSettings


class ComplaintsSettings(CommonSettings):
    sla_calendar_zone: str | None = Field(
        default=None, description="IANA zone of the service calendar (default: TIMEZONE)."
    )
    sla_working_hours: str = Field(
        default="09:00-12:00,13:00-18:00", description="Working hours of a working day."
    )
    sla_working_days: list[int] = Field(
        default=[0, 1, 2, 3, 4], description="Working weekdays, 0 = Monday (JSON list)."
    )
    sla_holidays: list[date] = Field(default=[], description="Closed dates (JSON list).")
    sla_always_open: bool = Field(default=False, description="Count every hour (24x7).")
    sla_warn_share: float = Field(default=0.8, gt=0, lt=1, description="Warn at this share.")
    sla_max_escalation_level: int = Field(default=3, ge=0, le=10)
    sla_max_wait_hours: float = Field(
        default=72,
        gt=0,
        le=24 * 366,
        description="Wall-clock hours a complaint may wait on the customer before its paused "
        "SLA clocks resume by themselves.",
    )
    sla_sweep_seconds: float = Field(
        default=5, ge=0.1, description="How often due SLA warnings and breaches are emitted."
    )
    crisis_check_seconds: float = Field(
        default=60, ge=0.1, description="How often closed hours are fed to the detectors."
    )
    crisis_shift_ratio: float = Field(default=3.0, gt=1, description="Rise the CUSUM seeks.")
    crisis_decision_interval: float = Field(default=12.0, gt=0)
    crisis_min_count: int = Field(default=10, ge=0, description="Complaints in an alert window.")
    crisis_cooldown_hours: float = Field(default=24, ge=0)

    def calendar(self) -> Calendar:
        zone = self.sla_calendar_zone or self.timezone
        if self.sla_always_open:
            return Calendar.twenty_four_seven(zone)
        return Calendar.from_hours(
            zone=zone,
            hours=self.sla_working_hours,
            workdays=tuple(self.sla_working_days),
            holidays=tuple(Holiday(day) for day in self.sla_holidays),
        )

    def sla_config(self) -> SlaConfig:
        return SlaConfig(
            calendar=self.calendar(),
            warn_share=self.sla_warn_share,
            max_escalation_level=self.sla_max_escalation_level,
            max_wait=timedelta(hours=self.sla_max_wait_hours),
        )

    def crisis_config(self) -> CrisisConfig:
        return CrisisConfig(
            zone=self.sla_calendar_zone or self.timezone,
            shift_ratio=self.crisis_shift_ratio,
            decision_interval=self.crisis_decision_interval,
            min_count=self.crisis_min_count,
            cooldown=timedelta(hours=self.crisis_cooldown_hours),
        )
