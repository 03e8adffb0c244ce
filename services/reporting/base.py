"""The customer base kept as daily counters, pure: what one customer adds to them.

A customer is active on day d when they bought on a day of (d - W, d] (W = CHURN_AFTER_DAYS)
and lost on day p + W after a purchase day p not followed by another within W days. So
their purchase days, as closed intervals [p, p + W] merged where they meet, form *spells*
[a, L): active from the spell's first purchase a to L - 1, lost on L. The union of
intervals does not depend on the order in which purchase days are learnt, so neither do
the spells, nor anything computed from them.

Every count of a period [s, l] (l = today for the current period) is a sum over days of
per-day counters, or a running sum of per-day deltas (a level), of the customers' spells:

- at_start = active on s - 1, at_end = active on l: levels;
- new: the first spell starts in [s, l]; won back: a later spell starts in [s, l] and the
  one before ended (was lost) before s; lost: a spell that began before s ends in [s, l];
- active = active on s, plus the customers whose first spell in the period starts in
  (s, l] ("joined": the spell before, if any, ended by s).

Slices count a customer under the class (tier, segment) in force on the period's first day,
or their acquisition channel. Day counters use the class of their own day; for weeks and
months, `*_week` / `*_month` columns hold the corrections (the week's or month's count minus
the day counters' sum, mostly zero) for the class on the week's or month's first day, and
for the rule that a spell that started in the same period is not lost in it, etc. `enter`
corrects at_start for a class that changed on the period's first day.

The fold keeps each customer's inputs (`Member`); when they change it writes the difference
between the new contribution and the old one (`difference`), so the counters equal the sum
over customers of `contribution(final inputs)` whatever the arrival order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from itertools import accumulate
from typing import Any, Final

DEFAULT_WINDOW: Final = 365  # CHURN_AFTER_DAYS' default: the counters' W until set
UNSCORED: Final = "unscored"  # the slice of customers scoring never classed
UNKNOWN_CHANNEL: Final = "unknown"
DIMENSIONS: Final = ("tier", "segment", "channel")  # channel partitions all: the total
GRANULARITIES: Final = ("day", "week", "month")
FLOWS: Final = ("level", "new", "won", "lost")
COLUMNS: Final = (
    "level",  # delta of: active on the day, under the class of the day
    "enter",  # at_start of a period starting that day: class of the day, not of the day before
    "new",
    "won",
    "lost",
    *(f"{flow}_{g}" for g in ("week", "month") for flow in (*FLOWS, "join")),
)
_COLUMN: Final = {name: i for i, name in enumerate(COLUMNS)}

Day = int  # a date as its ordinal (date.toordinal): spells are arithmetic on days
Key = tuple[int, str, str, Day]  # (window, dimension, slice, day)
Counts = dict[Key, list[int]]  # one value per COLUMNS


ClassChange = tuple[Day, int, str, str]  # day, as_of (microseconds since 1970), event id, value
ChannelSet = tuple[int, str, str]  # set at (microseconds since 1970), event id, value


@dataclass(frozen=True)
class Member:
    """What a customer's part of the counters is computed from: their own copy of the
    facts that decide it, merged by the same rules as the tables they come from (a class
    per day and the acquisition channel: the latest by the event's own time, then id), so
    the fold never reads another table to recount a customer."""

    window: int | None  # W of the counters it is in; None: in none yet
    days: tuple[Day, ...]  # purchase days, ascending, distinct
    tier: tuple[ClassChange, ...] = ()  # the latest change of each day, ascending
    segment: tuple[ClassChange, ...] = ()
    channel: ChannelSet | None = None

    @property
    def channel_value(self) -> str:
        return self.channel[2] if self.channel else UNKNOWN_CHANNEL

    def to_json(self) -> dict[str, Any]:
        return {
            "w": self.window,
            "days": list(self.days),
            "tier": [list(c) for c in self.tier],
            "segment": [list(c) for c in self.segment],
            "channel": list(self.channel) if self.channel else None,
        }

    @classmethod
    def from_json(cls, found: dict[str, Any]) -> Member:
        channel = found.get("channel")
        return cls(
            found.get("w"),
            tuple(found.get("days", ())),
            tuple((d, t, e, v) for d, t, e, v in found.get("tier", ())),
            tuple((d, t, e, v) for d, t, e, v in found.get("segment", ())),
            (channel[0], channel[1], channel[2]) if channel else None,
        )


def merge_classes(
    known: Iterable[ClassChange], learnt: Iterable[ClassChange]
) -> tuple[ClassChange, ...]:
    """A class history with the changes learnt: per day, the latest by (as_of, event id)."""
    by_day: dict[Day, ClassChange] = {}
    for change in (*known, *learnt):
        found = by_day.get(change[0])
        if found is None or change[1:3] > found[1:3]:
            by_day[change[0]] = change
    return tuple(by_day[d] for d in sorted(by_day))


def latest_channel(known: ChannelSet | None, learnt: ChannelSet | None) -> ChannelSet | None:
    """The acquisition channel set last, by (time, event id)."""
    if known is None or (learnt is not None and learnt[:2] > known[:2]):
        return learnt
    return known


def spells(days: Sequence[Day], window: int) -> list[tuple[Day, Day]]:
    """(a, L) per spell: first purchase a, lost on L (last purchase + window)."""
    found: list[tuple[Day, Day]] = []
    for day in days:
        if found and day <= found[-1][1]:
            found[-1] = (found[-1][0], day + window)
        else:
            found.append((day, day + window))
    return found


@cache
def _week_start(day: Day) -> Day:
    return day - date.fromordinal(day).weekday()


@cache
def _month_start(day: Day) -> Day:
    return date.fromordinal(day).replace(day=1).toordinal()


@cache
def _next_month(day: Day) -> Day:
    start = date.fromordinal(_month_start(day))
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1).toordinal()


_START: Final[dict[str, Callable[[Day], Day]]] = {
    "day": lambda d: d,
    "week": _week_start,
    "month": _month_start,
}
_NEXT: Final[dict[str, Callable[[Day], Day]]] = {
    "day": lambda d: d + 1,
    "week": lambda d: _week_start(d) + 7,
    "month": _next_month,
}


class _Classes:
    """A class history as a step function of the day: the latest change on or before it,
    before the first change the first class; `fixed` for a class that never changes."""

    def __init__(self, changes: Sequence[tuple[Day, str]], fixed: str) -> None:
        self.days = [d for d, _ in changes]
        self.values = [v for _, v in changes] or [fixed]

    def on(self, day: Day) -> str:
        return self.values[max(bisect_right(self.days, day) - 1, 0)]

    def changes(self, granularity: str) -> list[Day]:
        """Days on which the class of the period's first day changes."""
        start, after = _START[granularity], _NEXT[granularity]
        found = {d if start(d) == d else after(d) for d in self.days[1:]}
        return sorted(found)


def _add(into: dict[tuple[str, str, Day], int], column: str, slice_: str, day: Day, n: int) -> None:
    key = (column, slice_, day)
    into[key] = into.get(key, 0) + n


Spell = tuple[Day | None, Day, Day]  # (the spell before's lost day or None, a, L)
Partial = dict[tuple[str, str, Day], int]  # (column, slice, day) -> n


def _with_before(found: list[tuple[Day, Day]]) -> list[Spell]:
    return [(found[i - 1][1] if i else None, a, lost) for i, (a, lost) in enumerate(found)]


def _flows(found: Iterable[Spell], classes: _Classes, granularity: str) -> Partial:
    """The full counters of one granularity: each under the class of the first day of the
    period its day is in. Each spell's part depends on it, the one before's lost day and
    the classes only (so a change to one spell recounts it and the next alone)."""
    start = _START[granularity]
    out: Partial = {}

    def cls(day: Day) -> str:
        return classes.on(start(day))

    breaks = classes.changes(granularity)
    for before, a, lost in found:
        first_day = start(a)
        if before is None:
            _add(out, "new", cls(a), a, 1)
        elif before < first_day:
            _add(out, "won", cls(a), a, 1)
        if a > first_day and (before is None or before <= first_day):
            _add(out, "join", cls(a), a, 1)
        if a < start(lost):
            _add(out, "lost", cls(lost), lost, 1)
        current = cls(a)
        _add(out, "level", current, a, 1)
        for b in breaks[bisect_right(breaks, a) : bisect_right(breaks, lost - 1)]:
            if (value := cls(b)) != current:
                _add(out, "level", current, b, -1)
                _add(out, "level", value, b, 1)
                current = value
        _add(out, "level", current, lost, -1)
    return out


def _enter(found: Iterable[Spell], classes: _Classes) -> Partial:
    """At a class change on day t of a customer active on t - 1: at_start of a period
    starting on t counts them under the new class, the level of t - 1 under the old."""
    out: Partial = {}
    for t in classes.days[1:]:
        old, new = classes.on(t - 1), classes.on(t)
        if old == new:
            continue
        for _, a, lost in found:
            if a <= t - 1 < lost:
                _add(out, "enter", old, t, -1)
                _add(out, "enter", new, t, 1)
    return out


def _dimension(found: list[Spell], classes: _Classes) -> Partial:
    """The counters of one dimension: day columns, then week and month corrections."""
    daily = _flows(found, classes, "day")
    out = dict(daily)
    if len(classes.values) > 1:
        for key, n in _enter(found, classes).items():
            out[key] = out.get(key, 0) + n
    for granularity in ("week", "month"):
        for (column, slice_, day), n in _flows(found, classes, granularity).items():
            _add(out, f"{column}_{granularity}", slice_, day, n)
        for (column, slice_, day), n in daily.items():
            if column != "join":
                _add(out, f"{column}_{granularity}", slice_, day, -n)
    return out


def _fixed(found: Iterable[Spell]) -> Partial:
    """`_dimension` for a class that never changes (slice ''), written out: the day
    counters, and the week and month corrections, which only the rules about spells that
    begin or end inside one period make."""
    out: Partial = {}
    for before, a, lost in found:
        _add(out, "new" if before is None else "won", "", a, 1)
        _add(out, "lost", "", lost, 1)
        _add(out, "level", "", a, 1)
        _add(out, "level", "", lost, -1)
        for granularity in ("week", "month"):
            start = _START[granularity]
            first_day = start(a)
            if before is not None and before >= first_day:  # lost and back in one period
                _add(out, f"won_{granularity}", "", a, -1)
            if a > first_day and (before is None or before <= first_day):
                _add(out, f"join_{granularity}", "", a, 1)
            if a >= start(lost):  # began in the period it ends in
                _add(out, f"lost_{granularity}", "", lost, -1)
    return out


Grouped = dict[tuple[str, Day], list[tuple[int, int]]]  # (slice, day) -> (column, n) pairs


def _grouped(partial: Partial) -> Grouped:
    out: Grouped = {}
    for (column, slice_, day), n in partial.items():
        if n:
            out.setdefault((slice_, day), []).append((_COLUMN[column], n))
    return out


def _count(member: Member, found: list[Spell], sign: int, out: Counts) -> None:
    """Add `sign` times the counters of the spells `found` of `member` to `out`. A class
    that never changes gives the same counters under another name: computed once."""
    window = member.window
    assert window is not None
    fixed: Grouped | None = None
    for dimension, changes, default in (
        ("tier", [(d, v) for d, _, _, v in member.tier], UNSCORED),
        ("segment", [(d, v) for d, _, _, v in member.segment], UNSCORED),
        ("channel", [], member.channel_value),
    ):
        classes = _Classes(changes, default)
        if len(classes.values) == 1:
            if fixed is None:
                fixed = _grouped(_fixed(found))
            grouped, named = fixed, classes.values[0]
        else:
            grouped, named = _grouped(_dimension(found, classes)), ""
        for (slice_, day), cells in grouped.items():
            key = (window, dimension, named or slice_, day)
            row = out.get(key)
            if row is None:
                row = out[key] = [0] * len(COLUMNS)
            for column, n in cells:
                row[column] += sign * n


def _spells_of(member: Member | None) -> list[Spell]:
    if member is None or member.window is None or not member.days:
        return []
    return _with_before(spells(member.days, member.window))


def contribution(member: Member | None) -> Counts:
    """The counters a customer adds: per (window, dimension, slice, day), a value per
    column of COLUMNS."""
    out: Counts = {}
    if member is not None:
        _count(member, _spells_of(member), 1, out)
    return out


def _same_classes(old: Member, new: Member) -> bool:
    return (old.window, old.tier, old.segment, old.channel) == (
        new.window,
        new.tier,
        new.segment,
        new.channel,
    )


def difference(pairs: Iterable[tuple[Member | None, Member | None]]) -> Counts:
    """What moving each customer from the first inputs to the second adds to the counters
    (rows that cancel out left out). When only the purchase days changed, only the spells
    that changed are recounted."""
    out: Counts = {}
    for old, new in pairs:
        if old == new:
            continue
        gone, came = _spells_of(old), _spells_of(new)
        if old is not None and new is not None and _same_classes(old, new):
            kept = set(gone) & set(came)
            gone = [s for s in gone if s not in kept]
            came = [s for s in came if s not in kept]
        if old is not None and gone:
            _count(old, gone, -1, out)
        if new is not None and came:
            _count(new, came, 1, out)
    return {key: row for key, row in out.items() if any(row)}


# --------------------------------------------------------------------------- reads


@dataclass
class BaseCounts:
    at_start: int = 0
    at_end: int = 0
    new: int = 0
    won_back: int = 0
    active: int = 0
    lost: int = 0

    def any(self) -> bool:
        return any((self.at_start, self.at_end, self.new, self.won_back, self.active, self.lost))


class _Running:
    """One slice's running sums over the days first .. first + span - 1."""

    def __init__(
        self, start: list[int], days: list[list[int] | None], first: Day, granularity: str
    ) -> None:
        suffix = "" if granularity == "day" else f"_{granularity}"
        level = _COLUMN["level"]
        corrections = _COLUMN[f"level{suffix}"] if suffix else None
        flows = [
            [_COLUMN[f], *([_COLUMN[f"{f}{suffix}"]] if suffix else [])]
            for f in ("new", "won", "lost")
        ]
        flows.append([_COLUMN[f"join{suffix}"]] if suffix else [])
        self.first = first

        def running(columns: list[int], initial: int = 0) -> list[int]:
            daily = (sum(v[c] for c in columns) if v is not None else 0 for v in days)
            return list(accumulate(daily, initial=initial))[1:]

        # Active on the day under the class of the day, and of its period's first day.
        self.levels = running([level], start[level])
        both = [level, corrections] if corrections is not None else [level]
        self.corrected = running(both, sum(start[c] for c in both))
        self.sums = [running(columns) for columns in flows]  # new, won, lost, join to the day

    def between(self, i: int, low: Day, high: Day) -> int:
        """Flow i (new, won, lost, join) over the days low .. high."""
        if high < low:
            return 0
        below = self.sums[i][low - self.first - 1] if low > self.first else 0
        return self.sums[i][high - self.first] - below


def period_counts(
    before: dict[str, list[int]],
    rows: dict[tuple[str, Day], list[int]],
    periods: Sequence[tuple[Day, Day]],
    granularity: str,
    first: Day,
) -> dict[tuple[Day, str], BaseCounts]:
    """The counts of every period (first day, last day) and slice, from the counters of
    the days `first` .. the last period's end (`rows`, by slice and day; `first` before every
    period) and the sums of the columns over the days before `first` (`before`, by slice)."""
    if not periods:
        return {}
    span = max(end for _, end in periods) - first + 1
    enter = _COLUMN["enter"]
    out: dict[tuple[Day, str], BaseCounts] = {}
    for slice_ in {s for s, _ in rows} | set(before):
        days = [rows.get((slice_, first + offset)) for offset in range(span)]
        run = _Running(before.get(slice_) or [0] * len(COLUMNS), days, first, granularity)
        for start, end in periods:
            entering = rows.get((slice_, start))
            counts = BaseCounts(
                at_start=run.levels[start - 1 - first] + (entering[enter] if entering else 0),
                at_end=run.corrected[end - first],
                new=run.between(0, start, end),
                won_back=run.between(1, start, end),
                lost=run.between(2, start, end),
                active=run.levels[start - first] + run.between(3, start + 1, end),
            )
            if counts.any():
                out[(start, slice_)] = counts
    return out
