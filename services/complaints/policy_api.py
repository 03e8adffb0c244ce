"""HTTP routes of the SLA rules: read the calendars and policies with their versions (scope
complaints:act), create and change them (scope admin). A change is a new version with an
effective date, now or later: complaints opened from then on take it, complaints opened before
keep the rules they started with."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends, Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.complaints import policy_store
from services.complaints.policies import (
    CalendarRule,
    PolicyBook,
    PolicyRule,
    RuleError,
    calendar_rule_from_dict,
    describe_hours,
    policy_rule_from_dict,
)
from services.complaints.resources import Complaints, ComplaintsResources
from shared.auth import api_router, require
from shared.http import BODY_TOO_LARGE, BoundedBodyRoute, ErrorBody, invalid

router = api_router("complaints:act", tags=["sla"], route_class=BoundedBodyRoute)
ADMIN = [Depends(require("admin"))]
Responses = dict[int | str, dict[str, Any]]
BAD_RULE: Responses = BODY_TOO_LARGE | {
    422: {
        "model": ErrorBody,
        "description": "Invalid rule (unknown zone, country code or calendar, an effective "
        "date in the past or not after the latest version, a priority and tier left without "
        "a policy): the field and the reason.",
    }
}
RuleName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Status = Literal["in_force", "scheduled", "superseded"]
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
TARGETS = ("first_response_hours", "next_response_hours", "resolution_hours")


# ---- bodies ------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CalendarFields(_Body):
    zone: str | None = Field(
        default=None, max_length=64, examples=["Asia/Shanghai"], description="IANA time zone."
    )
    hours: str | None = Field(
        default=None,
        max_length=200,
        examples=["09:00-12:00,13:00-18:00"],
        description="Working hours of a working day, local time, comma-separated shifts.",
    )
    workdays: list[int] | None = Field(
        default=None, max_length=7, description="Working weekdays, 0 = Monday.", examples=[[0, 1]]
    )
    country: str | None = Field(
        default=None,
        max_length=8,
        examples=["CN"],
        description="Public holidays and make-up working days of this country (ISO 3166).",
    )
    subdivision: str | None = Field(default=None, max_length=16, examples=["BY"])
    holidays: list[date] | None = Field(
        default=None, max_length=2000, description="Further closed dates."
    )
    working_days: list[date] | None = Field(
        default=None,
        max_length=2000,
        description="Make-up working days (调休): dates worked with the usual hours.",
    )


class CalendarCreate(CalendarFields):
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    zone: str = Field(max_length=64, examples=["Asia/Shanghai"], description="IANA time zone.")
    effective_from: AwareDatetime | None = Field(default=None, description="Default: now.")


class CalendarChange(CalendarFields):
    """Fields left out keep the latest version's value."""

    effective_from: AwareDatetime = Field(description="Now or later, after the latest version.")


class PolicyFields(_Body):
    calendar: str | None = Field(default=None, max_length=64, examples=["cn-support"])
    priorities: list[str] | None = Field(
        default=None, max_length=4, description="Matched priorities; empty: all."
    )
    tiers: list[str] | None = Field(
        default=None, max_length=5, description="Matched tiers; empty: all."
    )
    rank: int | None = Field(
        default=None, ge=-1_000_000, le=1_000_000, description="Lower ranks match first."
    )
    first_response_hours: float | None = Field(default=None, gt=0, le=24 * 366)
    next_response_hours: float | None = Field(default=None, gt=0, le=24 * 366)
    resolution_hours: float | None = Field(default=None, gt=0, le=24 * 366)


class PolicyCreate(PolicyFields):
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    calendar: str = Field(max_length=64, examples=["cn-support"])
    first_response_hours: float = Field(gt=0, le=24 * 366)
    next_response_hours: float = Field(gt=0, le=24 * 366)
    resolution_hours: float = Field(gt=0, le=24 * 366)
    effective_from: AwareDatetime | None = Field(default=None, description="Default: now.")


class PolicyChange(PolicyFields):
    """Fields left out keep the latest version's value."""

    effective_from: AwareDatetime = Field(description="Now or later, after the latest version.")


# ---- views -------------------------------------------------------------------------------


