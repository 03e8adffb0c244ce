"""The KPI answers kept per read-model version (services/reporting/memo.py): served only
under the version they were computed at, bounded by bytes, least recently used first out."""

from __future__ import annotations

from services.reporting.memo import Answer, AnswerMemo


def answer(size: int, fill: bytes = b"x") -> Answer:
    return Answer(fill * size, "application/json")


def test_an_answer_is_served_only_under_its_version() -> None:
    memo = AnswerMemo(budget_bytes=100)
    memo.put("q", "v1", answer(10))
    assert memo.get("q", "v1") == answer(10)
    assert memo.get("q", "v2") is None  # the fold applied something since
    assert memo.get("other", "v1") is None


def test_a_newer_version_replaces_the_answer_and_its_bytes() -> None:
    memo = AnswerMemo(budget_bytes=100)
    memo.put("q", "v1", answer(30))
    memo.put("q", "v2", answer(20, b"y"))
    assert memo.get("q", "v1") is None
    assert memo.get("q", "v2") == answer(20, b"y")
    assert memo.size == 20  # not 50: the old answer's bytes are given back


def test_the_least_recently_used_goes_first_when_over_budget() -> None:
    memo = AnswerMemo(budget_bytes=100)
    memo.put("a", "v", answer(40))
    memo.put("b", "v", answer(40))
    assert memo.get("a", "v") is not None  # a is now the most recently used
    memo.put("c", "v", answer(40))  # 120 > 100: b, the least recently used, goes
    assert memo.get("b", "v") is None
    assert memo.get("a", "v") is not None
    assert memo.get("c", "v") is not None
    assert memo.size == 80


def test_an_answer_larger_than_the_budget_is_not_kept_and_evicts_nothing() -> None:
    memo = AnswerMemo(budget_bytes=100)
    memo.put("a", "v", answer(60))
    memo.put("big", "v", answer(101))
    assert memo.get("big", "v") is None
    assert memo.get("a", "v") is not None
    assert memo.size == 60


def test_a_zero_budget_keeps_nothing() -> None:
    memo = AnswerMemo(budget_bytes=0)
    memo.put("q", "v", answer(1))
    assert memo.get("q", "v") is None
    assert memo.size == 0
