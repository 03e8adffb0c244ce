"""Statistics the services share (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from fractions import Fraction
from typing import Final

_ONE_MICROSECOND: Final = timedelta(microseconds=1)


def percentile_cont(durations: Sequence[timedelta], fraction: float) -> timedelta | None:
    """The `fraction` percentile (0..1) of `durations` by linear interpolation between the two
    nearest ranks, the same method as PostgreSQL's `percentile_cont(fraction) WITHIN GROUP
    (ORDER BY duration)` (and numpy's default "linear"): with the n values sorted and
    position = fraction * (n - 1), the result is v[floor] + (v[ceil] - v[floor]) *
    (position - floor). Rounded half-to-even to the microsecond (PostgreSQL's interval
    arithmetic may differ by 1 microsecond). None when empty."""
    share = Fraction(str(fraction))
    if not 0 <= share <= 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    ordered = sorted(_microseconds(d) for d in durations)
    if not ordered:
        return None
    position = share * (len(ordered) - 1)
    lower, upper = ordered[math.floor(position)], ordered[math.ceil(position)]
    value = lower + (upper - lower) * (position - math.floor(position))
    return timedelta(microseconds=round(value))


def _microseconds(duration: timedelta) -> int:
    if duration < timedelta(0):
        raise ValueError(f"a duration must not be negative, got {duration}")
    return duration // _ONE_MICROSECOND
