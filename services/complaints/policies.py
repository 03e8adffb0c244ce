"""SLA policies and calendars as data, versioned by effective date. Pure: no I/O.

A *calendar rule* names a calendar (per team or region) and says what it is: an explicit
IANA zone, the working hours of a working day, the working weekdays, public holidays from a
country code (the ``holidays`` library, with its make-up working days), explicit closed dates
and explicit make-up working days (调休: a Saturday that is a working day).

A *policy rule* gives the targets (first response, next response, resolution, in business
hours of its calendar) of the complaints it matches (priorities x tiers; empty: all) and
names its calendar. The first matching policy by ``rank`` (then name) wins.

Both are versioned: a change is a new version of a name with an ``effective_from``. What is
in force at an instant is, for every name, its latest version effective by then. A complaint
takes the rules in force when it was *opened*, for all its clocks and its whole life (a
priority or tier change re-selects among those rules), so a change applies to complaints
opened after its effective date and a running clock keeps the policy and calendar it started
with. Versions are append-only and a change takes effect now or later, never in the past, so
re-deriving a complaint from its history always finds the same rules.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from itertools import product
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_data

from services.complaints.business_time import (
    DEFAULT_HOURS,
    DEFAULT_WORKDAYS,
    Calendar,
    Holiday,
    parse_shifts,
)
from services.complaints.sla import (
    DEFAULT_TARGET_HOURS,
    TIERS_OR_UNKNOWN,
    Metric,
    Priority,
    Targets,
    Tier,
    TierOrUnknown,
    tier_or_unknown,
)

# Rules seeded without a date are in force from here on (before any complaint).
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
# Public holidays are looked up for these years (complaints outside them see no holidays).
HOLIDAY_YEARS = range(2000, 2101)
DEFAULT_CALENDAR_NAME = "default"


class RuleError(ValueError):
    """A rule or change that cannot be accepted: ``field`` names the input, ``reason`` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _check_date(field: str, moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RuleError(field, "needs a time zone offset")
    return moment.astimezone(UTC)


# --------------------------------------------------------------------------- calendars


@dataclass(frozen=True)
class CalendarRule:
    """One version of a named calendar. ``zone`` is required: 09:00-18:00 means nothing
    without it. Explicit dates beat the library: an explicit make-up working day opens a
    library holiday, an explicit holiday closes a library make-up day."""

    name: str
    zone: str
    hours: str = DEFAULT_HOURS
    workdays: tuple[int, ...] = DEFAULT_WORKDAYS
    country: str | None = None
    subdivision: str | None = None
    holidays: tuple[date, ...] = ()
    working_days: tuple[date, ...] = ()
    effective_from: datetime = BEGINNING

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "effective_from", _check_date("effective_from", self.effective_from)
        )
        object.__setattr__(self, "workdays", tuple(sorted(set(self.workdays))))
        object.__setattr__(self, "holidays", tuple(sorted(set(self.holidays))))
        object.__setattr__(self, "working_days", tuple(sorted(set(self.working_days))))
        self._check()

    def _check(self) -> None:
        if not self.name.strip():
            raise RuleError("name", "must not be empty")
        try:
            ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise RuleError("zone", f"unknown IANA time zone '{self.zone}'") from None
        try:
            shifts = parse_shifts(self.hours)
        except ValueError as error:
            raise RuleError("hours", str(error)) from None
        if not shifts:
            raise RuleError("hours", "a working day needs working hours")
        if not set(self.workdays) <= set(range(7)):
            raise RuleError("workdays", "weekdays are 0 (Monday) to 6 (Sunday)")
        if not self.workdays:
            raise RuleError("workdays", "a calendar needs at least one working weekday")
        both = sorted(set(self.holidays) & set(self.working_days))
        if both:
            raise RuleError("working_days", f"{both[0]} is also listed as a holiday")
        if self.country is not None:
            self._library_dates()  # raises for an unknown country or subdivision
        elif self.subdivision is not None:
            raise RuleError("subdivision", "needs a country")

    @property
    def key(self) -> str:
        """Identifies this version for good: a clock stores it."""
        return f"{self.name}@{self.effective_from.isoformat()}"

    def _library_dates(self) -> tuple[frozenset[date], frozenset[date]]:
        """(public holidays, make-up working days) of the country, from the library."""
        return _library_dates(self.country or "", self.subdivision)

    def closed_and_opened(self) -> tuple[frozenset[date], frozenset[date]]:
        """(closed dates, make-up working dates): the library's, then the explicit ones."""
        closed, opened = self._library_dates() if self.country else (frozenset(), frozenset())
        closed = (closed - set(self.working_days)) | set(self.holidays)
        opened = (opened - set(self.holidays)) | set(self.working_days)
        return closed, opened

    def calendar(self) -> Calendar:
        shifts = parse_shifts(self.hours)
        closed, opened = self.closed_and_opened()
        overrides = [Holiday(day) for day in closed] + [Holiday(day, shifts) for day in opened]
        overrides.sort(key=lambda holiday: holiday.day)
        return Calendar.from_hours(self.zone, shifts, self.workdays, overrides)