def _status(rule: CalendarRule | PolicyRule, versions: Sequence[datetime], now: datetime) -> Status:
    in_force = max((v for v in versions if v <= now), default=None)
    if rule.effective_from > now:
        return "scheduled"
    return "in_force" if rule.effective_from == in_force else "superseded"


UPCOMING = timedelta(days=90)


def _upcoming(rule: CalendarRule, today: date) -> dict[str, list[date]]:
    """The closed and make-up working dates of the coming days, library ones included: what
    an admin checks against the official schedule (调休 is announced a year at a time)."""
    closed, opened = rule.closed_and_opened()
    end = today + UPCOMING
    return {
        "closed": sorted(d for d in closed if today <= d < end),
        "working": sorted(d for d in opened if today <= d < end),
    }


def calendar_view(rule: CalendarRule, status: Status, today: date | None = None) -> dict[str, Any]:
    upcoming = _upcoming(rule, today) if status == "in_force" and today is not None else None
    return {
        "name": rule.name,
        "zone": rule.zone,
        "hours": rule.hours,
        "workdays": list(rule.workdays),
        "summary": f"{describe_hours(rule)} {rule.zone}",
        "country": rule.country,
        "subdivision": rule.subdivision,
        "holidays": rule.holidays,
        "working_days": rule.working_days,
        "effective_from": rule.effective_from,
        "status": status,
        "next_90_days": upcoming,
    }


def policy_view(rule: PolicyRule, status: Status) -> dict[str, Any]:
    return {
        "name": rule.name,
        "calendar": rule.calendar,
        "rank": rule.rank,
        "priorities": sorted(rule.priorities),
        "tiers": sorted(rule.tiers),
        "first_response_hours": rule.targets.first_response.total_seconds() / 3600,
        "next_response_hours": rule.targets.next_response.total_seconds() / 3600,
        "resolution_hours": rule.targets.resolution.total_seconds() / 3600,
        "effective_from": rule.effective_from,
        "status": status,
    }


def book_view(book: PolicyBook, now: datetime) -> dict[str, Any]:
    def versions(rules: Sequence[CalendarRule | PolicyRule], name: str) -> list[datetime]:
        return [r.effective_from for r in rules if r.name == name]

    calendars = sorted(book.calendars, key=lambda r: (r.name, r.effective_from))
    policies = sorted(book.policies, key=lambda r: (r.rank, r.name, r.effective_from))
    return {
        "now": now,
        "calendars": [
            calendar_view(r, _status(r, versions(calendars, r.name), now), _local_day(r, now))
            for r in calendars
        ],
        "policies": [policy_view(r, _status(r, versions(policies, r.name), now)) for r in policies],
    }


def _local_day(rule: CalendarRule, now: datetime) -> date:
    return now.astimezone(ZoneInfo(rule.zone)).date()


class UpcomingDays(BaseModel):
    closed: list[date] = Field(description="Closed dates: public holidays and further ones.")
    working: list[date] = Field(description="Make-up working days (调休).")


class CalendarView(BaseModel):
    """One version of a calendar."""

    name: str
    zone: str = Field(examples=["Asia/Shanghai"])
    hours: str = Field(examples=["09:00-12:00,13:00-18:00"])
    workdays: list[int] = Field(description="Working weekdays, 0 = Monday.")
    summary: str = Field(examples=["Mon-Fri 09:00-12:00,13:00-18:00 Asia/Shanghai"])
    country: str | None
    subdivision: str | None
    holidays: list[date]
    working_days: list[date]
    effective_from: datetime
    status: Status
    next_90_days: UpcomingDays | None = Field(
        description="The closed and make-up working days of the next 90 days, library ones "
        "included (the version in force only)."
    )


class PolicyView(BaseModel):
    """One version of a policy."""

    name: str
    calendar: str
    rank: int = Field(description="Lower ranks match first.")
    priorities: list[str] = Field(description="Matched priorities; empty: all.")
    tiers: list[str] = Field(description="Matched tiers; empty: all.")
    first_response_hours: float
    next_response_hours: float
    resolution_hours: float
    effective_from: datetime
    status: Status


class RulesOut(BaseModel):
    now: datetime
    calendars: list[CalendarView] = Field(
        description="Every version of every calendar: zone, hours, holidays, effective_from "
        "and status (in_force, scheduled or superseded)."
    )
    policies: list[PolicyView] = Field(
        description="Every version of every policy, in matching order (rank, name)."
    )


