"""Business-hours calendars: how much working time lies between two instants, and when a
given amount of working time runs out (SLA time counts in business hours
of a calendar with a time zone, working hours and holidays).

Pure code: no I/O. The standard library's ``zoneinfo`` is enough; no third-party library is
needed for what we do with zones.

Conventions
-----------
* Working hours are wall-clock times in the calendar's IANA zone, per weekday (Monday = 0),
  with any number of shifts a day (split shifts such as 09:00-12:00 and 13:00-18:00). A shift
  never crosses midnight: write a night shift as 22:00-24:00 and 00:00-06:00 on the next day.
* A shift boundary at wall time T on date D is *the first instant at which the local clock
  shows D T or later*. Consequences on the days the clocks change:

  - spring forward (Berlin 2026-03-29, 02:00 -> 03:00): a shift 01:00-04:00 lasts the 2 hours
    that really pass; a boundary inside the skipped hour falls on the jump itself;
  - fall back (Berlin 2026-10-25, 03:00 -> 02:00): a shift 01:00-04:00 lasts the 4 hours that
    really pass; a boundary inside the repeated hour takes its first occurrence.

  So a shift counts the real time between its two boundaries, every shift is one contiguous
  interval, and consecutive shifts or days join without gap or overlap (a 00:00-24:00 calendar
  counts exactly the real time, whatever the zone does).
* Every datetime returned is in UTC. Internally all arithmetic is in UTC too, because Python
  compares and subtracts two datetimes that share a ZoneInfo by their wall-clock readings.
* Holidays replace a date's hours: no hours (closed all day) or partial-day hours.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property, lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

ZERO = timedelta(0)
ONE_DAY = timedelta(days=1)
ONE_WEEK = timedelta(days=7)
MIDNIGHT = time(0, 0)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Years the Timeline indexes: events are dated 1970 to 2099, with a year either side for
# zones and deadlines past the end of a year.
INDEXED_YEARS = (1969, 2101)

# Documented defaults; the service's settings override them from the environment.
DEFAULT_ZONE = "UTC"
DEFAULT_HOURS = "09:00-12:00,13:00-18:00"  # an 8-hour day with a lunch break
DEFAULT_WORKDAYS: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday to Friday


# Parsing and validation, needed by the classes below when the module loads.


def parse_shifts(text: str) -> tuple[Shift, ...]:
    """``"09:00-12:00,13:00-18:00"`` -> two shifts; ``""`` -> none; ``24:00`` may end a shift."""
    shifts = tuple(_parse_shift(part) for part in text.split(",") if part.strip())
    _check_shifts(shifts)
    return shifts


def _offset(value: time) -> timedelta:
    return timedelta(
        hours=value.hour,
        minutes=value.minute,
        seconds=value.second,
        microseconds=value.microsecond,
    )


def _parse_shift(text: str) -> Shift:
    start_text, _, end_text = text.strip().partition("-")
    end_text = end_text.strip()
    end = MIDNIGHT if end_text == "24:00" else time.fromisoformat(end_text)
    return Shift(time.fromisoformat(start_text.strip()), end)


def _check_shifts(shifts: Sequence[Shift]) -> None:
    ordered = sorted(shifts)
    if list(shifts) != ordered:
        raise ValueError(f"shifts must be in order: {[str(s) for s in shifts]}")
    for earlier, later in pairwise(ordered):
        if later.start_offset < earlier.end_offset:
            raise ValueError(f"shifts overlap: {earlier} and {later}")


@dataclass(frozen=True, order=True)
class Shift:
    """Working hours [start, end) on one local date. ``end == time(0)`` means 24:00, the
    midnight that ends the day (an end must come after its start, so it cannot mean 00:00)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("shift times are local wall-clock times, without tzinfo")
        if self.end_offset <= self.start_offset:
            raise ValueError(f"shift must end after it starts: {self}")

    @property
    def start_offset(self) -> timedelta:
        return _offset(self.start)

    @property
    def end_offset(self) -> timedelta:
        return ONE_DAY if self.end == MIDNIGHT else _offset(self.end)

    @property
    def length(self) -> timedelta:
        """Nominal (wall-clock) length; the real one differs only across a DST change."""
        return self.end_offset - self.start_offset

    def __str__(self) -> str:
        end = "24:00" if self.end == MIDNIGHT else self.end.isoformat("minutes")
        return f"{self.start.isoformat('minutes')}-{end}"


FULL_DAY = Shift(MIDNIGHT, MIDNIGHT)


@dataclass(frozen=True)
class Holiday:
    """A date whose hours replace the weekday's: ``hours=()`` closes the whole day."""

    day: date
    hours: tuple[Shift, ...] = ()

    def __post_init__(self) -> None:
        _check_shifts(self.hours)