_LIBRARY_CACHE: dict[tuple[str, str | None], tuple[frozenset[date], frozenset[date]]] = {}


def _library_dates(
    country: str, subdivision: str | None
) -> tuple[frozenset[date], frozenset[date]]:
    """Pure in effect: the installed library's data for a country never changes while the
    process runs, so it is looked up once per country and subdivision."""
    cached = _LIBRARY_CACHE.get((country, subdivision))
    if cached is not None:
        return cached
    try:
        found = holiday_data.country_holidays(country, subdiv=subdivision, years=HOLIDAY_YEARS)
    except NotImplementedError:
        if subdivision is not None and country in holiday_data.list_supported_countries():
            reason = f"unknown subdivision '{subdivision}' of {country}"
            raise RuleError("subdivision", reason) from None
        raise RuleError("country", f"unknown country code '{country}'") from None
    working = frozenset(getattr(found, "weekend_workdays", ()))
    cached = (frozenset(found) - working, working)
    _LIBRARY_CACHE[(country, subdivision)] = cached
    return cached


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class PolicyRule:
    """One version of a named policy. Targets are business hours of ``calendar``."""

    name: str
    calendar: str
    targets: Targets
    priorities: frozenset[Priority] = frozenset()
    tiers: frozenset[TierOrUnknown] = frozenset()
    rank: int = 100
    effective_from: datetime = BEGINNING

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "effective_from", _check_date("effective_from", self.effective_from)
        )
        object.__setattr__(self, "priorities", frozenset(map(Priority, self.priorities)))
        object.__setattr__(self, "tiers", frozenset(map(tier_or_unknown, self.tiers)))
        if not self.name.strip():
            raise RuleError("name", "must not be empty")

    @property
    def key(self) -> str:
        return f"{self.name}@{self.effective_from.isoformat()}"

    def matches(self, priority: Priority, tier: TierOrUnknown) -> bool:
        return (not self.priorities or priority in self.priorities) and (
            not self.tiers or tier in self.tiers
        )


def targets_from_hours(first: float, following: float, resolution: float) -> Targets:
    try:
        return Targets.from_hours(first, following, resolution)
    except ValueError:
        raise RuleError("targets", "every target must be a positive number of hours") from None


# --------------------------------------------------------------------------- what is in force


@dataclass(frozen=True)
class Ruleset:
    """The rules in force at one instant: the latest version of every name."""

    since: datetime
    calendars: Mapping[str, CalendarRule]
    policies: tuple[PolicyRule, ...]  # in matching order: rank, then name

    def choose(self, priority: Priority, tier: TierOrUnknown) -> tuple[PolicyRule, CalendarRule]:
        for policy in self.policies:
            if policy.matches(priority, tier):
                return policy, self.calendars[policy.calendar]
        raise LookupError(f"no SLA policy matches priority={priority} tier={tier}")


