"""Business-hours calendars: fixed cases (overnight, weekends, holidays, split shifts, DST in
both directions) and properties (additive, never negative, add and elapsed are inverse)."""

from __future__ import annotations

import time as wallclock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.complaints.business_time import (
    DEFAULT_CALENDAR,
    FULL_DAY,
    Calendar,
    Holiday,
    Shift,
    add_business_time,
    business_elapsed,
    parse_shifts,
)
from services.complaints.policies import CalendarRule

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")
EVERY_DAY = range(7)

# Split shifts, Monday to Friday, in Berlin: 8 business hours a day.
OFFICE = Calendar.from_hours("Europe/Berlin", "09:00-12:00,13:00-18:00")


def hours(value: float) -> timedelta:
    return timedelta(hours=value)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


# --------------------------------------------------------------------------- fixed cases


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(berlin(2026, 1, 5, 10), berlin(2026, 1, 5, 11, 30), hours(1.5), id="inside"),
        pytest.param(berlin(2026, 1, 5, 11), berlin(2026, 1, 5, 14), hours(2), id="over-lunch"),
        pytest.param(berlin(2026, 1, 5, 12, 15), berlin(2026, 1, 5, 12, 45), hours(0), id="lunch"),
        pytest.param(berlin(2026, 1, 5, 17), berlin(2026, 1, 6, 10), hours(2), id="overnight"),
        pytest.param(berlin(2026, 1, 9, 17), berlin(2026, 1, 12, 10), hours(2), id="weekend"),
        pytest.param(berlin(2026, 1, 10, 8), berlin(2026, 1, 11, 20), hours(0), id="all-weekend"),
        pytest.param(berlin(2026, 1, 5, 7), berlin(2026, 1, 5, 20), hours(8), id="both-outside"),
        pytest.param(berlin(2026, 1, 5, 7), berlin(2026, 1, 5, 10), hours(1), id="start-before"),
        pytest.param(berlin(2026, 1, 5, 17), berlin(2026, 1, 5, 23), hours(1), id="end-after"),
        pytest.param(berlin(2026, 1, 5), berlin(2026, 1, 12), hours(40), id="one-week"),
        pytest.param(berlin(2026, 1, 5, 12), berlin(2026, 1, 5, 10), hours(0), id="reversed"),
    ],
)
def test_elapsed_in_office_hours(start: datetime, end: datetime, expected: timedelta) -> None:
    assert business_elapsed(OFFICE, start, end) == expected


def test_elapsed_accepts_any_zone_for_its_arguments() -> None:
    start = berlin(2026, 1, 5, 10).astimezone(NEW_YORK)
    assert business_elapsed(OFFICE, start, berlin(2026, 1, 5, 11).astimezone(UTC)) == hours(1)


def test_full_day_holiday_closes_the_day() -> None:
    wednesday = date(2026, 1, 7)
    calendar = Calendar.from_hours("Europe/Berlin", "09:00-18:00", holidays=[Holiday(wednesday)])
    assert business_elapsed(calendar, berlin(2026, 1, 6, 17), berlin(2026, 1, 8, 10)) == hours(2)


def test_partial_holiday_replaces_the_days_hours() -> None:
    eve = Holiday(date(2026, 12, 24), parse_shifts("09:00-12:00"))
    calendar = Calendar.from_hours("Europe/Berlin", "09:00-18:00", holidays=[eve])
    start, end = berlin(2026, 12, 23, 17), berlin(2026, 12, 25, 12)  # Wed 17:00 to Fri 12:00
    assert business_elapsed(calendar, start, end) == hours(1 + 3 + 3)
    assert add_business_time(calendar, start, hours(2)) == berlin(2026, 12, 24, 10)
    assert add_business_time(calendar, start, hours(4.5)) == berlin(2026, 12, 25, 9, 30)


def test_holiday_can_open_a_weekend_day() -> None:
    saturday = Holiday(date(2026, 1, 10), parse_shifts("10:00-12:00"))
    calendar = Calendar.from_hours("Europe/Berlin", "09:00-18:00", holidays=[saturday])
    assert business_elapsed(calendar, berlin(2026, 1, 9, 18), berlin(2026, 1, 12, 9)) == hours(2)


