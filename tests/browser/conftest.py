"""Fixtures of the browser tests: headless Chromium (Debian's package, installed on demand
by scripts/ensure-chromium.sh) and reporting with its ingest in front of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.test_reporting import Reporting, running_reporting
from tooling.embedded import Broker

ENSURE_CHROMIUM = Path(__file__).parents[2] / "scripts" / "ensure-chromium.sh"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary ($CHROMIUM, or Debian's), installed with a CJK font by
    scripts/ensure-chromium.sh when missing (apt-get: the tests may run as root). Where it
    cannot be installed the browser tests are skipped, loudly: a warning in the summary and
    the reason in the skip."""
    result = subprocess.run(
        ["bash", str(ENSURE_CHROMIUM)], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode == 0 and result.stdout.strip():
        return result.stdout.strip().splitlines()[-1]
    message = (
        "BROWSER TESTS SKIPPED: headless Chromium is missing and could not be installed "
        f"({ENSURE_CHROMIUM.name} exited {result.returncode}: {result.stderr.strip()[-500:]}). "
        "Install Debian's 'chromium' package, or set CHROMIUM to a Chromium binary."
    )
    warnings.warn(message, stacklevel=1)
    pytest.skip(message)


@pytest.fixture(scope="session")
def faketime() -> str:
    """libfaketime's `faketime` (Debian's package), to run the browser with a clock of its
    own: installed with apt-get when missing and the tests run as root; else the tests that
    need it are skipped, loudly."""
    found = shutil.which("faketime")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "faketime"],
            capture_output=True,
            timeout=600,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("faketime")
    if found is None:
        message = "BROWSER CLOCK TEST SKIPPED: faketime is missing (apt-get install faketime)"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    return found


@pytest.fixture
async def reporting(broker: Broker, database_url: str, tmp_path: Path) -> AsyncIterator[Reporting]:
    async with running_reporting(broker, database_url, tmp_path) as running:
        yield running