_Rule = TypeVar("_Rule", CalendarRule, PolicyRule)


def _latest(rules: Iterable[_Rule], at: datetime) -> dict[str, _Rule]:
    latest: dict[str, _Rule] = {}
    for rule in sorted(rules, key=lambda r: r.effective_from):
        if rule.effective_from <= at:
            latest[rule.name] = rule
    return latest


@dataclass(frozen=True)
class PolicyBook:
    """Every version of every calendar and policy. Construction checks that at every instant
    each policy's calendar exists and every priority x tier has a policy."""

    calendars: tuple[CalendarRule, ...]
    policies: tuple[PolicyRule, ...]
    _built: dict[str, Calendar] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for kind, rules in (("calendar", self.calendars), ("policy", self.policies)):
            keys = [rule.key for rule in rules]
            if len(set(keys)) != len(keys):
                raise RuleError("effective_from", f"two versions of a {kind} share a date")
        for ruleset in self.rulesets:
            self._check_ruleset(ruleset)

    @staticmethod
    def _check_ruleset(ruleset: Ruleset) -> None:
        for policy in ruleset.policies:
            if policy.calendar not in ruleset.calendars:
                raise RuleError(
                    "calendar",
                    f"unknown calendar '{policy.calendar}' (policy '{policy.name}', from "
                    f"{ruleset.since.isoformat()})",
                )
        for priority, tier in product(Priority, TIERS_OR_UNKNOWN):
            if not any(policy.matches(priority, tier) for policy in ruleset.policies):
                raise RuleError(
                    "priorities",
                    f"no policy would match priority={priority} tier={tier} from "
                    f"{ruleset.since.isoformat()}",
                )

    @cached_property
    def epochs(self) -> tuple[datetime, ...]:
        """The instants at which what is in force changes, in order."""
        dates = {rule.effective_from for rule in self.calendars}
        dates |= {rule.effective_from for rule in self.policies}
        return tuple(sorted(dates))

    @cached_property
    def rulesets(self) -> tuple[Ruleset, ...]:
        return tuple(self._ruleset_at(epoch) for epoch in self.epochs)

    def _ruleset_at(self, at: datetime) -> Ruleset:
        calendars = _latest(self.calendars, at)
        policies = _latest(self.policies, at).values()
        ordered = sorted(policies, key=lambda p: (p.rank, p.name))
        return Ruleset(at, calendars, tuple(ordered))

    def at(self, moment: datetime) -> Ruleset:
        """The rules in force at ``moment`` (before the first version: the first ones)."""
        if not self.epochs:
            raise LookupError("no SLA rules")
        index = max(bisect_right(self.epochs, moment.astimezone(UTC)) - 1, 0)
        return self.rulesets[index]

    @cached_property
    def _choices(self) -> tuple[dict[tuple[Priority, TierOrUnknown], tuple[Targets, str]], ...]:
        """Per epoch, every priority x tier resolved once: the fold asks at every clock start."""
        found = []
        for ruleset in self.rulesets:
            pairs = {}
            for priority, tier in product(Priority, TIERS_OR_UNKNOWN):
                policy, calendar = ruleset.choose(priority, tier)
                pairs[(priority, tier)] = (policy.targets, calendar.key)
            found.append(pairs)
        return tuple(found)

    def choose(
        self, priority: Priority, tier: TierOrUnknown, opened_at: datetime
    ) -> tuple[Targets, str]:
        """Targets and calendar key for a complaint opened at ``opened_at``."""
        index = max(bisect_right(self.epochs, opened_at) - 1, 0)
        return self._choices[index][(priority, tier)]

    @cached_property
    def _by_key(self) -> dict[str, CalendarRule]:
        return {rule.key: rule for rule in self.calendars}

    def calendar(self, key: str) -> Calendar:
        """The calendar of a version key; LookupError if this book does not know it (a book
        older than the clock's)."""
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = self._by_key[key].calendar()
        return built

    # ---- changes

    def with_calendar(self, rule: CalendarRule, now: datetime, *, new: bool) -> PolicyBook:
        """The book with a new calendar (``new``) or a new version of one."""
        _check_change(self.calendars, rule, now, new=new, kind="calendar")
        return PolicyBook((*self.calendars, rule), self.policies)

    def with_policy(self, rule: PolicyRule, now: datetime, *, new: bool) -> PolicyBook:
        _check_change(self.policies, rule, now, new=new, kind="policy")
        return PolicyBook(self.calendars, (*self.policies, rule))


