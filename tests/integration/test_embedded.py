"""The embedded PostgreSQL the tests and `make run` use: a restart does not leak a server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tooling.embedded import Database

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


def test_a_child_started_with_end_with_parent_ends_with_its_parent() -> None:
    """A killed test run leaves no broker or service behind to join a later run's broker."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from tooling.embedded import end_with_parent\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
            " preexec_fn=end_with_parent)\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the child outlived its killed parent"


def _alive(pid: int) -> bool:
    try:  # a child that ended but is not reaped yet (init reaps it) is a zombie
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
