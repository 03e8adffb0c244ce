"""Tests of services.scoring.rfm: quintile scores, codes and the segment map."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring import rfm
from services.scoring.rfm import Segment

ALL_SCORES = list(itertools.product(range(1, 6), repeat=3))


# --------------------------------------------------------------------------------------------
# Quintile scores
# --------------------------------------------------------------------------------------------


def test_distinct_values_fill_exact_quintiles() -> None:
    scores = rfm.quintile_scores([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    assert scores.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_ties_share_the_score_of_their_mid_rank() -> None:
    # Six 1s: mid-rank percentile (0 + 6/2) / 10 = 0.3 -> 1 + floor(1.5) = 2.
    # 2: (6 + 0.5) / 10 = 0.65 -> 4; 3: 0.75 -> 4; 4: 0.85 -> 5; 5: 0.95 -> 5.
    scores = rfm.quintile_scores([1, 1, 1, 1, 1, 1, 2, 3, 4, 5])
    assert scores.tolist() == [2, 2, 2, 2, 2, 2, 4, 4, 5, 5]


def test_all_equal_values_score_three_and_single_customer_scores_three() -> None:
    assert rfm.quintile_scores([7.0] * 9).tolist() == [3] * 9
    assert rfm.quintile_scores([7.0]).tolist() == [3]
    assert rfm.quintile_scores([]).tolist() == []


def test_scoring_against_a_reference_matches_scoring_within_it() -> None:
    rng = np.random.default_rng(1)
    population = np.round(rng.gamma(1.0, 50.0, 1000))
    within = rfm.quintile_scores(population)
    against = rfm.quintile_scores(population[:20], reference=population)
    assert against.tolist() == within[:20].tolist()


def test_empty_reference_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty population"):
        rfm.quintile_scores([1.0], reference=[])


def test_non_finite_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        rfm.quintile_scores([1.0, float("nan")])


@given(st.lists(st.integers(min_value=-50, max_value=50), min_size=1, max_size=200))
def test_scores_are_monotone_tie_consistent_and_order_free(values: list[int]) -> None:
    scores = rfm.quintile_scores(values)
    assert set(scores.tolist()) <= {1, 2, 3, 4, 5}
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(scores[order]) >= 0)
    by_value: dict[int, set[int]] = {}
    for value, score in zip(values, scores.tolist(), strict=True):
        by_value.setdefault(value, set()).add(score)
    assert all(len(found) == 1 for found in by_value.values())
    assert rfm.quintile_scores(values[::-1]).tolist() == scores[::-1].tolist()


@given(st.integers(min_value=1, max_value=60))
def test_distinct_values_put_a_fifth_in_each_score(fifths: int) -> None:
    scores = rfm.quintile_scores(np.arange(5 * fifths))
    assert np.bincount(scores, minlength=6)[1:].tolist() == [fifths] * 5


def test_rfm_scores_reverse_recency() -> None:
    scores = rfm.rfm_scores(
        recency=[1, 10, 100, 1000, 5],  # days since the last purchase: 1 is best
        frequency=[1, 2, 3, 4, 5],
        monetary=[50, 40, 30, 20, 10],
    )
    assert scores.recency.tolist() == [5, 3, 2, 1, 4]
    assert scores.frequency.tolist() == [1, 2, 3, 4, 5]
    assert scores.monetary.tolist() == [5, 4, 3, 2, 1]
    assert scores.codes().tolist() == [515, 324, 233, 142, 451]


def test_population_of_a_million_is_scored() -> None:
    rng = np.random.default_rng(2)
    scores = rfm.rfm_scores(
        rng.integers(0, 730, 1_000_000), rng.poisson(3, 1_000_000), rng.gamma(2, 50, 1_000_000)
    )
    assert scores.monetary.size == 1_000_000
    assert np.bincount(scores.monetary, minlength=6)[1:].tolist() == [200_000] * 5


# --------------------------------------------------------------------------------------------
# Codes and segments
# --------------------------------------------------------------------------------------------


def test_code_is_three_digits() -> None:
    assert rfm.rfm_code(5, 4, 3) == "543"
    assert rfm.rfm_codes([1, 5], [1, 5], [1, 5]).tolist() == [111, 555]
    with pytest.raises(ValueError, match=r"in 1\.\.5"):
        rfm.rfm_code(0, 4, 3)


def test_every_one_of_the_125_codes_maps_to_exactly_one_segment() -> None:
    codes = {f"{r}{f}{m}" for r, f, m in ALL_SCORES}
    assert len(codes) == 125
    assert set(rfm.SEGMENT_BY_CODE) == codes
    assert all(isinstance(segment, Segment) for segment in rfm.SEGMENT_BY_CODE.values())


def test_every_segment_is_reachable() -> None:
    assert set(rfm.SEGMENT_BY_CODE.values()) == set(Segment)
    assert set(rfm.SEGMENT_LABELS) == set(Segment)


@pytest.mark.parametrize(
    ("code", "segment"),
    [
        ("555", Segment.CHAMPIONS),
        ("444", Segment.CHAMPIONS),
        ("434", Segment.CHAMPIONS),  # FM = (3 + 4 + 1) // 2 = 4: half rounds up
        ("433", Segment.LOYAL),
        ("355", Segment.LOYAL),
        ("522", Segment.POTENTIAL_LOYALIST),
        ("511", Segment.NEW),
        ("411", Segment.NEW),
        ("412", Segment.POTENTIAL_LOYALIST),  # FM = (1 + 2 + 1) // 2 = 2
        ("311", Segment.PROMISING),
        ("333", Segment.NEED_ATTENTION),
        ("322", Segment.ABOUT_TO_SLEEP),
        ("255", Segment.AT_RISK),
        ("133", Segment.AT_RISK),
        ("155", Segment.CANT_LOSE_THEM),
        ("211", Segment.HIBERNATING),
        ("122", Segment.HIBERNATING),
        ("111", Segment.LOST),
    ],
)
def test_segment_map_cells(code: str, segment: Segment) -> None:
    r, f, m = (int(digit) for digit in code)
    assert rfm.segment_for(r, f, m) is segment


def test_vectorised_segments_match_the_scalar_map() -> None:
    r, f, m = (np.array(column) for column in zip(*ALL_SCORES, strict=True))
    vectorised = rfm.segments_for(r, f, m)
    assert vectorised.tolist() == [rfm.segment_for(*scores).value for scores in ALL_SCORES]