def test_24x7_counts_real_time_across_dst() -> None:
    calendar = Calendar.twenty_four_seven("Europe/Berlin")
    spring = business_elapsed(calendar, berlin(2026, 3, 28, 12), berlin(2026, 3, 29, 12))
    autumn = business_elapsed(calendar, berlin(2026, 10, 24, 12), berlin(2026, 10, 25, 12))
    assert (spring, autumn) == (hours(23), hours(25))


def test_full_day_shifts_on_the_generic_path_match_real_time() -> None:
    # A holiday keeps the calendar off the 24x7 shortcut while its hours stay 00:00-24:00.
    calendar = Calendar(
        "Europe/Berlin", ((FULL_DAY,),) * 7, (Holiday(date(2030, 1, 1), (FULL_DAY,)),)
    )
    assert not calendar.is_always_open
    start, end = berlin(2026, 3, 1), berlin(2026, 11, 30)
    assert business_elapsed(calendar, start, end) == end - start


@pytest.mark.parametrize(
    ("zone", "day", "night", "expected"),
    [
        pytest.param(
            "Europe/Berlin", date(2026, 3, 29), "00:00-06:00", hours(5), id="berlin-spring"
        ),
        pytest.param(
            "Europe/Berlin", date(2026, 10, 25), "00:00-06:00", hours(7), id="berlin-autumn"
        ),
        pytest.param("America/New_York", date(2026, 3, 8), "00:00-06:00", hours(5), id="ny-spring"),
        pytest.param(
            "America/New_York", date(2026, 11, 1), "00:00-06:00", hours(7), id="ny-autumn"
        ),
        # Boundaries inside the skipped hour fall on the jump; in the repeated hour, the first pass.
        pytest.param(
            "Europe/Berlin", date(2026, 3, 29), "02:30-05:00", hours(2), id="start-in-gap"
        ),
        pytest.param("Europe/Berlin", date(2026, 3, 29), "02:15-02:45", hours(0), id="inside-gap"),
        pytest.param(
            "Europe/Berlin", date(2026, 10, 25), "02:30-04:00", hours(2.5), id="start-in-fold"
        ),
        pytest.param(
            "Europe/Berlin", date(2026, 10, 25), "01:00-02:30", hours(1.5), id="end-in-fold"
        ),
    ],
)
def test_a_shift_across_a_dst_change_counts_real_time(
    zone: str, day: date, night: str, expected: timedelta
) -> None:
    calendar = Calendar.from_hours(zone, night, workdays=EVERY_DAY)
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day, time(12), tzinfo=tz)
    assert business_elapsed(calendar, start, end) == expected
    if expected:  # the deadline is the shift's end, on its first pass in a repeated hour
        shift_end = datetime.combine(day, calendar.hours_on(day)[-1].end, tzinfo=tz)
        assert add_business_time(calendar, start, expected) == shift_end.astimezone(UTC)


def test_office_hours_keep_their_length_on_dst_days() -> None:
    # The change happens at night: a Monday after it still has 8 business hours.
    start, end = berlin(2026, 3, 27, 17), berlin(2026, 3, 30, 10)  # Fri CET -> Mon CEST
    assert business_elapsed(OFFICE, start, end) == hours(2)
    assert add_business_time(OFFICE, start, hours(2)) == datetime(2026, 3, 30, 8, tzinfo=UTC)
    start, end = berlin(2026, 10, 23, 17), berlin(2026, 10, 26, 10)  # Fri CEST -> Mon CET
    assert business_elapsed(OFFICE, start, end) == hours(2)
    assert add_business_time(OFFICE, start, hours(2)) == datetime(2026, 10, 26, 9, tzinfo=UTC)


