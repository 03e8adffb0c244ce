"""SLA policies and calendars as versioned data: which rules a complaint takes (those in force
when it was opened), what a change may not do (422 reasons), seed files, and the clocks that
count on a policy's own calendar. Deadlines are counted by hand in the comments."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from services.complaints.domain import tier_event
from services.complaints.policies import (
    BEGINNING,
    CalendarRule,
    PolicyBook,
    PolicyRule,
    RuleError,
    book_from_dict,
    calendar_rule_from_dict,
    default_book,
    policy_rule_from_dict,
)
from services.complaints.settings import ComplaintsSettings
from services.complaints.sla import (
    UNKNOWN_TIER,
    ClockEvent,
    EventKind,
    Metric,
    Priority,
    SlaConfig,
    Targets,
    Tier,
    clock_views,
    fold_events,
    state_from_json,
    state_to_json,
)

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # Monday 2 March 2026, 00:00 UTC
CHANGE = datetime(2026, 3, 4, tzinfo=UTC)  # Wednesday: a new version takes effect
OFFICE = CalendarRule("office", "UTC", "09:00-12:00,13:00-18:00")  # 8 hours, Mon-Fri
ALWAYS = CalendarRule("always", "UTC", "00:00-24:00", tuple(range(7)))


def hours(value: float) -> timedelta:
    return timedelta(hours=value)


def policy(name: str, calendar: str, resolution: float, **options: object) -> PolicyRule:
    return PolicyRule(name, calendar, Targets.from_hours(1, 2, resolution), **options)  # type: ignore[arg-type]


BOOK = PolicyBook(
    (OFFICE, ALWAYS),
    (
        policy("urgent", "always", 8, priorities=frozenset({Priority.URGENT}), rank=1),
        policy("rest", "office", 16, rank=2),
        policy("rest", "office", 4, rank=2, effective_from=CHANGE),
    ),
)
CONFIG = SlaConfig(rules=BOOK)


def step(kind: EventKind, at: datetime, n: int = 0, **data: object) -> ClockEvent:
    return ClockEvent(f"e{n}-{kind}", kind, at, **data)  # type: ignore[arg-type]


def resolution_due(events: list[ClockEvent], config: SlaConfig = CONFIG) -> datetime | None:
    state = fold_events("c1", events, config)
    return clock_views(state, events[-1].at, config)[Metric.RESOLUTION].due_at


# --------------------------------------------------------------------------- which rules


def test_a_complaint_takes_the_policy_in_force_when_it_was_opened() -> None:
    before = MONDAY + hours(9)  # Monday 09:00: 16 office hours -> Tuesday 18:00
    assert resolution_due([step(EventKind.OPENED, before)]) == MONDAY + timedelta(days=1, hours=18)
    after = CHANGE + hours(9)  # Wednesday 09:00: 4 office hours -> Wednesday 14:00 (lunch)
    assert resolution_due([step(EventKind.OPENED, after)]) == CHANGE + hours(14)


def test_a_running_clock_keeps_its_policy_when_the_change_takes_effect() -> None:
    opened = step(EventKind.OPENED, MONDAY + hours(9))
    later = step(EventKind.CUSTOMER_REPLIED, CHANGE + hours(10), 1)  # after the change
    assert resolution_due([opened, later]) == MONDAY + timedelta(days=1, hours=18)
    # A priority change re-selects among the rules of the opening, not today's.
    changed = step(EventKind.PRIORITY_CHANGED, CHANGE + hours(10), 2, priority=Priority.LOW)
    assert resolution_due([opened, changed]) == MONDAY + timedelta(days=1, hours=18)


def test_a_policy_on_another_calendar_counts_the_rest_on_that_calendar() -> None:
    # Opened Monday 17:00 as medium (office): 17:00-18:00 counts 1 hour by 18:30. Urgent from
    # 18:30 (always open, 8 hours): 7 hours left -> Tuesday 01:30.
    events = [
        step(EventKind.OPENED, MONDAY + hours(17)),
        step(EventKind.PRIORITY_CHANGED, MONDAY + hours(18.5), 1, priority=Priority.URGENT),
    ]
    assert resolution_due(events) == MONDAY + hours(25.5)
    state = fold_events("c1", events, CONFIG)
    clock = state.current(Metric.RESOLUTION)
    assert clock is not None
    assert clock.calendar == ALWAYS.key
    assert [s.elapsed for s in clock.segments[:-1]] == [hours(1)]


def test_the_calendar_key_survives_the_stored_state() -> None:
    state = fold_events("c1", [step(EventKind.OPENED, MONDAY + hours(9))], CONFIG)
    again = state_from_json("c1", state_to_json(state))
    assert [c.calendar for c in again.clocks] == [OFFICE.key, OFFICE.key]
    assert again == state


def test_the_first_rules_cover_instants_before_them() -> None:
    late_seed = PolicyBook(
        (CalendarRule("office", "UTC", effective_from=CHANGE),),
        (policy("rest", "office", 16, effective_from=CHANGE),),
    )
    assert late_seed.at(MONDAY).since == CHANGE


def test_the_built_in_seed_keeps_the_historical_targets() -> None:
    book = default_book(OFFICE)
    targets, calendar = book.choose(Priority.URGENT, Tier.GOLD, MONDAY)
    assert (targets.first_response, targets.resolution, calendar) == (
        hours(0.5),
        hours(4),
        OFFICE.key,
    )
    targets, _ = book.choose(Priority.LOW, UNKNOWN_TIER, MONDAY)
    assert (targets.first_response, targets.next_response, targets.resolution) == (
        hours(8),
        hours(16),
        hours(40),
    )


# --------------------------------------------------------------------------- what is refused


def test_unknown_zone_country_and_subdivision_are_refused_with_their_field() -> None:
    with pytest.raises(RuleError) as zone:
        CalendarRule("x", "Asia/Beijing")  # Beijing's zone is Asia/Shanghai
    assert zone.value.field == "zone"
    with pytest.raises(RuleError) as country:
        CalendarRule("x", "UTC", country="XX")
    assert country.value.field == "country"
    with pytest.raises(RuleError) as subdivision:
        CalendarRule("x", "Europe/Berlin", country="DE", subdivision="XX")
    assert subdivision.value.field == "subdivision"
    with pytest.raises(RuleError) as both:
        CalendarRule("x", "UTC", holidays=(date(2026, 1, 3),), working_days=(date(2026, 1, 3),))
    assert both.value.field == "working_days"


def test_a_calendar_must_name_its_zone() -> None:
    with pytest.raises(RuleError) as error:
        calendar_rule_from_dict({"name": "x", "hours": "09:00-18:00"})
    assert (error.value.field, error.value.reason) == ("zone", "every calendar names its time zone")


def test_changes_must_come_after_the_latest_version_and_not_in_the_past() -> None:
    now = MONDAY
    new_rest = policy("rest", "office", 8, rank=2, effective_from=CHANGE)  # same date as one
    with pytest.raises(RuleError, match="overlaps") as same:
        BOOK.with_policy(new_rest, now, new=False)
    assert same.value.field == "effective_from"
    earlier = policy("rest", "office", 8, rank=2, effective_from=MONDAY + hours(1))
    with pytest.raises(RuleError, match="overlaps"):
        BOOK.with_policy(earlier, now, new=False)
    past = policy("urgent", "always", 2, effective_from=MONDAY - hours(1))
    with pytest.raises(RuleError, match="in the past"):
        BOOK.with_policy(past, now, new=False)
    later = policy("rest", "office", 8, rank=2, effective_from=CHANGE + hours(1))
    assert BOOK.with_policy(later, now, new=False).choose(
        Priority.LOW, Tier.GOLD, CHANGE + hours(1)
    )[0] == Targets.from_hours(1, 2, 8)


def test_a_policy_must_name_a_calendar_that_exists_from_its_date() -> None:
    unknown = policy("vip", "nowhere", 2, tiers=frozenset({Tier.GOLD}), effective_from=CHANGE)
    with pytest.raises(RuleError, match="unknown calendar 'nowhere'") as error:
        BOOK.with_policy(unknown, MONDAY, new=True)
    assert error.value.field == "calendar"


def test_a_change_that_leaves_a_priority_and_tier_without_policy_is_refused() -> None:
    narrowed = policy("rest", "office", 8, rank=2, tiers=frozenset({Tier.GOLD}))
    narrowed = PolicyRule(**{**narrowed.__dict__, "effective_from": CHANGE + hours(1)})
    with pytest.raises(RuleError, match="no policy would match") as error:
        BOOK.with_policy(narrowed, MONDAY, new=False)
    assert error.value.field == "priorities"


def test_creating_an_existing_name_or_changing_an_unknown_one_is_refused() -> None:
    with pytest.raises(RuleError, match="exists"):
        BOOK.with_calendar(CalendarRule("office", "UTC", effective_from=CHANGE), MONDAY, new=True)
    with pytest.raises(RuleError, match="unknown calendar"):
        BOOK.with_calendar(CalendarRule("other", "UTC", effective_from=CHANGE), MONDAY, new=False)


# --------------------------------------------------------------------------- seed files

SEED = {
    "calendars": [
        {
            "name": "cn-support",
            "zone": "Asia/Shanghai",
            "hours": "09:00-12:00,13:00-18:00",
            "country": "CN",
            "working_days": ["2026-12-26"],
        },
        {"name": "emea", "zone": "Europe/Berlin", "hours": "08:00-17:00"},
    ],
    "policies": [
        {
            "name": "gold",
            "calendar": "cn-support",
            "tiers": ["gold"],
            "first_response_hours": 1,
            "next_response_hours": 2,
            "resolution_hours": 8,
        },
        {
            "name": "rest",
            "calendar": "emea",
            "first_response_hours": 4,
            "next_response_hours": 8,
            "resolution_hours": 24,
        },
    ],
}


def test_a_toml_seed_file_gives_its_calendars_and_policies(tmp_path: Path) -> None:
    path = tmp_path / "sla.toml"
    path.write_text(
        """
