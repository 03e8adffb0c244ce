"""Read your writes: receipts for accepted events, and reads that wait until a receipt is
applied.

A 202 from ingest carries a receipt: for each (topic, partition) its events went to, the
highest log number (`seq`) among them, as `<log>:<topic>:<partition>:<seq>` items joined by
commas. A relay publishes a log in order per partition, and a consumer stores, with every
commit, the highest number it applied per (topic, partition, log) (`log_marks.high`). So a
receipt item is applied by a service exactly when that stored number reached it: no clock,
no guess. A GET that sends the receipt in `X-CRM-Min-Position` waits (at most
`X-CRM-Max-Wait` seconds, bounded by READ_WAIT_MAX_SECONDS) until every item on a topic the
service reads is applied, then answers; `X-CRM-Position` says `reached` or `not-reached`
(the answer then is what the model holds at that moment). Items on topics the service does
not read are not waited for.

The partition is the one the relay will choose (murmur2 of the customer id, Kafka's default
partitioner) over the topic's partition count as the relay last saw it, or TOPIC_PARTITIONS
before the relay has talked to the broker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import kafka
from shared.auth import KeyRing, Principal
from shared.http import API_PREFIX, error_response

MIN_POSITION_HEADER = "x-crm-min-position"
MAX_WAIT_HEADER = "x-crm-max-wait"
POSITION_HEADER = "x-crm-position"
MAX_ITEMS = 1000  # topics x partitions of a deployment, with room
_ITEM = re.compile(r"([a-z0-9_]{1,63}):([a-z0-9._-]{1,249}):(\d{1,6}):(\d{1,19})")


@dataclass(frozen=True)
class Position:
    log: str
    topic: str
    partition: int
    seq: int


def receipt(
    log: str, stored: Iterable[tuple[str, str, int]], partition_count: Callable[[str], int]
) -> str:
    """The receipt of stored events, given as (topic, customer id, seq)."""
    highest: dict[tuple[str, int], int] = {}
    for topic, subject, seq in stored:
        where = (topic, kafka.partition_for(subject.encode(), partition_count(topic)))
        highest[where] = max(highest.get(where, 0), seq)
    return ",".join(f"{log}:{t}:{p}:{seq}" for (t, p), seq in sorted(highest.items()))


def parse_receipt(text: str) -> list[Position]:
    """The positions of a receipt; ValueError for anything a receipt cannot be."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or len(items) > MAX_ITEMS:
        raise ValueError(f"a receipt has 1 to {MAX_ITEMS} items")
    positions = []
    for item in items:
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"'{item[:80]}' is not <log>:<topic>:<partition>:<seq>")
        positions.append(Position(match[1], match[2], int(match[3]), int(match[4])))
    return positions


def pending(positions: list[Position], highs: dict[tuple[str, str, int], int]) -> list[Position]:
    """The positions not applied yet, given the stored highs per (log, topic, partition)."""
    return [p for p in positions if highs.get((p.log, p.topic, p.partition), 0) < p.seq]


class ReadYourWritesMiddleware:
    """Holds a GET of /v1 that carries a receipt until the service applied it (bounded).
    Only a caller with a valid key is held: a wait costs the service a look at its marks
    every 100 ms, which nobody without a key may make it spend."""

    def __init__(self, app: ASGIApp, max_wait_seconds: float) -> None:
        self.app = app
        self.max_wait = max_wait_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted = _header(scope, MIN_POSITION_HEADER) if _is_api_read(scope) else None
        if wanted is None:
            await self.app(scope, receive, send)
            return
        try:
            positions = parse_receipt(wanted)
        except ValueError as error:
            await _refuse(scope, receive, send, "header.X-CRM-Min-Position", str(error))
            return
        try:
            wait = self._wait_of(_header(scope, MAX_WAIT_HEADER))
        except ValueError as error:
            await _refuse(scope, receive, send, "header.X-CRM-Max-Wait", str(error))
            return
        reached = await _authorised(scope) and await _wait_applied(scope, positions, wait)
        state = b"reached" if reached else b"not-reached"

        async def with_state(message: Message) -> None:
            if message["type"] == "http.response.start":
                added = (POSITION_HEADER.encode(), state)
                message = {**message, "headers": [*message.get("headers", []), added]}
            await send(message)

        await self.app(scope, receive, with_state)

    def _wait_of(self, given: str | None) -> float:
        if given is None:
            return self.max_wait
        try:
            seconds = float(given)
        except ValueError:
            raise ValueError("a number of seconds") from None
        if not 0 <= seconds <= self.max_wait:
            raise ValueError(f"0 to {self.max_wait:g} seconds")
        return seconds


def _is_api_read(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] in ("GET", "HEAD")
        and scope["path"].startswith(API_PREFIX)
    )


def _header(scope: Scope, name: str) -> str | None:
    for key, value in scope["headers"]:
        if key == name.encode():
            return str(value.decode("latin-1"))
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, field: str, reason: str) -> None:
    answer = error_response(422, "invalid request", [{"field": field, "message": reason}])
    await answer(scope, receive, send)


async def _authorised(scope: Scope) -> bool:
    authorization = _header(scope, "authorization") or ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    keys: KeyRing = scope["app"].state.resources.keys
    return isinstance(await keys.authenticate(token.strip()), Principal)


async def _wait_applied(scope: Scope, positions: list[Position], wait: float) -> bool:
    """Whether the service's consumer applied every position on a topic it reads, waiting
    up to `wait` seconds for it. A database that does not answer ends the wait: the read
    itself then says what is wrong."""
    res = scope["app"].state.resources
    runtime = res.consumer
    if runtime is None:
        return True  # nothing here is folded from topics
    relevant = [p for p in positions if p.topic in runtime.topics]
    deadline = time.monotonic() + wait
    while True:
        try:
            rows = await res.pool.fetch(
                "SELECT log, topic, partition, high FROM log_marks "
                "WHERE consumer = $1 AND topic = ANY($2::text[])",
                runtime.name,
                sorted({p.topic for p in relevant}),
                timeout=max(deadline - time.monotonic(), 0.5),
            )
        except (asyncpg.PostgresError, OSError, TimeoutError):
            return False
        highs = {(r["log"], r["topic"], r["partition"]): r["high"] for r in rows}
        left = deadline - time.monotonic()
        if not pending(relevant, highs):
            return True
        if left <= 0:
            return False
        # This instance's commits wake the wait at once; another instance's are seen within
        # the poll interval.
        await runtime.next_commit(min(left, 0.1))
