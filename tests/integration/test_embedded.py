"""The embedded PostgreSQL the tests and `make run` use: a restart does not leak a server."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from shared.embedded import Database

pytestmark = pytest.mark.embedded_only


def test_a_restarted_database_stops_for_good(tmp_path: Path) -> None:
    database = Database(tmp_path / "pg").start()
    database.restart()
    pid_file = tmp_path / "pg" / "postmaster.pid"
    postmaster = int(pid_file.read_text().split()[0])
    database.stop()
    assert not pid_file.exists()
    # pg_ctl returns once the PID file is gone; the process itself ends a moment later (and
    # may linger as a zombie where PID 1 does not reap orphans).
    deadline = time.monotonic() + 30
    while running(postmaster) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(postmaster)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
