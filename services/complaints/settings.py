"""Complaints' settings (environment variables; defaults documented in the README)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from pydantic import Field, PrivateAttr, model_validator

from services.complaints.business_time import Calendar, Holiday
from services.complaints.crisis import CrisisConfig
from services.complaints.crisis_severity import SeverityConfig
from services.complaints.domain import SkippableStep
from services.complaints.policies import (
    DEFAULT_CALENDAR_NAME,
    CalendarRule,
    PolicyBook,
    RuleError,
    book_from_dict,
    default_book,
)
from services.complaints.sla import SlaConfig
from shared.settings import CommonSettings


@dataclass
class LoadedRules:
    """The SLA rules this service last read from its database (``policy_store.refresh``)
    and that store's revision; None until the first read (the seed stands in)."""

    book: PolicyBook | None = None
    revision: int = -1


class ComplaintsSettings(CommonSettings):
    sla_policy_file: Path | None = Field(
        default=None,
        description="JSON or TOML file (by its extension) of SLA calendars and policies that "
        "seeds an empty policy store. Unset: one calendar 'default' from the SLA_CALENDAR_ZONE, "
        "SLA_WORKING_HOURS, SLA_WORKING_DAYS, SLA_HOLIDAYS and SLA_ALWAYS_OPEN settings, with "
        "the built-in targets. Later changes go through the admin API.",
    )
    sla_policy_refresh_seconds: float = Field(
        default=5,
        ge=0.1,
        description="How often the sweeper and the read API look for policy changes made "
        "by another instance (the consumer reads them in every batch's transaction).",
    )
    sla_calendar_zone: str | None = Field(
        default=None,
        description="IANA zone of the seeded 'default' calendar when no SLA_POLICY_FILE is "
        "given (default: TIMEZONE). `make run` and GET /v1/sla/policies show it.",
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
    crisis_severity_ratios: tuple[float, float] = Field(
        default=(3.0, 6.0), description="Count/baseline from which magnitude is 2, then 3."
    )
    crisis_severity_customers: tuple[int, int] = Field(
        default=(10, 50), description="Distinct customers from which reach is 2, then 3."
    )
    crisis_severity_channels: tuple[int, int] = Field(
        default=(2, 3), description="Distinct channels from which reach is 2, then 3."
    )
    silence_after_complaint_days: int = Field(
        default=30,
        ge=1,
        le=3660,
        description="Days without a purchase or contact after a resolved complaint that make "
        "a churn signal (crm.customer.silent_after_complaint).",
    )
    silence_check_seconds: float = Field(
        default=60, ge=0.1, description="How often silences after complaints are looked for."
    )
    complaint_steps_skippable: list[SkippableStep] = Field(
        default=[],
        description="Handling steps agents may skip (JSON list of listen, thank, apologise, "
        "promise, propose, follow_up); empty: the seven steps in strict order.",
    )

    _rules: LoadedRules = PrivateAttr(default_factory=LoadedRules)

    @model_validator(mode="after")
    def _policy_file_is_valid(self) -> ComplaintsSettings:
        """A bad policy file stops the start, naming what is wrong in it."""
        if self.sla_policy_file is not None:
            self.policy_seed()
        return self

    @property
    def loaded_rules(self) -> LoadedRules:
        return self._rules

    def policy_seed(self) -> PolicyBook:
        """The rules an empty policy store starts with: SLA_POLICY_FILE, else the built-in."""
        path = self.sla_policy_file
        if path is None:
            return default_book(self.default_calendar_rule())
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
            return book_from_dict(data)
        except (OSError, ValueError) as error:
            where = f"{error.field}: {error.reason}" if isinstance(error, RuleError) else error
            raise ValueError(f"SLA_POLICY_FILE {path}: {where}") from None

    def default_calendar_rule(self) -> CalendarRule:
        """The seeded calendar when there is no policy file, from the SLA_* settings."""
        zone = self.sla_calendar_zone or self.timezone
        if self.sla_always_open:
            return CalendarRule(DEFAULT_CALENDAR_NAME, zone, "00:00-24:00", tuple(range(7)))
        return CalendarRule(
            DEFAULT_CALENDAR_NAME,
            zone,
            self.sla_working_hours,
            tuple(self.sla_working_days),
            holidays=tuple(self.sla_holidays),
        )

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
        """The SLA configuration with the rules last read from the database (the seed before
        the first read)."""
        rules = self._rules.book
        if rules is None:
            rules = self._rules.book = self.policy_seed()
            self._rules.revision = -1  # still to be read from the database
        return SlaConfig(
            calendar=self.calendar(),
            rules=rules,
            warn_share=self.sla_warn_share,
            max_escalation_level=self.sla_max_escalation_level,
            max_wait=timedelta(hours=self.sla_max_wait_hours),
        )

    def severity_config(self) -> SeverityConfig:
        return SeverityConfig(
            ratio_steps=self.crisis_severity_ratios,
            customer_steps=self.crisis_severity_customers,
            channel_steps=self.crisis_severity_channels,
        )

    def crisis_config(self) -> CrisisConfig:
        return CrisisConfig(
            zone=self.sla_calendar_zone or self.timezone,
            shift_ratio=self.crisis_shift_ratio,
            decision_interval=self.crisis_decision_interval,
            min_count=self.crisis_min_count,
            cooldown=timedelta(hours=self.crisis_cooldown_hours),
        )