def _check_change(
    existing: Iterable[CalendarRule | PolicyRule],
    rule: CalendarRule | PolicyRule,
    now: datetime,
    *,
    new: bool,
    kind: str,
) -> None:
    versions = sorted(r.effective_from for r in existing if r.name == rule.name)
    if new and versions:
        raise RuleError("name", f"a {kind} named '{rule.name}' exists; change it instead")
    if not new and not versions:
        raise RuleError("name", f"unknown {kind} '{rule.name}'")
    if rule.effective_from < now:
        raise RuleError(
            "effective_from",
            "is in the past: complaints already opened keep the rules they started with",
        )
    if versions and rule.effective_from <= versions[-1]:
        raise RuleError(
            "effective_from",
            f"overlaps the version effective from {versions[-1].isoformat()}: a change must "
            "take effect after the latest one",
        )


# --------------------------------------------------------------------------- seeds


def default_book(calendar: CalendarRule) -> PolicyBook:
    """The built-in seed: the historical targets, gold policies first, on one calendar."""
    gold = [
        PolicyRule(
            f"gold-{priority}",
            calendar.name,
            Targets.from_hours(*hours["gold"]),
            frozenset({priority}),
            frozenset({Tier.GOLD}),
            rank=10,
        )
        for priority, hours in DEFAULT_TARGET_HOURS.items()
    ]
    standard = [
        PolicyRule(
            f"standard-{priority}",
            calendar.name,
            Targets.from_hours(*hours["standard"]),
            frozenset({priority}),
            rank=20,
        )
        for priority, hours in DEFAULT_TARGET_HOURS.items()
    ]
    return PolicyBook((calendar,), (*gold, *standard))


def calendar_rule_from_dict(data: Mapping[str, object], field_prefix: str = "") -> CalendarRule:
    """A calendar rule from the seed file or a request body (already plain values)."""
    known = {"name", "zone", "hours", "workdays", "country", "subdivision", "holidays"}
    known |= {"working_days", "effective_from"}
    _refuse_unknown(data, known, field_prefix)
    if "zone" not in data:
        raise RuleError(field_prefix + "zone", "every calendar names its time zone")
    values = dict(data)
    for name in ("holidays", "working_days"):
        values[name] = tuple(_dates(values.get(name, ()), field_prefix + name))
    if "workdays" in values:
        values["workdays"] = tuple(_ints(values["workdays"], field_prefix + "workdays"))
    if "effective_from" in values:
        values["effective_from"] = _instant(values["effective_from"], field_prefix)
    try:
        return CalendarRule(**values)  # type: ignore[arg-type]
    except RuleError as error:
        raise RuleError(field_prefix + error.field, error.reason) from None
    except TypeError as error:
        raise RuleError(field_prefix.rstrip(".") or "calendar", str(error)) from None


POLICY_FIELDS = {"name", "calendar", "priorities", "tiers", "rank", "effective_from"}
TARGET_FIELDS = {f"{metric}_hours": metric for metric in Metric}


