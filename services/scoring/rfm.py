"""RFM scoring (Arthur Hughes) and the named RFM segments. Pure, vectorised with numpy.

Scores are 1-5 by quintile of the current customer population, 5 best:
most recent, most frequent, highest spend.

Ties: a value's score comes from its mid-rank percentile, the share of the population strictly
worse plus half the share equal to it (the "mean" percentile rank, as in
scipy.stats.percentileofscore(kind="mean")):
    score = 1 + floor(5 * (n_worse + n_equal / 2) / n).
Equal values therefore always get equal scores, the result does not depend on input order,
and with distinct values each score holds exactly a fifth of the population (when 5 divides
n). A large block of ties lands on the score of its middle: if 60% of customers bought once,
they all get F = 2. Reversing the order (recency) mirrors the scores, so recency needs no
separate rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

ScoreArray = npt.NDArray[np.int8]
FloatArray = npt.NDArray[np.float64]

SCORE_LEVELS = 5


def quintile_scores(
    values: npt.ArrayLike, reference: npt.ArrayLike | None = None, *, presorted: bool = False
) -> ScoreArray:
    """Score each value 1-5 by its mid-rank percentile in reference (default: values itself).

    Higher values score higher. Pass the population as reference to score a few customers
    against it (for example a customer whose data changed since the last batch); with
    presorted=True the reference is taken as already sorted ascending, which makes scoring
    one customer against a million O(log n) instead of a sort per call.
    """
    scored = _finite_1d(values, "values")
    if reference is None:
        worse, worse_or_equal = _ranks_within(scored)
        size = scored.size
    else:
        population = _finite_1d(reference, "reference")
        if not presorted:
            population = np.sort(population)
        worse = np.searchsorted(population, scored, side="left").astype(np.int64)
        worse_or_equal = np.searchsorted(population, scored, side="right").astype(np.int64)
        size = population.size
    if size == 0:
        if scored.size:
            raise ValueError("cannot score against an empty population")
        return np.zeros(0, dtype=np.int8)
    # Integer arithmetic: 1 + floor(5 (worse + equal/2) / n) = 1 + 5 (worse + worse_or_equal) // 2n.
    scores = 1 + (SCORE_LEVELS * (worse + worse_or_equal)) // (2 * size)
    return np.asarray(np.minimum(scores, SCORE_LEVELS), dtype=np.int8)


def _ranks_within(values: FloatArray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each value, how many values are strictly below it and how many at or below it."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    at_or_below = np.cumsum(counts)
    below = at_or_below - counts
    return below[inverse].astype(np.int64), at_or_below[inverse].astype(np.int64)


def _finite_1d(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array


@dataclass(frozen=True)
class RfmScores:
    recency: ScoreArray
    frequency: ScoreArray
    monetary: ScoreArray

    def codes(self) -> npt.NDArray[np.int16]:
        """Three-digit codes as integers, for example 545 for R=5, F=4, M=5."""
        return rfm_codes(self.recency, self.frequency, self.monetary)


def rfm_scores(
    recency: npt.ArrayLike, frequency: npt.ArrayLike, monetary: npt.ArrayLike
) -> RfmScores:
    """Score a population. recency: time since the last purchase (smaller is better);
    frequency: number of purchases; monetary: amount spent (both larger is better)."""
    return RfmScores(
        recency=quintile_scores(-np.asarray(recency, dtype=np.float64)),
        frequency=quintile_scores(frequency),
        monetary=quintile_scores(monetary),
    )


def rfm_codes(
    recency_score: npt.ArrayLike, frequency_score: npt.ArrayLike, monetary_score: npt.ArrayLike
) -> npt.NDArray[np.int16]:
    r, f, m = (_checked_scores(s) for s in (recency_score, frequency_score, monetary_score))
    return (100 * r + 10 * f + m).astype(np.int16)


def rfm_code(recency_score: int, frequency_score: int, monetary_score: int) -> str:
    """The three-digit code as text, for example "545"."""
    return str(int(rfm_codes(recency_score, frequency_score, monetary_score)))


def _checked_scores(scores: npt.ArrayLike) -> npt.NDArray[np.int16]:
    array = np.asarray(scores, dtype=np.int16)
    if np.any((array < 1) | (array > SCORE_LEVELS)):
        raise ValueError("RFM scores must be in 1..5")
    return array


class Segment(StrEnum):
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALIST = "potential_loyalist"
    NEW = "new"
    PROMISING = "promising"
    NEED_ATTENTION = "need_attention"
    ABOUT_TO_SLEEP = "about_to_sleep"
    AT_RISK = "at_risk"
    CANT_LOSE_THEM = "cant_lose_them"
    HIBERNATING = "hibernating"
    LOST = "lost"


SEGMENT_LABELS: dict[Segment, str] = {
    Segment.CHAMPIONS: "Champions",
    Segment.LOYAL: "Loyal",
    Segment.POTENTIAL_LOYALIST: "Potential Loyalist",
    Segment.NEW: "New",
    Segment.PROMISING: "Promising",
    Segment.NEED_ATTENTION: "Need Attention",
    Segment.ABOUT_TO_SLEEP: "About to Sleep",
    Segment.AT_RISK: "At Risk",
    Segment.CANT_LOSE_THEM: "Can't Lose Them",
    Segment.HIBERNATING: "Hibernating",
    Segment.LOST: "Lost",
}

# Segment map: Putler, "RFM Analysis For Successful Customer Segmentation" (putler.com, RFM
# analysis guide), which places the eleven segments on a grid of the R score against the
# "F & M" score, the average of F and M. Its published ranges (R / FM):
#   Champions 4-5 / 4-5, Loyal 2-5 / 3-5, Potential Loyalist 3-5 / 1-3, New 4-5 / <=1,
#   Promising 3-4 / <=1, Need Attention 2-3 / 2-3, About to Sleep 2-3 / <=2,
#   At Risk <=2 / 2-5, Can't Lose Them <=1 / 4-5, Hibernating 1-2 / 1-2, Lost <=2 / <=2.
# Those ranges overlap, so the table alone does not give one segment per code. The grid
# below is our resolution: every cell is inside the published range of its segment, every
# segment keeps at least one cell, and where ranges overlap the narrower, more specific
# segment wins (New over Potential Loyalist at FM 1; Lost only at the very bottom, R1 FM1).
# FM is the mean of F and M rounded half up, (F + M + 1) // 2, so a customer strong on one of
# the two is rounded in their favour.
_C, _L, _PL, _N, _P = (
    Segment.CHAMPIONS,
    Segment.LOYAL,
    Segment.POTENTIAL_LOYALIST,
    Segment.NEW,
    Segment.PROMISING,
)
_NA, _AS, _AR, _CL, _H, _LO = (
    Segment.NEED_ATTENTION,
    Segment.ABOUT_TO_SLEEP,
    Segment.AT_RISK,
    Segment.CANT_LOSE_THEM,
    Segment.HIBERNATING,
    Segment.LOST,
)
# Rows: R = 5 down to 1; columns: FM = 1 to 5.
_GRID: dict[int, tuple[Segment, Segment, Segment, Segment, Segment]] = {
    5: (_N, _PL, _L, _C, _C),
    4: (_N, _PL, _L, _C, _C),
    3: (_P, _AS, _NA, _L, _L),
    2: (_H, _AS, _NA, _AR, _AR),
    1: (_LO, _H, _AR, _CL, _CL),
}


def frequency_monetary_score(frequency_score: int, monetary_score: int) -> int:
    """Mean of F and M rounded half up (the grid's column)."""
    return (frequency_score + monetary_score + 1) // 2


def segment_for(recency_score: int, frequency_score: int, monetary_score: int) -> Segment:
    for score in (recency_score, frequency_score, monetary_score):
        if not 1 <= score <= SCORE_LEVELS:
            raise ValueError("RFM scores must be in 1..5")
    column = frequency_monetary_score(frequency_score, monetary_score)
    return _GRID[recency_score][column - 1]


SEGMENT_BY_CODE: dict[str, Segment] = {
    f"{r}{f}{m}": segment_for(r, f, m)
    for r in range(1, 6)
    for f in range(1, 6)
    for m in range(1, 6)
}

_SEGMENT_TABLE = np.array(
    [[[segment_for(r, f, m).value for m in range(1, 6)] for f in range(1, 6)] for r in range(1, 6)]
)


def segments_for(
    recency_score: npt.ArrayLike, frequency_score: npt.ArrayLike, monetary_score: npt.ArrayLike
) -> npt.NDArray[np.str_]:
    """Vectorised segment_for: segment codes (Segment values) as a string array."""
    r, f, m = (_checked_scores(s) for s in (recency_score, frequency_score, monetary_score))
    return np.asarray(_SEGMENT_TABLE[r - 1, f - 1, m - 1], dtype=np.str_)
