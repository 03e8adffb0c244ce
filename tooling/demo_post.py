"""`crm demo`: simulate the demo history (`tooling.demo`) and load it through ingest's HTTP API.

POST /v1/events in batches of up to 1000, with an API key that may write events: --api-key,
else CRM_API_KEY, else the admin key `make run` keeps in CRM_DATA_DIR/admin-key. Ingest is
--url, else CRM_INGEST_URL, else the dev stack's http://127.0.0.1:INGEST_PORT (8001).
Event ids are deterministic, so loading the same demo again stores nothing twice.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as clock
from typing import Any

import orjson

from tooling import demo, devstack

BATCH = 1000  # ingest's default MAX_BATCH
DEFAULT_INGEST_PORT = 8001  # as `make run` starts ingest
REQUEST_TIMEOUT = 60.0
MAX_RETRIES = 20  # answers 429/503 (ingest shedding load) in a row before giving up
MAX_RETRY_AFTER = 10.0  # seconds: a longer Retry-After is capped


class DemoError(Exception):
    """What stops the load, in one line for the user."""


@dataclass(frozen=True)
class Target:
    url: str
    api_key: str


@dataclass
class Totals:
    stored: int = 0
    duplicates: int = 0
    by_type: Counter[str] = field(default_factory=Counter)

    @property
    def sent(self) -> int:
        return self.stored + self.duplicates


def ingest_url(given: str | None) -> str:
    if given:
        return given.rstrip("/")
    from_env = os.environ.get("CRM_INGEST_URL")
    if from_env:
        return from_env.rstrip("/")
    return f"http://127.0.0.1:{os.environ.get('INGEST_PORT', DEFAULT_INGEST_PORT)}"


def api_key(given: str | None) -> str:
    """--api-key, CRM_API_KEY, or the dev stack's admin key."""
    key = given or os.environ.get("CRM_API_KEY")
    if key:
        return key
    kept = devstack.data_dir() / "admin-key"
    try:
        return kept.read_text().strip()
    except OSError:
        raise DemoError(
            f"crm demo: no API key: pass --api-key or set CRM_API_KEY (a key with scope "
            f"events:write), or start the dev stack with `make run`, which keeps one in {kept}"
        ) from None


def history_end(given: date | None, now: datetime) -> datetime:
    """The end of the history: midnight UTC at the start of `given` (default: today), so
    that loading the demo again on the same day gives the same events."""
    end = datetime.combine(given or now.astimezone(UTC).date(), clock(0), UTC)
    if end > now:
        raise DemoError(f"crm demo: --until {end.date()} is in the future: events cannot be")
    return end


def post_batch(target: Target, batch: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """POST one batch; returns (stored, already there). Waits as ingest asks when it sheds
    load; raises DemoError on anything else that is not an acceptance."""
    body = orjson.dumps(list(batch))
    for _ in range(MAX_RETRIES):
        status, headers, answer = _post(target, body)
        if status == 202:
            accepted = orjson.loads(answer)
            return int(accepted["accepted"]), len(accepted["duplicates"])
        if status in (429, 503):
            time.sleep(min(float(headers.get("Retry-After") or 1), MAX_RETRY_AFTER))
            continue
        raise DemoError(_refusal(target, status, answer))
    raise DemoError(f"crm demo: ingest at {target.url} kept shedding load; try again later")


def _post(target: Target, body: bytes) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"{target.url}/v1/events",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {target.api_key}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DemoError(
            f"crm demo: cannot reach ingest at {target.url} ({reason}): is `make run` up? "
            "Or pass --url (or set CRM_INGEST_URL)"
        ) from None


def _refusal(target: Target, status: int, answer: bytes) -> str:
    try:
        detail = str(orjson.loads(answer).get("detail", ""))
    except (orjson.JSONDecodeError, AttributeError):
        detail = answer[:200].decode(errors="replace")
    if status == 409:
        return (
            "crm demo: a demo with this --seed was loaded before with other options (--customers "
            "or --until, which defaults to today): its events have the same ids and other "
            "content. Nothing more was stored; use the same options again, or another --seed"
        )
    if status in (401, 403):
        return f"crm demo: ingest at {target.url} refused the API key ({status}: {detail})"
    return f"crm demo: ingest at {target.url} answered {status}: {detail}"


def load(
    events: Sequence[dict[str, Any]],
    target: Target,
    progress: Callable[[Totals], None] = lambda _: None,
) -> Totals:
    """Post the events in `demo.posting_batches` of up to BATCH."""
    totals = Totals()
    for batch in demo.posting_batches(events, BATCH):
        stored, duplicates = post_batch(target, batch)
        totals.stored += stored
        totals.duplicates += duplicates
        totals.by_type.update(event["type"] for event in batch)
        progress(totals)
    return totals


def run(customers: int, seed: int, until: date | None, url: str | None, key: str | None) -> None:
    """`crm demo`: simulate, load with a progress line, print a summary."""
    target = Target(ingest_url(url), api_key(key))
    params = demo.DemoParams(
        until=history_end(until, datetime.now(UTC)), customers=customers, seed=seed
    )
    started = time.perf_counter()
    events = demo.simulate(params)
    print(
        f"crm demo: {len(events):,} events for {customers:,} customers over {params.weeks} "
        f"weeks up to {params.until:%Y-%m-%d %H:%M} UTC (seed {seed}); loading into {target.url}",
        file=sys.stderr,
    )

    def show(totals: Totals) -> None:
        rate = totals.sent / max(time.perf_counter() - started, 1e-9)
        print(
            f"\r{totals.sent:>10,} / {len(events):,} events  {rate:>8,.0f} events/s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    totals = load(events, target, show)
    print(file=sys.stderr)
    _summary(totals, time.perf_counter() - started)


def _summary(totals: Totals, seconds: float) -> None:
    print(
        f"stored {totals.stored:,} events, already there {totals.duplicates:,}, in {seconds:.1f} s"
    )
    for type_name, count in sorted(totals.by_type.items(), key=lambda item: -item[1]):
        print(f"  {type_name:<34} {count:>8,}")
    print(
        "The services apply them within seconds to a minute (`crm lag` shows how far they "
        "are): customers and tiers, lifetime values, the KPIs and the SLA queue fill in."
    )
