"""Errors: every error answer of the services is an RFC 9457 problem detail."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError


class FieldError(BaseModel):
    """What was wrong with which field. For events, also the event's place in the batch
    (`index`) and its `id`."""

    model_config = ConfigDict(extra="allow")

    field: str
    message: str
    index: int | None = None
    id: str | None = None


class Problem(BaseModel):
    """The problem detail an error answer carries (RFC 9457, with the field errors)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] = []


class ProblemError(Exception):
    """A service answered an error: `problem` says what (its members are also attributes),
    `retry_after` how many seconds to wait before retrying (429, 503), when it said."""

    def __init__(self, problem: Problem, retry_after: float | None = None) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail}")
        self.problem = problem
        self.retry_after = retry_after

    @property
    def type(self) -> str:
        return self.problem.type

    @property
    def title(self) -> str:
        return self.problem.title

    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def detail(self) -> str:
        return self.problem.detail

    @property
    def errors(self) -> list[FieldError]:
        return self.problem.errors


def raise_for_problem(response: httpx.Response) -> None:
    """Raise ProblemError for an error answer; an answer that is not a problem detail (a
    proxy's page) becomes one with its status and the start of its text."""
    if response.is_success:
        return
    problem: Problem
    try:
        body: Any = response.json()
        problem = Problem.model_validate(body)
    except (ValueError, ValidationError):
        problem = Problem(
            title=response.reason_phrase or "Error",
            status=response.status_code,
            detail=response.text[:500],
        )
    raise ProblemError(problem, _retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return float(value)
    except ValueError:
        return None  # absent, or an HTTP date (the services send seconds)