def test_new_york_office_across_both_changes() -> None:
    calendar = Calendar.from_hours("America/New_York", "08:00-17:00")
    start = datetime(2026, 3, 6, 16, tzinfo=NEW_YORK)  # Friday EST
    assert add_business_time(calendar, start, hours(2)) == datetime(2026, 3, 9, 13, tzinfo=UTC)
    start = datetime(2026, 10, 30, 16, tzinfo=NEW_YORK)  # Friday EDT
    assert add_business_time(calendar, start, hours(2)) == datetime(2026, 11, 2, 14, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        pytest.param(berlin(2026, 1, 5, 10), hours(1), berlin(2026, 1, 5, 11), id="inside"),
        pytest.param(berlin(2026, 1, 5, 11), hours(1), berlin(2026, 1, 5, 12), id="ends-at-lunch"),
        pytest.param(
            berlin(2026, 1, 5, 11), hours(1.5), berlin(2026, 1, 5, 13, 30), id="over-lunch"
        ),
        pytest.param(berlin(2026, 1, 5, 17), hours(2), berlin(2026, 1, 6, 10), id="overnight"),
        pytest.param(berlin(2026, 1, 9, 17), hours(2), berlin(2026, 1, 12, 10), id="weekend"),
        pytest.param(berlin(2026, 1, 10, 8), hours(1), berlin(2026, 1, 12, 10), id="from-saturday"),
        pytest.param(berlin(2026, 1, 5, 7), hours(8), berlin(2026, 1, 5, 18), id="whole-day"),
        pytest.param(berlin(2026, 1, 5, 10), hours(40), berlin(2026, 1, 12, 10), id="one-week"),
        pytest.param(berlin(2026, 1, 5, 10), hours(0), berlin(2026, 1, 5, 10), id="zero"),
    ],
)
def test_add_business_time(start: datetime, duration: timedelta, expected: datetime) -> None:
    deadline = add_business_time(OFFICE, start, duration)
    assert deadline == expected
    assert deadline.tzinfo is UTC


def test_add_business_time_is_fast_for_long_durations() -> None:
    started = wallclock.perf_counter()
    deadline = add_business_time(OFFICE, berlin(2026, 1, 5, 10), hours(8 * 5 * 52 * 20))
    assert wallclock.perf_counter() - started < 1.0
    assert business_elapsed(OFFICE, berlin(2026, 1, 5, 10), deadline) == hours(8 * 5 * 52 * 20)


def test_long_span_with_holidays_and_dst_counts_every_day() -> None:
    holidays = [Holiday(date(2026, 5, 1)), Holiday(date(2026, 12, 24), parse_shifts("09:00-12:00"))]
    calendar = Calendar.from_hours("Europe/Berlin", "09:00-17:00", holidays=holidays)
    weekdays_2026 = 261  # 2026-01-01 is a Thursday; 365 days hold 261 weekdays
    expected = hours(8 * (weekdays_2026 - 2) + 3)
    assert business_elapsed(calendar, berlin(2026, 1, 1), berlin(2027, 1, 1)) == expected


def test_calendars_built_from_lists_stay_hashable() -> None:
    shifts = [Shift(time(9), time(17))]
    calendar = Calendar("UTC", [shifts] * 7, [Holiday(date(2026, 1, 1))])  # type: ignore[arg-type]
    assert hash(calendar) == hash(
        Calendar("UTC", (tuple(shifts),) * 7, (Holiday(date(2026, 1, 1)),))
    )
    assert business_elapsed(calendar, berlin(2026, 1, 2), berlin(2026, 1, 3)) == hours(8)


def test_default_calendar_is_documented_office_hours() -> None:
    assert DEFAULT_CALENDAR.zone == "UTC"
    assert DEFAULT_CALENDAR.nominal_week == hours(40)


# --------------------------------------------------------------------------- validation


def test_parse_shifts() -> None:
    assert parse_shifts("09:00-12:00, 13:00-18:00") == (
        Shift(time(9), time(12)),
        Shift(time(13), time(18)),
    )
    assert parse_shifts("22:00-24:00") == (Shift(time(22), time(0)),)
    assert parse_shifts("") == ()
    assert str(Shift(time(22), time(0))) == "22:00-24:00"


@pytest.mark.parametrize(
    "text", ["09:00-08:00", "09:00-12:00,11:00-13:00", "13:00-18:00,09:00-12:00"]
)
def test_bad_shifts_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="shift"):
        parse_shifts(text)