@dataclass(frozen=True)
class Calendar:
    """Working hours in one IANA zone. ``week[0]`` holds Monday's shifts, ``week[6]`` Sunday's."""

    zone: str
    week: tuple[tuple[Shift, ...], ...]
    holidays: tuple[Holiday, ...] = ()

    def __hash__(self) -> int:
        cached: int = self.__dict__["_hash"]
        return cached

    def __post_init__(self) -> None:
        # Tuples all the way down keep the calendar hashable (it keys the caches below), even
        # when settings hand over lists.
        object.__setattr__(self, "week", tuple(tuple(shifts) for shifts in self.week))
        object.__setattr__(self, "holidays", tuple(self.holidays))
        # The calendar keys the caches below on every call; hashing its nested tuples each
        # time was half the CPU of an SLA fold. It is immutable, so hash it once.
        object.__setattr__(self, "_hash", hash((self.zone, self.week, self.holidays)))
        ZoneInfo(self.zone)  # raises ZoneInfoNotFoundError for an unknown name
        if len(self.week) != 7:
            raise ValueError("week needs the shifts of 7 days, Monday first")
        for shifts in self.week:
            _check_shifts(shifts)
        if self.nominal_week <= ZERO:
            raise ValueError("a calendar needs working hours on at least one weekday")
        if len(self.holiday_hours) != len(self.holidays):
            raise ValueError("a holiday date is listed twice")

    @classmethod
    def from_hours(
        cls,
        zone: str = DEFAULT_ZONE,
        hours: str | Sequence[Shift] = DEFAULT_HOURS,
        workdays: Iterable[int] = DEFAULT_WORKDAYS,
        holidays: Iterable[Holiday] = (),
    ) -> Calendar:
        """The same hours on every working weekday, e.g. ``from_hours("Asia/Shanghai",
        "09:00-12:00,13:00-18:00")``; other weekdays are closed."""
        shifts = parse_shifts(hours) if isinstance(hours, str) else tuple(hours)
        open_days = set(workdays)
        if not open_days <= set(range(7)):
            raise ValueError(f"workdays are 0 (Monday) to 6 (Sunday), got {sorted(open_days)}")
        week = tuple(shifts if weekday in open_days else () for weekday in range(7))
        return cls(zone, week, tuple(holidays))

    @classmethod
    def twenty_four_seven(cls, zone: str = DEFAULT_ZONE) -> Calendar:
        """Always open: business time equals real time."""
        return cls(zone, ((FULL_DAY,),) * 7)

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.zone)  # ZoneInfo caches instances per key

    @cached_property
    def holiday_hours(self) -> Mapping[date, tuple[Shift, ...]]:
        return {holiday.day: holiday.hours for holiday in self.holidays}

    @cached_property
    def nominal_week(self) -> timedelta:
        """Working time of a week with no holiday and no clock change."""
        return sum((shift.length for shifts in self.week for shift in shifts), ZERO)

    @property
    def timeline(self) -> Timeline:
        return _timeline(self)

    @cached_property
    def is_always_open(self) -> bool:
        return not self.holidays and all(shifts == (FULL_DAY,) for shifts in self.week)

    def hours_on(self, day: date) -> tuple[Shift, ...]:
        """The shifts of one local date, holidays applied."""
        override = self.holiday_hours.get(day)
        return self.week[day.weekday()] if override is None else override


DEFAULT_CALENDAR = Calendar.from_hours()


def business_elapsed(calendar: Calendar, start: datetime, end: datetime) -> timedelta:
    """Business time between two aware instants; zero when ``end <= start``."""
    begin, finish = _to_utc(start), _to_utc(end)
    if finish <= begin:
        return ZERO
    if calendar.is_always_open:
        return finish - begin
    timeline = calendar.timeline
    if timeline.reaches(begin) and timeline.reaches(finish):
        return timeline.position(finish) - timeline.position(begin)
    return _walk_elapsed(calendar, begin, finish)


def add_business_time(calendar: Calendar, start: datetime, duration: timedelta) -> datetime:
    """The earliest instant (UTC) at which ``duration`` of business time has passed since
    ``start``: the inverse of :func:`business_elapsed`."""
    if duration < ZERO:
        raise ValueError("duration must not be negative")
    origin = _to_utc(start)
    if duration == ZERO or calendar.is_always_open:
        return origin + duration
    found = calendar.timeline.add(origin, duration)
    return found if found is not None else _walk_add(calendar, origin, duration)


def add_business_times(
    calendar: Calendar, start: datetime, durations: Sequence[timedelta]
) -> list[datetime]:
    """``add_business_time`` of several durations from one start (a clock's warning and its
    deadline), placing the start once."""
    origin = _to_utc(start)
    if calendar.is_always_open or not calendar.timeline.reaches(origin):
        return [add_business_time(calendar, origin, d) for d in durations]
    found = calendar.timeline.add_each(origin, durations)
    return [
        instant or add_business_time(calendar, origin, d)
        for instant, d in zip(found, durations, strict=True)
    ]