def policy_rule_from_dict(
    data: Mapping[str, object], field_prefix: str = "", default_rank: int = 100
) -> PolicyRule:
    _refuse_unknown(data, POLICY_FIELDS | set(TARGET_FIELDS), field_prefix)
    for name in ("name", "calendar", *TARGET_FIELDS):
        if name not in data:
            raise RuleError(field_prefix + name, "is required")
    hours = [data[name] for name in TARGET_FIELDS]
    if not all(isinstance(h, int | float) and not isinstance(h, bool) for h in hours):
        raise RuleError(field_prefix + "targets", "hours must be numbers")
    try:
        targets = Targets.from_hours(*(float(h) for h in hours))  # type: ignore[arg-type]
        priorities = frozenset(Priority(p) for p in _strings(data.get("priorities", ())))
    except ValueError as error:
        field = "priorities" if "Priority" in str(error) else "targets"
        raise RuleError(field_prefix + field, str(error)) from None
    try:
        tiers = frozenset(tier_or_unknown(t) for t in _strings(data.get("tiers", ())))
    except ValueError as error:
        raise RuleError(field_prefix + "tiers", str(error)) from None
    rank = data.get("rank", default_rank)
    if not isinstance(rank, int) or isinstance(rank, bool):
        raise RuleError(field_prefix + "rank", "must be an integer")
    effective = data.get("effective_from")
    return PolicyRule(
        name=str(data["name"]),
        calendar=str(data["calendar"]),
        targets=targets,
        priorities=priorities,
        tiers=tiers,
        rank=rank,
        effective_from=BEGINNING if effective is None else _instant(effective, field_prefix),
    )


def book_from_dict(data: Mapping[str, object]) -> PolicyBook:
    """The seed file's content: ``calendars`` and ``policies`` lists (policies without a
    ``rank`` match in file order)."""
    _refuse_unknown(data, {"calendars", "policies"}, "")
    calendars = data.get("calendars")
    policies = data.get("policies")
    if not isinstance(calendars, list) or not calendars:
        raise RuleError("calendars", "a list of at least one calendar is required")
    if not isinstance(policies, list) or not policies:
        raise RuleError("policies", "a list of at least one policy is required")
    return PolicyBook(
        tuple(calendar_rule_from_dict(c, f"calendars[{n}].") for n, c in enumerate(calendars)),
        tuple(
            policy_rule_from_dict(p, f"policies[{n}].", default_rank=n)
            for n, p in enumerate(policies)
        ),
    )


def _refuse_unknown(data: object, known: set[str], prefix: str) -> None:
    if not isinstance(data, Mapping):
        raise RuleError(prefix.rstrip(".") or "file", "must be a table (object)")
    unknown = sorted(set(data) - known)
    if unknown:
        raise RuleError(prefix + unknown[0], "unknown field")


def _strings(value: object) -> list[str]:
    if not isinstance(value, list | tuple | frozenset | set):
        raise ValueError("must be a list")
    return [str(v) for v in value]


def _ints(value: object, field: str) -> list[int]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise RuleError(field, "must be a list of weekday numbers (0 = Monday)")
    return list(value)


def _dates(value: object, field: str) -> list[date]:
    if not isinstance(value, list | tuple):
        raise RuleError(field, "must be a list of dates")
    found = []
    for item in value:
        if isinstance(item, datetime):
            raise RuleError(field, f"{item} is not a date")
        if isinstance(item, date):
            found.append(item)
            continue
        try:
            found.append(date.fromisoformat(str(item)))
        except ValueError:
            raise RuleError(field, f"'{item}' is not a date (YYYY-MM-DD)") from None
    return found


def _instant(value: object, prefix: str) -> datetime:
    field = prefix + "effective_from"
    if isinstance(value, datetime):
        return _check_date(field, value)
    try:
        return _check_date(field, datetime.fromisoformat(str(value)))
    except ValueError:
        raise RuleError(field, f"'{value}' is not an RFC 3339 instant") from None


def describe_hours(rule: CalendarRule) -> str:
    """``Mon-Fri 09:00-12:00,13:00-18:00`` for a start-up banner."""
    names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    days = list(rule.workdays)
    contiguous = days == list(range(days[0], days[-1] + 1))
    span = (
        f"{names[days[0]]}-{names[days[-1]]}"
        if contiguous and len(days) > 1
        else ",".join(names[d] for d in days)
    )
    return f"{span} {rule.hours}"