def test_bad_calendars_are_rejected() -> None:
    with pytest.raises(ValueError, match="working hours"):
        Calendar.from_hours("UTC", "")
    with pytest.raises(ValueError, match="7 days"):
        Calendar("UTC", ((FULL_DAY,),) * 5)
    with pytest.raises(ValueError, match="twice"):
        Calendar.from_hours("UTC", holidays=[Holiday(date(2026, 1, 1)), Holiday(date(2026, 1, 1))])
    with pytest.raises(ValueError, match="workdays"):
        Calendar.from_hours("UTC", workdays=[7])
    with pytest.raises(ZoneInfoNotFoundError):
        Calendar.from_hours("Mars/Olympus_Mons")


def test_naive_datetimes_and_negative_durations_are_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        business_elapsed(OFFICE, datetime(2026, 1, 5, 10), berlin(2026, 1, 5, 11))
    with pytest.raises(ValueError, match="negative"):
        add_business_time(OFFICE, berlin(2026, 1, 5, 10), hours(-1))


# --------------------------------------------------------------------------- properties

CALENDARS = [
    OFFICE,
    Calendar.from_hours(
        "Europe/Berlin",
        "08:00-12:00,13:00-17:30",
        holidays=[
            Holiday(date(2026, 3, 30)),
            Holiday(date(2026, 10, 26), parse_shifts("10:00-11:00")),
            Holiday(date(2026, 10, 25), parse_shifts("01:00-03:00")),
        ],
    ),
    Calendar.from_hours("America/New_York", "08:00-17:00"),
    # Shifts that straddle the 02:00 changes of Berlin and New York, every day.
    Calendar.from_hours("Europe/Berlin", "00:30-02:30,02:45-03:15,22:00-24:00", EVERY_DAY),
    Calendar.from_hours("America/New_York", "01:00-02:10,02:20-03:00", EVERY_DAY),
    # Lord Howe Island moves its clocks by 30 minutes, at 02:00.
    Calendar.from_hours("Australia/Lord_Howe", "01:00-02:15,02:20-03:00", workdays=(6,)),
    Calendar.twenty_four_seven("Europe/Berlin"),
]
DST_DAYS = [
    datetime(2026, 3, 29, tzinfo=BERLIN),
    datetime(2026, 10, 25, tzinfo=BERLIN),
    datetime(2026, 3, 8, tzinfo=NEW_YORK),
    datetime(2026, 11, 1, tzinfo=NEW_YORK),
    datetime(2026, 4, 5, tzinfo=ZoneInfo("Australia/Lord_Howe")),
    datetime(2026, 10, 4, tzinfo=ZoneInfo("Australia/Lord_Howe")),
]

calendars = st.sampled_from(CALENDARS)
# Instants anywhere in a few years, and instants packed around the clock changes.
anywhere = st.datetimes(datetime(2025, 6, 1), datetime(2028, 6, 1), timezones=st.just(UTC))
near_dst = st.builds(
    lambda day, shift: day.astimezone(UTC) + shift,
    st.sampled_from(DST_DAYS),
    st.timedeltas(-timedelta(days=3), timedelta(days=3)),
)
instants = st.one_of(anywhere, near_dst)
durations = st.timedeltas(timedelta(microseconds=1), timedelta(days=90))


