"""Answers kept per version of the read model.

A dashboard that many people keep open asks the same few questions on every refresh, and
until the fold applies something the answers cannot change: each is kept with the version of
the read model it was computed at (store.read_model_version: the consumer's offsets, which
every applied batch moves in its own transaction, and the base counters' state) and served
again while the version is the same. A version read before the computation can only be older
than the data computed, so an answer is never older than the version it is kept under.

Bounded by the bytes kept, least recently used forgotten first. (A dict in insertion order is
the LRU here: cachetools would do the same in more code than this needs.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    """A response's body, media type and own headers."""

    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


class AnswerMemo:
    """At most `budget_bytes` of answers, each under its question and the version it holds."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.size = 0
        self._kept: OrderedDict[Hashable, tuple[Hashable, Answer]] = OrderedDict()

    def get(self, question: Hashable, version: Hashable) -> Answer | None:
        kept = self._kept.get(question)
        if kept is None or kept[0] != version:
            return None
        self._kept.move_to_end(question)
        return kept[1]

    def put(self, question: Hashable, version: Hashable, answer: Answer) -> None:
        self._forget(question)
        if len(answer.body) > self.budget:
            return
        self._kept[question] = (version, answer)
        self.size += len(answer.body)
        while self.size > self.budget:
            self._forget(next(iter(self._kept)))

    def _forget(self, question: Hashable) -> None:
        kept = self._kept.pop(question, None)
        if kept is not None:
            self.size -= len(kept[1].body)
