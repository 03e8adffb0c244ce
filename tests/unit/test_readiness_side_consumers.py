"""Readiness judges a service's side consumers (complaints' activity consumer) like its main
one: one stuck on a failing batch, or not polling, makes the service unready with its name in
the reason (pure: readiness reads only state the service holds)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from services.complaints.main import SPEC
from shared.consumer import ConsumerStatus
from shared.service import Resources, _readiness
from shared.settings import CommonSettings


def app_with(side: ConsumerStatus) -> Any:
    settings = CommonSettings(consumer_max_failed_attempts=3)
    res = Resources(
        settings=settings,
        caches=None,
        pool=None,  # type: ignore[arg-type]
        keys=None,  # type: ignore[arg-type]
        failed_authentications=None,  # type: ignore[arg-type]
    )
    res.side_consumers["complaints-activity"] = SimpleNamespace(status=side)  # type: ignore[assignment]
    return SimpleNamespace(state=SimpleNamespace(resources=res))


def healthy() -> ConsumerStatus:
    return ConsumerStatus(running=True, assigned=["crm.purchases-0"], last_poll=time.monotonic())


def test_a_healthy_side_consumer_leaves_the_service_ready() -> None:
    checks = _readiness(app_with(healthy()), SPEC)
    assert checks["ready"] is True
    assert checks["consumer complaints-activity"]["partitions"] == 1


def test_a_side_consumer_stuck_on_a_batch_makes_the_service_unready() -> None:
    stuck = healthy()
    stuck.consecutive_failures, stuck.last_error = 3, "UndefinedTableError"
    checks = _readiness(app_with(stuck), SPEC)
    assert checks["ready"] is False
    assert checks["reason"] == (
        "complaints-activity: consumer failed 3 attempts in a row at the same batch "
        "(UndefinedTableError); see the log"
    )


def test_a_side_consumer_that_stopped_polling_makes_the_service_unready() -> None:
    stopped = healthy()
    stopped.running = False
    checks = _readiness(app_with(stopped), SPEC)
    assert checks["reason"] == "complaints-activity: consumer is not polling the broker"
