"""The embedded PostgreSQL the tests and `make run` use: a restart does not leak a server."""

from __future__ import annotations

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
    assert not psutil.pid_exists(postmaster)