class Timeline:
    """A calendar's working intervals over a span of years, with the business time before
    each. Elapsed time is then a difference of two positions and its inverse a binary search,
    instead of a walk over the days (an SLA fold asks both for every clock of every event).
    The span grows on demand within INDEXED_YEARS; instants outside it take the walk below,
    which the index reproduces exactly: both are built from the same per-day intervals.
    Instants are UTC datetimes throughout (they compare without conversion)."""

    def __init__(self, calendar: Calendar) -> None:
        self._calendar = calendar
        self._years: tuple[int, int] | None = None
        self._starts: list[datetime] = []
        self._ends: list[datetime] = []
        self._before: list[timedelta] = []  # business time before each interval
        self._through: list[timedelta] = []  # business time up to each interval's end
        self._low = self._high = EPOCH  # the instants covered, [low, high]

    def reaches(self, moment: datetime) -> bool:
        """Whether the UTC ``moment`` is covered, growing the span to its year if indexed."""
        if self._low <= moment <= self._high and self._years is not None:
            return True
        year = moment.year
        if not INDEXED_YEARS[0] <= year <= INDEXED_YEARS[1]:
            return False
        if self._years is None or year - 1 < self._years[0]:
            self._build(year - 1, max(year + 1, self._years[1] if self._years else year))
        else:
            self._append(year + 1)
        return self._low <= moment <= self._high

    def position(self, moment: datetime) -> timedelta:
        """Business time from the span's start to the UTC ``moment`` (which it must reach)."""
        i = bisect_right(self._starts, moment) - 1
        return ZERO if i < 0 else self._before[i] + (min(moment, self._ends[i]) - self._starts[i])

    def add(self, origin: datetime, duration: timedelta) -> datetime | None:
        """The earliest instant with ``duration`` of business time since the UTC ``origin``;
        None when that lies beyond the indexed years."""
        if not self.reaches(origin):
            return None
        target = self.position(origin) + duration
        while True:
            i = bisect_left(self._through, target)
            if i < len(self._through):
                return self._starts[i] + (target - self._before[i])
            assert self._years is not None
            if self._years[1] >= INDEXED_YEARS[1]:
                return None
            # Enough years for what is left at the nominal rate, and at least one more.
            missing = (target - self._through[-1]) / (self._calendar.nominal_week * 52)
            self._append(self._years[1] + 1 + int(missing))

    def add_each(self, origin: datetime, durations: Sequence[timedelta]) -> list[datetime | None]:
        """``add`` for several durations from an ``origin`` the span reaches (None where a
        result lies beyond the span; ``add`` grows it)."""
        base = self.position(origin)
        found: list[datetime | None] = []
        for duration in durations:
            if duration < ZERO:
                raise ValueError("duration must not be negative")
            if duration == ZERO:
                found.append(origin)
                continue
            target = base + duration
            i = bisect_left(self._through, target)
            inside = i < len(self._through)
            found.append(self._starts[i] + (target - self._before[i]) if inside else None)
        return found

    def _build(self, first: int, last: int) -> None:
        """Index the years from ``first`` to ``last`` afresh."""
        first = max(first, INDEXED_YEARS[0])
        self._starts, self._ends, self._before, self._through = [], [], [], []
        self._low = self._high = _midnight(self._calendar, date(first, 1, 1))
        self._years = (first, first - 1)
        self._append(last)

    def _append(self, last: int) -> None:
        """Extend the span to the end of year ``last``."""
        assert self._years is not None
        first, done = self._years
        last = min(last, INDEXED_YEARS[1])
        total = self._through[-1] if self._through else ZERO
        day, end_day = date(done + 1, 1, 1), date(last + 1, 1, 1)
        while day < end_day:
            for begin, finish in _day_intervals.__wrapped__(self._calendar, day):
                self._starts.append(begin)
                self._ends.append(finish)
                self._before.append(total)
                total += finish - begin
                self._through.append(total)
            day += ONE_DAY
        self._high = _midnight(self._calendar, max(end_day, date(done + 1, 1, 1)))
        self._years = (first, max(last, done))


@lru_cache(maxsize=64)
def _timeline(calendar: Calendar) -> Timeline:
    """One index per distinct calendar: settings build a new, equal Calendar per call (per
    request, per sweep), and an index takes milliseconds to build."""
    return Timeline(calendar)