@given(calendars, instants, instants, instants)
def test_elapsed_is_additive(calendar: Calendar, a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    total = business_elapsed(calendar, a, c)
    assert business_elapsed(calendar, a, b) + business_elapsed(calendar, b, c) == total


@given(calendars, instants, instants)
def test_elapsed_is_never_negative_nor_more_than_real_time(
    calendar: Calendar, a: datetime, b: datetime
) -> None:
    elapsed = business_elapsed(calendar, a, b)
    assert timedelta(0) <= elapsed <= max(b - a, timedelta(0))


@given(calendars, instants, durations)
def test_elapsed_undoes_add(calendar: Calendar, start: datetime, duration: timedelta) -> None:
    deadline = add_business_time(calendar, start, duration)
    assert deadline > start
    assert business_elapsed(calendar, start, deadline) == duration


@given(calendars, instants, instants)
def test_add_undoes_elapsed_up_to_closed_time(
    calendar: Calendar, start: datetime, end: datetime
) -> None:
    start, end = sorted((start, end))
    reached = add_business_time(calendar, start, business_elapsed(calendar, start, end))
    assert reached <= end
    assert business_elapsed(calendar, reached, end) == timedelta(0)


def _open_by_the_minute(calendar: Calendar, moment: datetime) -> bool:
    local = moment.astimezone(calendar.tzinfo)
    offset = timedelta(hours=local.hour, minutes=local.minute)
    shifts = calendar.hours_on(local.date())
    return any(shift.start_offset <= offset < shift.end_offset for shift in shifts)


@settings(max_examples=40, deadline=None)
@given(
    st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 1)),
    st.integers(0, 3 * 24 * 60),
)
def test_elapsed_matches_a_minute_by_minute_count(start: datetime, minutes: int) -> None:
    # Shanghai has no DST, so a plain wall-clock test is the truth there.
    calendar = Calendar.from_hours(
        "Asia/Shanghai",
        "09:00-12:00,13:00-18:00",
        holidays=[
            Holiday(date(2026, 10, 1)),
            Holiday(date(2026, 5, 2), parse_shifts("10:00-11:30")),
        ],
    )
    first = start.replace(second=0, microsecond=0, tzinfo=SHANGHAI)
    steps = (first + timedelta(minutes=n) for n in range(minutes))
    expected = sum(_open_by_the_minute(calendar, moment) for moment in steps)
    end = first + timedelta(minutes=minutes)
    assert business_elapsed(calendar, first, end) == timedelta(minutes=expected)


# --------------------------------------------------------------------------- calendars as data
# Expectations from the State Council's 2026 schedule (National Day): 1-7 October off, with
# Sunday 20 September and Saturday 10 October worked instead (调休). Hand-counted hours.

CHINA = CalendarRule(
    "cn-support", "Asia/Shanghai", "09:00-12:00,13:00-18:00", (0, 1, 2, 3, 4), country="CN"
).calendar()


def beijing(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=SHANGHAI)


def test_national_day_holidays_come_from_the_library() -> None:
    # Wednesday 30 September 17:00: one hour that day, then closed until Thursday 8 October.
    opened = beijing(9, 30, 17)
    assert add_business_time(CHINA, opened, hours(8)) == beijing(10, 8, 17)
    assert business_elapsed(CHINA, opened, beijing(10, 8, 9)) == hours(1)


def test_a_make_up_saturday_is_a_working_day() -> None:
    # Friday 9 October 17:00 plus 4 hours: 1 on Friday, 3 on the worked Saturday morning.
    assert add_business_time(CHINA, beijing(10, 9, 17), hours(4)) == beijing(10, 10, 12)
    # Sunday 20 September is worked too; Saturday 19th is not.
    assert business_elapsed(CHINA, beijing(9, 19), beijing(9, 21)) == hours(8)


def test_explicit_dates_beat_the_library() -> None:
    rule = CalendarRule(
        "cn-support",
        "Asia/Shanghai",
        "09:00-18:00",
        (0, 1, 2, 3, 4),
        country="CN",
        holidays=(date(2026, 10, 10),),  # the make-up Saturday given back
        working_days=(date(2026, 10, 7),),  # a holiday worked after all
    )
    calendar = rule.calendar()
    assert business_elapsed(calendar, beijing(10, 10), beijing(10, 11)) == hours(0)
    assert business_elapsed(calendar, beijing(10, 7), beijing(10, 8)) == hours(9)
    assert business_elapsed(calendar, beijing(10, 6), beijing(10, 7)) == hours(0)


def test_the_zone_decides_what_nine_to_six_means() -> None:
    # 09:00-18:00 in Beijing is 01:00-10:00 UTC; in UTC it is 09:00-18:00 UTC (17:00-02:00
    # in Beijing). Monday 2 March 2026, 00:30 UTC, two business hours.
    in_beijing = CalendarRule("cn", "Asia/Shanghai", "09:00-18:00").calendar()
    in_utc = CalendarRule("utc", "UTC", "09:00-18:00").calendar()
    start = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    assert add_business_time(in_beijing, start, hours(2)) == datetime(2026, 3, 2, 3, tzinfo=UTC)
    assert add_business_time(in_utc, start, hours(2)) == datetime(2026, 3, 2, 11, tzinfo=UTC)
