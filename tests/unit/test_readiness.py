"""Readiness verdicts from held state: what makes a service unready, and what the body shows."""

from __future__ import annotations

import time

from shared.consumer import ConsumerStatus
from shared.outbox import RelayStatus
from shared.service import (
    DATABASE_VERDICT_MAX_AGE,
    DatabaseVerdict,
    _consumer_check,
    _database_check,
    _relay_check,
)
from shared.settings import CommonSettings

SETTINGS = CommonSettings(consumer_max_failed_attempts=3, outbox_backlog_limit=10)


def polling(failures: int = 0, error: str | None = None) -> ConsumerStatus:
    return ConsumerStatus(
        running=True,
        assigned=["crm.purchases/0"],
        last_poll=time.monotonic(),
        last_error=error,
        consecutive_failures=failures,
    )


def test_a_fresh_verdict_is_read_as_it_is() -> None:
    reasons: list[str] = []
    assert _database_check(DatabaseVerdict(True, time.monotonic()), reasons) == "ok"
    assert reasons == []
    down = DatabaseVerdict(False, time.monotonic(), "ConnectionRefusedError")
    assert _database_check(down, reasons) == "unreachable: ConnectionRefusedError"
    assert reasons == ["database unreachable (ConnectionRefusedError)"]


def test_a_verdict_the_check_stopped_refreshing_is_not_trusted() -> None:
    reasons: list[str] = []
    stale = DatabaseVerdict(True, time.monotonic() - DATABASE_VERDICT_MAX_AGE - 5)
    assert _database_check(stale, reasons) == "unknown"
    assert len(reasons) == 1
    assert reasons[0].startswith("database not checked for ")


def test_a_consumer_is_stuck_at_the_bound_not_before() -> None:
    reasons: list[str] = []
    body = _consumer_check(polling(2, "UndefinedTableError"), SETTINGS, True, reasons)
    assert reasons == []
    assert body["consecutive_failures"] == 2
    _consumer_check(polling(3, "UndefinedTableError"), SETTINGS, True, reasons)
    assert reasons == [
        "consumer failed 3 attempts in a row at the same batch (UndefinedTableError); see the log"
    ]


def test_a_consumer_that_does_not_gate_readiness_is_only_shown() -> None:
    reasons: list[str] = []
    body = _consumer_check(polling(7, "DataError"), SETTINGS, False, reasons)
    assert reasons == []
    assert (body["consecutive_failures"], body["last_error"]) == (7, "DataError")


def test_the_relay_error_shows_its_type_only() -> None:
    reasons: list[str] = []
    text = "OSError: Multiple exceptions: [Errno 111] Connect call failed ('10.0.0.5', 5432)"
    body = _relay_check(RelayStatus(True, pending=11, last_error=text), SETTINGS, reasons)
    assert body["last_error"] == "OSError"
    assert reasons == [
        "outbox backlog of 11 events is over its limit (broker slow or away)",
    ]
    assert _relay_check(RelayStatus(True), SETTINGS, [])["last_error"] is None


def test_a_relay_whose_task_ended_is_not_ready() -> None:
    reasons: list[str] = []
    _relay_check(RelayStatus(running=False), SETTINGS, reasons)
    assert reasons == ["outbox relay is not running; see the log"]