def _walk_elapsed(calendar: Calendar, begin: datetime, finish: datetime) -> timedelta:
    """Business time between two UTC instants, day by day (whole plain weeks at once)."""
    total = ZERO
    # One day early and one late: around a clock change at midnight, the date an instant
    # shows can differ from the day whose hours contain it.
    day = _local_date(calendar, begin) - ONE_DAY
    last = _local_date(calendar, finish) + ONE_DAY
    while day <= last:
        if _week_inside(calendar, day, begin, finish) and _is_plain_week(calendar, day):
            total += calendar.nominal_week
            day += ONE_WEEK
            continue
        total += _overlap(_day_intervals(calendar, day), begin, finish)
        day += ONE_DAY
    return total


def _walk_add(calendar: Calendar, origin: datetime, duration: timedelta) -> datetime:
    """add_business_time day by day (whole plain weeks at once), from a UTC instant."""
    remaining = duration
    day = _local_date(calendar, origin) - ONE_DAY
    while True:
        # Strictly more than a week left: the deadline lies beyond this week's last shift.
        if (
            remaining > calendar.nominal_week
            and _midnight(calendar, day) >= origin
            and _is_plain_week(calendar, day)
        ):
            remaining -= calendar.nominal_week
            day += ONE_WEEK
            continue
        for shift_start, shift_end in _day_intervals(calendar, day):
            begin = max(shift_start, origin)
            if shift_end <= begin:
                continue
            if shift_end - begin >= remaining:
                return begin + remaining
            remaining -= shift_end - begin
        day += ONE_DAY


# --------------------------------------------------------------------------- internals


def _to_utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:  # the SLA fold's instants: nothing to check or convert
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"an aware datetime is required, got {moment!r}")
    return moment.astimezone(UTC)


def _local_date(calendar: Calendar, moment: datetime) -> date:
    return moment.astimezone(calendar.tzinfo).date()


def _first_instant(zone: ZoneInfo, wall: datetime) -> datetime:
    """The first instant (UTC) at which the local clock shows ``wall`` (naive) or later."""
    candidate = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: first of two readings
    if candidate.astimezone(zone).replace(tzinfo=None) == wall:
        return candidate
    return _end_of_gap(zone, wall)


def _end_of_gap(zone: ZoneInfo, wall: datetime) -> datetime:
    """``wall`` was skipped by a spring-forward jump: find the jump instant by bisection.
    zoneinfo does not expose transitions; the fold=1 and fold=0 readings bracket the jump."""
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # before the jump
    high = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # after it
    step = timedelta(microseconds=1)
    while high - low > step:
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high


def _wall(day: date, offset: timedelta) -> datetime:
    return datetime.combine(day, MIDNIGHT) + offset


@lru_cache(maxsize=8192)
def _midnight(calendar: Calendar, day: date) -> datetime:
    return _first_instant(calendar.tzinfo, _wall(day, ZERO))


@lru_cache(maxsize=8192)
def _day_intervals(calendar: Calendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """The real (UTC) intervals of one local date's shifts; a shift lost in a gap is dropped."""
    zone = calendar.tzinfo
    intervals = []
    for shift in calendar.hours_on(day):
        begin = _first_instant(zone, _wall(day, shift.start_offset))
        end = _first_instant(zone, _wall(day, shift.end_offset))
        if end > begin:
            intervals.append((begin, end))
    return tuple(intervals)


@lru_cache(maxsize=8192)
def _is_plain_week(calendar: Calendar, first_day: date) -> bool:
    """True when the 7 days from ``first_day`` hold no holiday and no clock change, so their
    business time is exactly ``nominal_week``. The UTC offset is compared at the 8 midnights;
    this assumes no zone changes its offset and back within a single day (none does)."""
    days = [first_day + n * ONE_DAY for n in range(8)]
    if any(day in calendar.holiday_hours for day in days[:7]):
        return False
    zone = calendar.tzinfo
    offsets = {_midnight(calendar, day).astimezone(zone).utcoffset() for day in days}
    return len(offsets) == 1


def _week_inside(calendar: Calendar, first_day: date, begin: datetime, end: datetime) -> bool:
    first_midnight = _midnight(calendar, first_day)
    return first_midnight >= begin and _midnight(calendar, first_day + ONE_WEEK) <= end


def _overlap(
    intervals: Iterable[tuple[datetime, datetime]], begin: datetime, end: datetime
) -> timedelta:
    total = ZERO
    for start, stop in intervals:
        part = min(stop, end) - max(start, begin)
        if part > ZERO:
            total += part
    return total


__all__ = [
    "DEFAULT_CALENDAR",
    "DEFAULT_HOURS",
    "DEFAULT_WORKDAYS",
    "DEFAULT_ZONE",
    "FULL_DAY",
    "Calendar",
    "Holiday",
    "Shift",
    "add_business_time",
    "business_elapsed",
    "parse_shifts",
]
