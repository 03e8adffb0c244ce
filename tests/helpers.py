"""Helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.auth import token_sha256

T = TypeVar("T")
_ids = itertools.count()


# The admin token every test service accepts: the fixtures set ADMIN_KEY_SHA256 to its hash.
TEST_TOKEN = "crm_7e57000000000000_" + "t" * 43
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def mistyped(token: str) -> str:
    """`token` with its last character changed (to one it surely is not)."""
    return token[:-1] + ("B" if token.endswith("A") else "A")


def api_client(**options: Any) -> httpx.AsyncClient:
    """An HTTP client that authenticates with the test admin token."""
    headers = {**AUTH, **options.pop("headers", {})}
    return httpx.AsyncClient(headers=headers, **options)


async def wait_until(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns a truthy value; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = await probe()
        except (httpx.HTTPError, OSError) as error:
            last = error
        else:
            if result:
                return result
            last = result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def event(
    type_name: str,
    subject: str,
    data: dict[str, Any],
    *,
    time: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or f"evt-{next(_ids)}-{time_ns()}",
        "source": "tests",
        "type": type_name,
        "time": (time or datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


def time_ns() -> int:
    return __import__("time").time_ns()


def purchase(subject: str, amount: str, *, order: str | None = None, **kw: Any) -> dict[str, Any]:
    data = {"order_id": order or f"o-{next(_ids)}", "amount": amount, "currency": "USD"}
    return event("crm.purchase.completed", subject, data, **kw)


async def produce_raw(bootstrap: str, topic: str, values: list[bytes], key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, *, timeout: float = 10.0) -> list[Any]:
    """Every record on `topic` up to its high watermark (read without a group)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return []  # (aiokafka 0.14's stop() raises CancelledError with no assignment)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        done: set[TopicPartition] = set()
        while len(done) < len(tps) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None and await consumer.position(tp) >= hw:
                    done.add(tp)
        return records
    finally:
        await consumer.stop()


@dataclass
class ServiceProcess:
    """One service running as a process, as `make run` starts it."""

    name: str
    env: dict[str, str]
    log_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            env={"ADMIN_KEY_SHA256": token_sha256(TEST_TOKEN), **self.env, "PORT": str(self.port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async with api_client(base_url=self.url, timeout=2) as client:

            async def ready() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited: {self.log_tail()}")
                return (await client.get("/readyz")).status_code == 200

            await wait_until(ready, timeout=timeout, what=f"{self.name} ready")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / f"{self.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
