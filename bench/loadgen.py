"""A small HTTP/1.1 keep-alive load generator on asyncio streams.

A general client (httpx) costs more CPU per request than the servers it measures on a
2-core machine; this one only writes a prepared request and reads a Content-Length body, so
more of the machine goes to the server under test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")

    def summary(self, items_per_request: int = 1) -> dict[str, float]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "requests_per_s": round(self.rate, 1),
            "items_per_s": round(self.rate * items_per_request, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
        }


# The admin token the bench's services accept (bench/run.py sets ADMIN_KEY_SHA256 to its hash).
BENCH_TOKEN = "crm_bench00000000000_" + "b" * 43
AUTH = {"Authorization": f"Bearer {BENCH_TOKEN}"}


def request_bytes(
    method: str, path: str, body: bytes = b"", content_type: str = "application/json"
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {BENCH_TOKEN}\r\n"
    if body or method == "POST":
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def run_load(
    port: int | Sequence[int],
    make_request: Callable[[int], bytes],
    *,
    clients: int,
    duration: float,
    max_requests: int | None = None,
) -> LoadResult:
    """`clients` connections sending requests back to back for `duration` seconds (or until
    `max_requests`); make_request(n) builds the n-th request. Given several ports (replicas
    of a service), the connections are spread over them in turn, as a load balancer would."""
    ports = [port] if isinstance(port, int) else list(port)
    result = LoadResult()
    counter = iter(range(10**12))
    deadline = time.perf_counter() + duration

    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                n = next(counter)
                if max_requests is not None and n >= max_requests:
                    return
                started = time.perf_counter()
                writer.write(make_request(n))
                status = await _read_response(reader)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.requests += 1
                if status >= 400:
                    result.failures += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(ports[i % len(ports)]) for i in range(clients)))
    result.seconds = time.perf_counter() - started
    return result
