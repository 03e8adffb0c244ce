"""`make run` prints the SLA calendars in force (zone and hours) from GET /v1/sla/policies."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.complaints.policies import CalendarRule, PolicyBook, PolicyRule
from services.complaints.policy_api import book_view
from services.complaints.sla import Targets
from tooling.devstack import calendar_lines

NOW = datetime(2026, 11, 30, 8, tzinfo=UTC)


def test_the_banner_names_each_calendar_in_force_with_its_zone_and_hours() -> None:
    china = CalendarRule(
        "cn-support",
        "Asia/Shanghai",
        "09:00-12:00,13:00-18:00",
        country="CN",
        working_days=(date(2026, 12, 26),),
    )
    weekend = CalendarRule("weekend-desk", "UTC", "10:00-16:00", (5, 6))
    later = CalendarRule(
        "weekend-desk", "UTC", "10:00-18:00", (5, 6), effective_from=NOW.replace(day=1, month=12)
    )
    policy = PolicyRule("all", "cn-support", Targets.from_hours(1, 2, 8))
    book = PolicyBook((china, weekend, later), (policy,))
    assert calendar_lines(book_view(book, NOW)) == [
        "sla calendar cn-support: Mon-Fri 09:00-12:00,13:00-18:00 Asia/Shanghai "
        "(CN public holidays, 1 make-up working days)",
        "sla calendar weekend-desk: Sat-Sun 10:00-16:00 UTC "
        "(UTC: set SLA_CALENDAR_ZONE or SLA_POLICY_FILE if the team is not)",
        "sla changes scheduled: 1 (GET /v1/sla/policies)",
    ]


def test_the_rules_show_the_coming_closed_and_make_up_days_of_a_calendar_in_force() -> None:
    # China, seen on 15 September 2026: Mid-Autumn on Friday 25 September, National Day
    # 1-7 October (Sunday 4th is a weekend anyway), worked on Sunday 20 September and
    # Saturday 10 October (the State Council's 2026 schedule).
    china = CalendarRule("cn-support", "Asia/Shanghai", country="CN")
    book = PolicyBook((china,), (PolicyRule("all", "cn-support", Targets.from_hours(1, 2, 8)),))
    (shown,) = book_view(book, datetime(2026, 9, 15, 8, tzinfo=UTC))["calendars"]
    days = [date(2026, 9, 25), *(date(2026, 10, d) for d in (1, 2, 3, 5, 6, 7))]
    assert shown["next_90_days"] == {
        "closed": days,
        "working": [date(2026, 9, 20), date(2026, 10, 10)],
    }
