"""The customer-base counters (services/reporting/base.py) against the definitions applied
customer by customer, day by day: random histories, every granularity and slice, and
inputs learnt in any order."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import date, timedelta

import pytest

from services.reporting import kpi
from services.reporting.base import (
    COLUMNS,
    UNSCORED,
    BaseCounts,
    Member,
    difference,
    latest_channel,
    merge_classes,
    period_counts,
)
from services.reporting.kpi import Granularity

FIRST = date(2024, 1, 1)


def brute_force(
    members: dict[str, Member], periods: list[tuple[date, date]], dimension: str | None
) -> dict[tuple[date, str], BaseCounts]:
    """docs/domain.md, "The customer base", literally: customer by customer."""
    out: dict[tuple[date, str], BaseCounts] = {}
    for m in members.values():
        assert m.window is not None
        window = m.window
        bought = {date.fromordinal(d) for d in m.days}

        active_days = {p + timedelta(days=k) for p in bought for k in range(window)}
        lost_days = {
            p + timedelta(days=window)
            for p in bought
            if not any(p + timedelta(days=k) in bought for k in range(1, window + 1))
        }

        def active(day: date, found: set[date] = active_days) -> bool:
            return day in found

        def lost_on(day: date, found: set[date] = lost_days) -> bool:
            return day in found

        def cls(day: date, m: Member = m) -> str:
            if dimension is None:
                return ""
            if dimension == "channel":
                return m.channel_value
            changes = m.tier if dimension == "tier" else m.segment
            if not changes:
                return UNSCORED
            found = [v for d, _, _, v in changes if d <= day.toordinal()]
            return found[-1] if found else changes[0][3]

        first_purchase = min(bought) if bought else None
        for s, end in periods:
            days = [s + timedelta(days=k) for k in range((end - s).days + 1)]
            at_start = active(s - timedelta(days=1))
            c = BaseCounts(
                at_start=at_start,
                at_end=active(end),
                new=first_purchase is not None and s <= first_purchase <= end,
                won_back=any(d in bought for d in days)
                and first_purchase is not None
                and first_purchase < s
                and not at_start,
                active=any(active(d) for d in days),
                lost=at_start and any(lost_on(d) for d in days),
            )
            if c.any():
                into = out.setdefault((s, cls(s)), BaseCounts())
                for f in ("at_start", "at_end", "new", "won_back", "active", "lost"):
                    setattr(into, f, getattr(into, f) + getattr(c, f))
    return out


def history(rng: random.Random, window: int) -> Member:
    days = sorted(
        {
            (FIRST + timedelta(days=rng.randrange(400))).toordinal()
            for _ in range(rng.randrange(1, 7))
        }
    )
    tiers = sorted(
        {
            (FIRST + timedelta(days=rng.randrange(400))).toordinal(): rng.choice("abc")
            for _ in range(rng.randrange(0, 4))
        }.items()
    )
    changes = tuple((d, 0, "e", v) for d, v in tiers)
    return Member(window, tuple(days), changes, (), (0, "e", rng.choice(["web", "store"])))


def counters(members: list[Member]) -> dict[tuple[int, str, str, int], list[int]]:
    return difference((None, m) for m in members)


def read(
    counts: dict[tuple[int, str, str, int], list[int]],
    dimension: str,
    periods: list[tuple[date, date]],
    granularity: str,
) -> dict[tuple[date, str], BaseCounts]:
    first = min(s for s, _ in periods).toordinal() - 1
    before: dict[str, list[int]] = {}
    rows: dict[tuple[str, int], list[int]] = {}
    for (_, dim, slice_, day), values in counts.items():
        if dim != dimension:
            continue
        if day < first:
            total = before.setdefault(slice_, [0] * len(COLUMNS))
            for i, n in enumerate(values):
                total[i] += n
        else:
            rows[(slice_, day)] = values
    found = period_counts(
        before, rows, [(s.toordinal(), e.toordinal()) for s, e in periods], granularity, first
    )
    return {(date.fromordinal(s), sl): c for (s, sl), c in found.items()}


def total(found: dict[tuple[date, str], BaseCounts]) -> dict[tuple[date, str], BaseCounts]:
    out: dict[tuple[date, str], BaseCounts] = {}
    for (s, _), c in found.items():
        into = out.setdefault((s, ""), BaseCounts())
        for f in ("at_start", "at_end", "new", "won_back", "active", "lost"):
            setattr(into, f, getattr(into, f) + getattr(c, f))
    return out


@pytest.mark.parametrize("window", [5, 30, 45])
@pytest.mark.parametrize("granularity", ["day", "week", "month"])
def test_counters_equal_the_definitions(window: int, granularity: str) -> None:
    rng = random.Random(window * 7 + len(granularity))
    members = {f"c{i}": history(rng, window) for i in range(60)}
    counts = counters(list(members.values()))
    first, last = FIRST + timedelta(days=20), FIRST + timedelta(days=430)
    starts = kpi.period_starts(first, last, Granularity(granularity))
    periods = [
        (s, min(kpi.next_period_start(s, Granularity(granularity)) - timedelta(days=1), last))
        for s in starts
        if s >= first
    ]
    for dimension in ("tier", "channel"):
        assert read(counts, dimension, periods, granularity) == brute_force(
            members, periods, dimension
        )
    assert total(read(counts, "channel", periods, granularity)) == brute_force(
        members, periods, None
    )


def test_learning_the_inputs_in_any_order_gives_the_same_counters() -> None:
    rng = random.Random(3)
    final = history(rng, 20)
    expected = counters([final])
    for _ in range(20):
        steps: list[Member | None] = [None]
        days = list(final.days)
        rng.shuffle(days)
        for k in range(1, len(days) + 1):
            tiers = final.tier[: rng.randrange(len(final.tier) + 1)]
            steps.append(Member(final.window, tuple(sorted(days[:k])), tiers, (), final.channel))
        steps.append(final)
        merged: Counter[tuple[tuple[int, str, str, int], int]] = Counter()
        for key, values in difference(itertools.pairwise(steps)).items():
            for i, n in enumerate(values):
                merged[(key, i)] += n
        got = {k: v for k, v in merged.items() if v}
        want = {(key, i): n for key, values in expected.items() for i, n in enumerate(values) if n}
        assert got == want


def test_a_members_classes_and_channel_merge_as_their_tables_do() -> None:
    """Per day the latest change by (as_of, event id); the channel set last wins."""
    early, late = (10, 100, "e1", "gold"), (10, 200, "e0", "silver")
    other_day = (12, 50, "e2", "bronze")
    assert merge_classes([late], [early, other_day]) == (late, other_day)
    assert merge_classes([other_day, early], [late]) == (late, other_day)
    assert merge_classes([(10, 100, "e2", "a")], [(10, 100, "e1", "b")]) == ((10, 100, "e2", "a"),)
    assert latest_channel((5, "e1", "web"), (4, "e9", "shop")) == (5, "e1", "web")
    assert latest_channel((5, "e1", "web"), (5, "e2", "shop")) == (5, "e2", "shop")
    assert latest_channel(None, (1, "e", "shop")) == (1, "e", "shop")
