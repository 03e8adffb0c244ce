"""Ingest against the same hostile events the consumers get, and against random mutations of
valid events: it answers 202 exactly when the shared contract accepts every event, a 4xx
with a reason otherwise, and never a 5xx.

The OpenAPI fuzzer (test_api_fuzz.py) sees only the envelope's schema; these tests reach
the event types' data and the event store behind it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import InvalidEvent, Topic, ValidationContext, validate_event
from tests.fuzz.conftest import Server
from tests.fuzz.corpus import GOOD, SEED, at_the_limits, good_event, hostile, with_value
from tests.helpers import AUTH

pytestmark = [
    pytest.mark.integration,
    # The services' threads (broker clients' jitter) use `random` while Hypothesis draws.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

_ids = itertools.count()
REFUSED = {400, 413, 415, 422}


@pytest.fixture
def ingest(servers: dict[str, Server]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers["ingest"].url, timeout=60, headers=AUTH) as client:
        yield client


def assert_reasoned(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["detail"], body
    for item in body["errors"]:
        assert item["field"], item
        assert item["message"], item
    return body


def test_ingest_refuses_every_hostile_event_and_takes_those_at_the_limits(
    ingest: httpx.Client,
) -> None:
    rng = random.Random(SEED)
    soon = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    for topic in sorted(GOOD):
        for label, value in hostile(topic, rng).items():
            if value is None or label == "JSON array":  # no HTTP body; an array is a batch
                continue
            response = ingest.post(
                "/v1/events", content=value, headers={"content-type": "application/json"}
            )
            assert response.status_code in REFUSED, (topic, label, response.text[:300])
            assert_reasoned(response)
        limits = at_the_limits(topic, soon)
        response = ingest.post("/v1/events", json=limits)
        assert response.status_code == 202, (topic, response.text[:2000])
        assert response.json()["accepted"] == len(limits)


# ---- random mutations of valid events -------------------------------------------------------

SPECIAL = st.sampled_from(
    [
        "",
        " ",
        "NaN",
        "Infinity",
        "-1",
        "1e13",
        "0.0000001",
        "bad\x00text",
        "x" * 10_001,
        "²",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+23:59",
        "1970-01-01T00:00:00Z",
        "2026-02-30",
        "2026-11-02",
        "USD",
        "crm.purchase.completed",
    ]
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | SPECIAL
)
JSON = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


ODD_CHARACTERS = st.sampled_from(["\x00", "\x7f", "\u2028", "\ufeff", "\\", '"']) | st.characters()
Path = tuple[str | int, ...]


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every path in a JSON value, and a new key in each object."""
    found: list[Path] = []
    if isinstance(value, dict):
        found.append((*prefix, "unexpected"))
        for key, item in value.items():
            found.append((*prefix, key))
            found.extend(paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*prefix, index))
            found.extend(paths(item, (*prefix, index)))
    return found


def value_at(raw: Any, path: Path) -> Any:
    for part in path:
        raw = raw[part] if isinstance(raw, list) else raw.get(part)
    return raw


def set_at(raw: Any, path: Path, value: Any) -> Any:
    copy = orjson.loads(orjson.dumps(raw))
    *parents, last = path
    value_at(copy, tuple(parents))[last] = value
    return copy


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event of any topic with one odd character added to one of its strings (it
    may stay valid), or with one or two values replaced by any JSON value."""
    topic = draw(st.sampled_from(sorted(GOOD)))
    raw: dict[str, Any] = with_value(good_event(topic, "mutated"), "id", f"fuzz-{next(_ids)}")
    if draw(st.booleans()):
        strings = [p for p in paths(raw) if isinstance(value_at(raw, p), str)]
        path = draw(st.sampled_from(strings))
        return set_at(raw, path, value_at(raw, path) + draw(ODD_CHARACTERS))
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        raw = set_at(raw, draw(st.sampled_from(paths(raw))), draw(JSON))
    return raw


def _offline(raw: Any) -> bool:
    """Whether ingest must take `raw`: a valid event that is not an API key's."""
    try:
        event = validate_event(raw, ValidationContext())  # the services' defaults (USD, 5 min)
    except InvalidEvent:
        return False
    return event.topic != Topic.KEYS


@given(batch=st.lists(mutated_events(), min_size=1, max_size=2))
@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_ingest_answers_like_the_contract(ingest: httpx.Client, batch: list[Any]) -> None:
    response = ingest.post("/v1/events", content=orjson.dumps(batch))
    assert response.status_code < 500, response.text[:1000]
    valid = [_offline(raw) for raw in batch]
    ids = [raw.get("id") for raw in batch]
    if response.status_code == 202:
        assert all(valid), (valid, batch)
        return
    body = assert_reasoned(response)
    if response.status_code == 409:  # an id stored before (a mutation reused an id)
        return
    assert response.status_code == 422, response.text[:1000]
    refused = {item["index"] for item in body["errors"]}
    reused = {i for i, event_id in enumerate(ids) if event_id in ids[:i]}
    assert refused <= {i for i, ok in enumerate(valid) if not ok} | reused, body
    assert not all(valid) or reused, body


def test_every_topic_has_a_valid_event_for_the_fuzzers() -> None:
    # crm.keys is written by `crm keys` only (ingest refuses key events)
    assert set(GOOD) == set(Topic) - {Topic.DEADLETTER, Topic.KEYS}
    for topic in GOOD:
        assert _offline(good_event(topic, "check")), topic
