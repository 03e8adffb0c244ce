"""`make run`: broker, PostgreSQL and the four services on this machine; Ctrl-C stops all.

KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, when set, replace the embedded broker and
database. PostgreSQL data stays under ./.data; the embedded broker keeps topics in memory,
so each start is a broker data loss that the outbox relay repairs by publishing the event
store again.

The first start issues an admin API key (scope admin) and a reports:read key for the
dashboard, keeps their tokens in .data/admin-key and .data/dashboard-key (readable by the
owner only) and prints them at every start; the dashboard's address carries the reports:read
key, never the admin one.

While it runs, .data/stack.env (owner-only) holds the stack's KAFKA_BOOTSTRAP_SERVERS,
DATABASE_URL and KEY_SIGNING_SECRET, so `crm` in another shell finds it; a clean stop
removes the file.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import SecretStr

from shared.outbox import open_event_store
from shared.settings import ENV_PREFIX
from tooling import keys
from tooling.embedded import Broker, Database, service_environment
from tooling.registry import NAMES, REGISTRY

SERVICES = tuple((s.name, s.port) for s in REGISTRY)  # (name, port), from the registry
SERVICE_NAMES = NAMES
READY_TIMEOUT = 60.0
STACK_ENV = "stack.env"  # the running stack's settings, for `crm` in another shell


@dataclass
class Running:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_services(
    env: dict[str, str],
    log_dir: Path,
    ports: dict[str, int],
    names: tuple[str, ...] = SERVICE_NAMES,
) -> list[Running]:
    log_dir.mkdir(parents=True, exist_ok=True)
    running = []
    for name in names:
        log_file = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env={**env, "PORT": str(ports[name])},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
        )
        running.append(Running(name, ports[name], process))
    return running


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_ready(services: list[Running], timeout: float = READY_TIMEOUT) -> list[str]:
    """Names of the services still not ready at the deadline (empty: all ready)."""
    deadline = time.monotonic() + timeout
    waiting = {s.name: s for s in services}
    while waiting and time.monotonic() < deadline:
        for name, service in list(waiting.items()):
            if service.process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {service.process.returncode}")
            if is_ready(service.url):
                del waiting[name]
        time.sleep(0.2)  # polling readiness, bounded by the deadline
    return sorted(waiting)


def calendar_lines(rules: dict[str, Any]) -> list[str]:
    """The banner's lines for the SLA calendars in force (GET /v1/sla/policies): zone and
    hours first, so that 09:00-18:00 in the wrong zone is seen at once."""
    lines = []
    for calendar in rules.get("calendars", []):
        if calendar["status"] != "in_force":
            continue
        extras = []
        if calendar["country"]:
            extras.append(f"{calendar['country']} public holidays")
        if calendar["holidays"]:
            extras.append(f"{len(calendar['holidays'])} more closed dates")
        if calendar["working_days"]:
            extras.append(f"{len(calendar['working_days'])} make-up working days")
        if calendar["zone"] == "UTC":  # the default: say so, the team is rarely there
            extras.append("UTC: set SLA_CALENDAR_ZONE or SLA_POLICY_FILE if the team is not")
        line = f"sla calendar {calendar['name']}: {calendar['summary']}"
        lines.append(line + (f" ({', '.join(extras)})" if extras else ""))
    scheduled = sum(
        1
        for kind in ("calendars", "policies")
        for r in rules.get(kind, [])
        if r["status"] == "scheduled"
    )
    if scheduled:
        lines.append(f"sla changes scheduled: {scheduled} (GET /v1/sla/policies)")
    return lines


def sla_calendars(url: str, token: str) -> list[str]:
    """The complaints service's SLA calendars in force, or one line saying why not."""
    request = urllib.request.Request(
        f"{url}/v1/sla/policies", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return calendar_lines(json.loads(response.read()))
    except (OSError, ValueError, KeyError) as error:
        return [f"sla calendars: not readable ({type(error).__name__})"]


def stop_all(services: list[Running]) -> None:
    for service in services:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
    for service in services:
        try:
            service.process.wait(15)
        except subprocess.TimeoutExpired:
            service.process.kill()


async def _active_or_new_token(
    database_url: str, kept: str | None, secret: SecretStr, name: str, scope: str
) -> str:
    """`kept` if the event store knows it as an active key, else a newly issued key."""
    pool = await open_event_store(database_url)
    try:
        async with pool.acquire() as conn, conn.transaction():
            if kept and await keys.is_active(conn, kept):
                return kept
            _, token = await keys.issue_key(conn, name, [scope], secret=secret)
            return token
    finally:
        await pool.close()


def kept_token(
    database_url: str, token_file: Path, secret: SecretStr, name: str, scope: str
) -> str:
    """A dev stack key with one scope, kept in `token_file` (owner-only)."""
    kept = token_file.read_text().strip() if token_file.exists() else None
    token = asyncio.run(_active_or_new_token(database_url, kept, secret, name, scope))
    if token != kept:
        _keep(token_file, token)
    return token


def admin_token(database_url: str, token_file: Path, secret: SecretStr) -> str:
    """The dev stack's admin token, kept in `token_file` (owner-only)."""
    return kept_token(database_url, token_file, secret, "dev-admin", "admin")


def dashboard_token(database_url: str, token_file: Path, secret: SecretStr) -> str:
    """The key the dashboard link carries: reports:read only, so a link pasted into a chat
    or kept in a browser's history gives no more than the dashboard shows."""
    return kept_token(database_url, token_file, secret, "dev-dashboard", "reports:read")


def signing_secret(secret_file: Path) -> SecretStr:
    """KEY_SIGNING_SECRET from the environment, else the one kept in `secret_file` (made on
    the first start): the keys issued stay valid across restarts of the dev stack."""
    given = os.environ.get("KEY_SIGNING_SECRET")
    if given:
        return SecretStr(given)
    if not secret_file.exists():
        _keep(secret_file, secrets.token_urlsafe(48))
    return SecretStr(secret_file.read_text().strip())


def _keep(path: Path, value: str) -> None:
    """Write a secret readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(value + "\n")


DEV_RESCORE_SECONDS = "30"


def _setting(name: str) -> str | None:
    """A setting as the services read it: CRM_<NAME>, else <NAME>."""
    return os.environ.get(f"{ENV_PREFIX}{name}") or os.environ.get(name)


def data_dir() -> Path:
    """CRM_DATA_DIR (default .data): the dev stack's database, keys, logs and settings."""
    return Path(os.environ.get("CRM_DATA_DIR", ".data")).resolve()


def write_stack_env(path: Path, settings: dict[str, str]) -> None:
    """Keep the running stack's settings in `path` (owner-only: it holds the signing secret),
    one NAME=value a line, quoted for a shell (`set -a; . .data/stack.env`)."""
    path.unlink(missing_ok=True)  # a file a killed run left may have other permissions
    _keep(path, "\n".join(f"{name}={shlex.quote(value)}" for name, value in settings.items()))


def read_stack_env(path: Path) -> dict[str, str]:
    """The settings `write_stack_env` kept in `path`."""
    settings = {}
    for line in path.read_text().splitlines():
        name, equals, value = line.partition("=")
        if equals and name.strip():
            settings[name.strip()] = "".join(shlex.split(value))
    return settings


def without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def main() -> None:
    data = data_dir()
    broker: Broker | None = None
    database: Database | None = None
    bootstrap = _setting("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = Broker(
            port=int(os.environ.get("CRM_BROKER_PORT", "9092")),
            log_path=data / "logs" / "broker.log",
        )
        (data / "logs").mkdir(parents=True, exist_ok=True)
        broker.start()
        bootstrap = broker.bootstrap
    database_url = _setting("DATABASE_URL")
    if not database_url:
        database = Database(data / "postgres").start()
        database_url = database.dsn
    secret = signing_secret(data / "key-signing-secret")
    token = admin_token(database_url, data / "admin-key", secret)
    reader = dashboard_token(database_url, data / "dashboard-key", secret)
    ports = {name: int(os.environ.get(f"{name.upper()}_PORT", port)) for name, port in SERVICES}
    environment = service_environment(
        bootstrap,
        database_url,
        KEY_SIGNING_SECRET=secret.get_secret_value(),
        # A dev stack re-scores every half minute, so tiers and values follow what one loads
        # (`make demo`) at once; production keeps SCORING_RESCORE_SECONDS' default.
        SCORING_RESCORE_SECONDS=_setting("SCORING_RESCORE_SECONDS") or DEV_RESCORE_SECONDS,
    )
    services = start_services(environment, data / "logs", ports)

    def shutdown(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)  # even if started with SIGINT ignored (nohup, &)
    try:
        print(f"broker    {bootstrap}\ndatabase  {without_password(database_url)}")
        print(f"logs      {data / 'logs'}")
        late = wait_ready(services)
        for service in services:
            state = "NOT READY" if service.name in late else "ready"
            print(f"{service.name:<11} {service.url}  (docs {service.url}/docs)  {state}")
        complaints = next(s for s in services if s.name == "complaints")
        if complaints.name not in late:
            print("\n".join(sla_calendars(complaints.url, token)))
        print(f"admin key   {token}  (kept in {data / 'admin-key'})")
        print(f"dashboard   http://127.0.0.1:{ports['reporting']}/#key={reader}")
        print(f"            (a reports:read key, kept in {data / 'dashboard-key'})")
        write_stack_env(
            data / STACK_ENV,
            {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "DATABASE_URL": database_url,
                "KEY_SIGNING_SECRET": secret.get_secret_value(),
            },
        )
        print(f"settings    {data / STACK_ENV}  (`crm` in another shell reads them)")
        print("Ctrl-C stops everything.", flush=True)
        while all(s.process.poll() is None for s in services):
            time.sleep(0.5)  # supervising children until Ctrl-C
        dead = [s.name for s in services if s.process.poll() is not None]
        print(f"stopped: {', '.join(dead)} exited; see the logs", file=sys.stderr)
    except KeyboardInterrupt:
        # A second Ctrl-C must not cut the cleanup short (and leave servers running).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("\nstopping...")
    finally:
        (data / STACK_ENV).unlink(missing_ok=True)  # nothing listens there any more
        stop_all(services)
        if broker is not None:
            broker.stop()
        if database is not None:
            database.stop()


if __name__ == "__main__":
    main()
