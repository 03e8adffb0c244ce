"""`crm` from a second shell: it finds the running dev stack (`make run`) by itself, and a
database or broker it cannot reach is one line on stderr, never a traceback."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import purchase, wait_until
from tooling.devstack import SERVICES
from tooling.embedded import free_port

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
STARTED = "Ctrl-C stops everything."
START_TIMEOUT = 240.0  # initdb and four services on a busy machine
# What a second shell has: none of the stack's settings.
STACK_VARIABLES = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "KEY_SIGNING_SECRET")


@dataclass
class DevStack:
    data: Path
    ports: dict[str, int]
    process: subprocess.Popen[str]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def second_shell(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STACK_VARIABLES}
    return {**env, **extra}


def crm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tooling.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for_line(process: subprocess.Popen[str], line: str, timeout: float) -> list[str]:
    """The output up to `line`; fails if the process ends or the deadline passes first."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for text in process.stdout:
            lines.put(text.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    while True:
        try:
            text = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {line!r} within {timeout}s; output: {seen}") from None
        if text is None:
            raise AssertionError(f"the dev stack exited ({process.wait()}); output: {seen}")
        seen.append(text)
        if text == line:
            return seen


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[DevStack]:
    """`make run` as a user starts it: `python -m tooling.devstack`, on free ports."""
    data = tmp_path / "data"
    ports = {name: free_port() for name, _ in SERVICES}
    env = second_shell(
        CRM_DATA_DIR=str(data),
        CRM_BROKER_PORT=str(free_port()),
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "tooling.devstack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack = DevStack(data, ports, process)
    try:
        wait_for_line(process, STARTED, START_TIMEOUT)
        yield stack
    finally:
        stack.stop()


async def test_crm_in_a_second_shell_finds_the_running_dev_stack(dev_stack: DevStack) -> None:
    stack_env = dev_stack.data / "stack.env"
    admin = (dev_stack.data / "admin-key").read_text().strip()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{dev_stack.ports['ingest']}",
        headers={"Authorization": f"Bearer {admin}"},
    ) as client:
        answer = await client.post("/v1/events", json=[purchase("devstack-1", "12.50")])
        assert answer.status_code < 300, answer.text

    shell = second_shell(CRM_DATA_DIR=str(dev_stack.data))

    async def lag_after_one_purchase() -> subprocess.CompletedProcess[str] | None:
        shown = await asyncio.to_thread(crm, "lag", env=shell)
        assert shown.returncode == 0, shown.stderr
        # One purchase posted: crm.purchases ends at 1 and scoring has applied it.
        rows = [line.split() for line in shown.stdout.splitlines()]
        return shown if ["scoring", "crm.purchases", "1", "1", "0"] in rows else None

    shown = await wait_until(lag_after_one_purchase, timeout=120, what="scoring's lag row")
    assert shown.stdout.split()[:5] == ["consumer", "topic", "applied", "up", "to"]
    assert f"using the dev stack's settings from {stack_env}" in shown.stderr
    assert "Traceback" not in shown.stderr
    assert stat.S_IMODE(stack_env.stat().st_mode) == 0o600  # it holds the signing secret

    assert dev_stack.stop() == 0
    assert not stack_env.exists()  # a stopped stack leaves nothing `crm` would try


def test_an_unreachable_database_is_one_line_without_its_password(broker: Any) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://crm:pw-not-shown@127.0.0.1:{port}/crm"
    shown = crm("lag", env=second_shell(DATABASE_URL=url, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap))
    assert shown.returncode == 1
    assert shown.stdout == ""
    assert shown.stderr.count("\n") == 1, shown.stderr
    assert "Traceback" not in shown.stderr
    assert f"cannot reach PostgreSQL at postgresql://crm:***@127.0.0.1:{port}/crm" in shown.stderr
    assert "set DATABASE_URL" in shown.stderr
    assert "pw-not-shown" not in shown.stderr


def test_an_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    shell = second_shell(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}", CRM_DATA_DIR=str(tmp_path))
    shown = crm("topics", env=shell)
    assert shown.returncode == 1
    assert shown.stderr.count("\n") == 1, shown.stderr
    assert "Traceback" not in shown.stderr
    assert f"cannot reach the Kafka broker at 127.0.0.1:{port}" in shown.stderr
    assert "set KAFKA_BOOTSTRAP_SERVERS" in shown.stderr


def test_an_invalid_setting_is_one_line_without_its_value() -> None:
    shell = second_shell(DATABASE_URL="postgresql://crm@127.0.0.1:1/crm", KEY_SIGNING_SECRET="x-7q")
    shown = crm("keys", "list", env=shell)
    assert shown.returncode == 1
    assert shown.stderr.count("\n") == 1, shown.stderr
    assert shown.stderr.startswith("crm: KEY_SIGNING_SECRET: ")
    assert "x-7q" not in shown.stderr