[[calendars]]
name = "cn-support"
zone = "Asia/Shanghai"
hours = "09:00-12:00,13:00-18:00"
country = "CN"
working_days = [2026-12-26]

[[calendars]]
name = "emea"
zone = "Europe/Berlin"
hours = "08:00-17:00"

[[policies]]
name = "gold"
calendar = "cn-support"
tiers = ["gold"]
first_response_hours = 1
next_response_hours = 2
resolution_hours = 8

[[policies]]
name = "rest"
calendar = "emea"
first_response_hours = 4
next_response_hours = 8
resolution_hours = 24
"""
    )
    book = ComplaintsSettings(sla_policy_file=path).policy_seed()
    assert book == book_from_dict(SEED)
    targets, calendar = book.choose(Priority.HIGH, Tier.GOLD, MONDAY)
    assert (targets.resolution, calendar) == (hours(8), f"cn-support@{BEGINNING.isoformat()}")
    _, calendar = book.choose(Priority.HIGH, UNKNOWN_TIER, MONDAY)
    assert book.calendar(calendar).zone == "Europe/Berlin"
    # In file order: the gold policy (first) wins for gold customers.
    assert [p.name for p in book.at(MONDAY).policies] == ["gold", "rest"]


def test_a_bad_seed_file_stops_the_start_naming_the_entry(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(SEED))
    broken["policies"][1]["calendar"] = "apac"
    path = tmp_path / "sla.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"SLA_POLICY_FILE .*unknown calendar 'apac'"):
        ComplaintsSettings(sla_policy_file=path)
    broken["policies"][1]["calendar"] = "emea"
    broken["calendars"][1]["zone"] = "Mars/Olympus"
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"calendars\[1\]\.zone: unknown IANA time zone"):
        ComplaintsSettings(sla_policy_file=path)


def test_without_a_file_the_seed_is_one_calendar_from_the_settings() -> None:
    settings = ComplaintsSettings(timezone="Asia/Shanghai", sla_working_hours="09:00-18:00")
    (calendar,) = settings.policy_seed().calendars
    assert (calendar.name, calendar.zone, calendar.hours) == (
        "default",
        "Asia/Shanghai",
        "09:00-18:00",
    )


def test_policy_fields_are_checked_by_name() -> None:
    with pytest.raises(RuleError) as error:
        policy_rule_from_dict(
            {
                "name": "x",
                "calendar": "office",
                "priorities": ["critical"],
                "first_response_hours": 1,
                "next_response_hours": 1,
                "resolution_hours": 1,
            }
        )
    assert error.value.field == "priorities"
    with pytest.raises(RuleError) as unknown:
        policy_rule_from_dict({"name": "x", "calender": "office"})
    assert (unknown.value.field, unknown.value.reason) == ("calender", "unknown field")


def test_a_policy_can_select_the_customers_without_a_known_tier() -> None:
    fields = {"calendar": "always", "next_response_hours": 2, "resolution_hours": 2}
    unscored = policy_rule_from_dict(
        {"name": "unscored", "tiers": ["unknown"], "first_response_hours": 1, **fields}
    )
    book = PolicyBook((OFFICE, ALWAYS), (unscored, policy("rest", "office", 16, rank=200)))
    assert unscored.tiers == {UNKNOWN_TIER}
    assert book.choose(Priority.LOW, UNKNOWN_TIER, MONDAY)[0].resolution == hours(2)
    assert book.choose(Priority.LOW, Tier.GOLD, MONDAY)[0].resolution == hours(16)
    # Opened Monday 09:00 with no tier: 2 hours on the always-open calendar -> 11:00. A
    # tier change to gold at 10:00 retargets to rest (16 office hours): 1 hour counted on
    # "always" 09:00-10:00, 15 left on office hours from 10:00: Monday 10:00-18:00 less
    # lunch gives 7, Tuesday's 8 end at 18:00.
    config = SlaConfig(rules=book)
    opened = step(EventKind.OPENED, MONDAY + hours(9))
    assert resolution_due([opened], config) == MONDAY + hours(11)
    gold = step(EventKind.TIER_CHANGED, MONDAY + hours(10), 1, tier="gold")
    assert resolution_due([opened, gold], config) == MONDAY + timedelta(days=1, hours=18)


def test_a_tier_outside_the_vocabulary_is_refused_by_name() -> None:
    fields = {"name": "x", "calendar": "office", "first_response_hours": 1}
    fields |= {"next_response_hours": 1, "resolution_hours": 1}
    with pytest.raises(RuleError) as error:
        policy_rule_from_dict({**fields, "tiers": ["platinum"]})
    assert error.value.field == "tiers"
    assert "'platinum' is not a tier" in error.value.reason
    for name in ("gold", "developing", "potential", "forgotten", "unknown"):
        assert policy_rule_from_dict({**fields, "tiers": [name]}).tiers == {name}


def test_a_tier_change_naming_no_tier_we_know_counts_as_unknown() -> None:
    named = {name: tier_event("t", MONDAY, name).tier for name in ("gold", "unknown", "vip")}
    assert named == {"gold": Tier.GOLD, "unknown": UNKNOWN_TIER, "vip": UNKNOWN_TIER}