# ---- routes ------------------------------------------------------------------------------


@router.get(
    "/sla/policies",
    response_model=RulesOut,
    summary="SLA calendars and policies, every version with its effective date",
)
async def get_rules(res: Complaints) -> RulesOut:
    book = await policy_store.refresh_now(res.pool, res.settings)
    return RulesOut(**book_view(book, datetime.now(UTC)))


def _latest(rules: Sequence[CalendarRule | PolicyRule], name: str) -> dict[str, Any]:
    found = [r for r in rules if r.name == name]
    if not found:
        return {}
    latest = max(found, key=lambda r: r.effective_from)
    if isinstance(latest, CalendarRule):
        view = calendar_view(latest, "in_force")
        keep = ("zone", "hours", "workdays", "country", "subdivision")
        return {k: view[k] for k in keep} | {
            "holidays": list(latest.holidays),
            "working_days": list(latest.working_days),
        }
    view = policy_view(latest, "in_force")
    kept = ("calendar", "rank", "priorities", "tiers", *TARGETS)
    return {k: view[k] for k in kept}


async def _change(
    res: ComplaintsResources,
    kind: Literal["calendar", "policy"],
    values: dict[str, Any],
    *,
    new: bool,
) -> dict[str, Any]:
    """Validate a new rule or version against the rules in the store and add it."""
    settings = res.settings
    now = datetime.now(UTC)
    async with res.pool.acquire() as conn, conn.transaction():
        await policy_store.lock_rules(conn)
        book = await policy_store.refresh(conn, settings)
        try:
            rule: CalendarRule | PolicyRule
            if kind == "calendar":
                base = {} if new else _latest(book.calendars, values["name"])
                rule = calendar_rule_from_dict(
                    {**base, **values, "effective_from": now} | _when(values)
                )
                book.with_calendar(rule, now, new=new)
            else:
                base = {} if new else _latest(book.policies, values["name"])
                merged = {**base, **values, "effective_from": now} | _when(values)
                rule = policy_rule_from_dict(merged)
                book.with_policy(rule, now, new=new)
        except RuleError as error:
            raise invalid(f"body.{error.field}", error.reason) from None
        await policy_store.insert_rules(conn, [rule])
    await policy_store.refresh_now(res.pool, settings)  # this instance sees it at once
    status: Status = "scheduled" if rule.effective_from > now else "in_force"
    if isinstance(rule, CalendarRule):
        return calendar_view(rule, status)
    return policy_view(rule, status)


def _when(values: dict[str, Any]) -> dict[str, Any]:
    given = values.get("effective_from")
    return {} if given is None else {"effective_from": given}


def _given(body: BaseModel) -> dict[str, Any]:
    return {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}


@router.post(
    "/sla/calendars",
    status_code=201,
    dependencies=ADMIN,
    summary="Create a calendar (admin)",
    responses=BAD_RULE,
)
async def create_calendar(body: CalendarCreate, res: Complaints) -> CalendarView:
    return CalendarView.model_validate(await _change(res, "calendar", _given(body), new=True))


@router.patch(
    "/sla/calendars/{name}",
    dependencies=ADMIN,
    summary="Change a calendar from an effective date (admin)",
    responses=BAD_RULE,
)
async def change_calendar(name: RuleName, body: CalendarChange, res: Complaints) -> CalendarView:
    return CalendarView.model_validate(
        await _change(res, "calendar", {**_given(body), "name": name}, new=False)
    )


@router.post(
    "/sla/policies",
    status_code=201,
    dependencies=ADMIN,
    summary="Create a policy (admin)",
    responses=BAD_RULE,
)
async def create_policy(body: PolicyCreate, res: Complaints) -> PolicyView:
    return PolicyView.model_validate(await _change(res, "policy", _given(body), new=True))


@router.patch(
    "/sla/policies/{name}",
    dependencies=ADMIN,
    summary="Change a policy from an effective date (admin)",
    responses=BAD_RULE,
)
async def change_policy(name: RuleName, body: PolicyChange, res: Complaints) -> PolicyView:
    return PolicyView.model_validate(
        await _change(res, "policy", {**_given(body), "name": name}, new=False)
    )
