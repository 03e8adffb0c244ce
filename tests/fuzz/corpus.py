"""What the fuzzers send: one valid event per topic, valid events at every documented limit,
and labelled hostile records (random bytes, truncated JSON, wrong types, huge fields,
unknown types, future schema versions, values beyond the limits)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.events import MAX_COUNT, MAX_SECONDS, Topic
from tests.helpers import event

SEED = 20261123
NOW = datetime.now(UTC) - timedelta(minutes=10)

# One valid event per topic, in the shape another system would publish.
GOOD: dict[Topic, tuple[str, dict[str, Any]]] = {
    Topic.CUSTOMERS: (
        "crm.customer.registered",
        {"name": "Fuzz Customer", "email": "fuzz@example.com", "birth_year": 1980},
    ),
    Topic.PURCHASES: (
        "crm.purchase.completed",
        {
            "order_id": "fuzz-order",
            "amount": "59.90",
            "currency": "USD",
            "items": [{"sku": "sku-1", "quantity": 2, "unit_price": "29.95"}],
        },
    ),
    Topic.INTERACTIONS: (
        "crm.interaction.logged",
        {"channel": "phone", "direction": "inbound", "duration_seconds": 120},
    ),
    Topic.COMPLAINTS: (
        "crm.complaint.opened",
        {"complaint_id": "fuzz-complaint", "channel": "hotline", "category": "delivery"},
    ),
    Topic.SURVEYS: ("crm.survey.nps", {"score": 9, "survey_id": "fuzz-survey"}),
    Topic.MARKETING: (
        "crm.marketing.spend",
        {
            "amount": "1000",
            "currency": "USD",
            "channel": "search",
            "period_start": NOW.date().isoformat(),
            "period_end": NOW.date().isoformat(),
        },
    ),
    Topic.DERIVED: (
        "crm.customer.tier_changed",
        {"old": "potential", "new": "gold", "as_of": NOW.isoformat()},
    ),
}


def good_event(topic: Topic, label: str) -> dict[str, Any]:
    type_name, data = GOOD[topic]
    subject = f"fuzz-{topic.value.split('.')[1]}"
    return event(type_name, subject, data, time=NOW, event_id=f"good-{topic.value}-{label}")


EARLIEST = "1970-01-01T00:00:00Z"
LATEST_DAY = "2099-12-31"


def at_the_limits(topic: Topic, soon: str) -> list[dict[str, Any]]:
    """Valid events with every value at its documented limit: applied, never dead-lettered,
    and never failing a batch (read-model columns must hold them)."""
    subject = "c" * 128  # the longest customer id
    text, long_text = "t" * 200, "l" * 10_000

    def at(type_name: str, data: dict[str, Any], *, time: str | None = None) -> dict[str, Any]:
        made = event(type_name, subject, data, time=NOW, event_id=f"limit-{type_name}-{time}")
        return made | ({"time": time} if time else {})

    money = {"amount": "1000000000000", "currency": "EUR", "reporting_amount": "1000000000000"}
    by_topic = {
        Topic.CUSTOMERS: [
            at(
                "crm.customer.registered",
                {
                    "kind": "organisation",
                    "name": text,
                    "birth_year": 2100,
                    "occupation": text,
                    "address": "a" * 500,
                    "phone": "1" * 50,
                    "email": "e" * 240 + "@example.com",
                    "industry": text,
                    "segment": "s" * 64,
                    "consent": {f"c{i}": True for i in range(20)},
                },
                time=EARLIEST,
            ),
            at("crm.customer.updated", {"birth_year": 1900}, time=soon),
            at("crm.lead.assessed", {"money": True, "authority": False, "need": True}),
        ],
        Topic.PURCHASES: [
            at(
                "crm.purchase.completed",
                {
                    **money,
                    "order_id": "o" * 128,
                    "channel": "c" * 64,
                    "items": [
                        {"sku": f"{i}", "quantity": 1_000_000, "unit_price": "1000000000000"}
                        for i in range(500)
                    ],
                },
                time=EARLIEST,
            ),
            at(
                "crm.purchase.completed",
                {"order_id": "tiny", "amount": "0.000001", "currency": "USD"},
            ),
            at("crm.purchase.refunded", {**money, "order_id": "o" * 128}, time=soon),
        ],
        Topic.INTERACTIONS: [
            at(
                "crm.interaction.logged",
                {
                    "channel": "video",
                    "direction": "outbound",
                    "duration_seconds": 7 * 86_400,
                    "topic": "t" * 64,
                    "outcome": "o" * 64,
                    "agent_id": "a" * 128,
                    "sentiment": "negative",
                },
                time=EARLIEST,
            )
        ],
        Topic.COMPLAINTS: [
            at(
                "crm.complaint.opened",
                {
                    "complaint_id": "k" * 128,
                    "channel": "social_media",
                    "category": "other",
                    "priority": "urgent",
                    "product": "p" * 128,
                    "description": long_text,
                },
                time=EARLIEST,
            ),
            at(
                "crm.complaint.solution_proposed",
                {
                    "complaint_id": "k" * 128,
                    "solution": long_text,
                    "promised_at": f"{LATEST_DAY}T23:59:59Z",
                },
            ),
            at("crm.complaint.escalated", {"complaint_id": "k" * 128, "level": 10}, time=soon),
        ],
        Topic.SURVEYS: [
            at("crm.survey.nps", {"score": 0, "comment": long_text}, time=EARLIEST),
            at("crm.survey.csat", {"score": 5, "topic": "t" * 64}, time=soon),
        ],
        Topic.MARKETING: [
            at(
                "crm.marketing.spend",
                {
                    **money,
                    "channel": "c" * 64,
                    "campaign": "k" * 128,
                    "period_start": "2025-01-01",
                    "period_end": "2026-01-01",  # 366 days
                },
            )
        ],
        Topic.DERIVED: [
            at(
                "crm.scoring.tier_summary",
                {
                    "as_of": EARLIEST,
                    "tier": "gold",
                    "customers": MAX_COUNT,
                    "customer_equity": "1000000000000000",
                    "average_clv": "-1000000000000000",
                },
            ),
            at(
                "crm.complaint.sla_clock_stopped",
                {
                    "complaint_id": "k" * 128,
                    "metric": "resolution",
                    "cycle": MAX_COUNT,
                    "target_seconds": MAX_SECONDS,
                    "outcome": "breached",
                    "elapsed_seconds": MAX_SECONDS,
                },
            ),
            at(
                "crm.crisis.detected",
                {
                    "dimension": "d" * 32,
                    "value": "v" * 128,
                    "window_start": EARLIEST,
                    "window_end": f"{LATEST_DAY}T23:59:59Z",
                    "count": MAX_COUNT,
                    "baseline": MAX_COUNT,
                    "score": 1e300,
                    "decision_interval": -1e300,
                },
            ),
            at("crm.customer.tier_changed", {"new": "n" * 64, "as_of": f"{LATEST_DAY}T00:00:00Z"}),
        ],
    }
    return by_topic[topic]


def with_value(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`base` with the value at a dotted path replaced (or added)."""
    copy = orjson.loads(orjson.dumps(base))
    target = copy
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return copy


def without(base: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != key}


def hostile(topic: Topic, rng: random.Random) -> dict[str, bytes | None]:
    """Labelled hostile records for one topic: every value distinct, so dead letters can be
    matched to what was sent by their bytes."""
    base = good_event(topic, "template")
    raw = orjson.dumps(base)
    cases: dict[str, Any] = {
        "empty": b"",
        "tombstone": None,
        "random bytes (1)": rng.randbytes(1),
        "random bytes (64)": rng.randbytes(64),
        "random bytes (4 KiB)": rng.randbytes(4096),
        "invalid UTF-8 in a string": raw.replace(b'"tests"', b'"\xff\xfe"'),
        "JSON array": b"[" + raw + b"]",
        "JSON null": b"null",
        "JSON string": b'"crm.purchase.completed"',
        "JSON number": b"1e999",
        "nested 10000 deep": b"[" * 10_000 + b"]" * 10_000,
        "unknown type": with_value(base, "type", "crm.unknown.thing"),
        "type of another topic's event": with_value(base, "type", "crm.nope.registered"),
        "future schema version": with_value(base, "schemaversion", "2"),
        "future schema version (number)": with_value(base, "schemaversion", 3),
        "schema version of superscripts": with_value(base, "schemaversion", "²"),
        "schema version of 5000 digits": with_value(base, "schemaversion", "9" * 5000),
        "extension attribute object": with_value(base, "traceparent", {"a": [1, 2]}),
        "no id": without(base, "id"),
        "no data": without(base, "data"),
        "wrong specversion": with_value(base, "specversion", "0.3"),
        "id a number": with_value(base, "id", 42),
        "id with NUL": with_value(base, "id", "bad\x00id"),
        "subject a list": with_value(base, "subject", ["fuzz"]),
        "subject with spaces": with_value(base, "subject", "a customer"),
        "time a number": with_value(base, "time", 0),
        "time a numeric string": with_value(base, "time", "1700000000"),
        "time without offset": with_value(base, "time", "2026-01-01T00:00:00"),
        "time in year 9999": with_value(base, "time", "9999-12-31T23:59:59+00:00"),
        "time in year 1": with_value(base, "time", "0001-01-01T00:00:00+00:00"),
        "time a day ahead": with_value(
            base, "time", (datetime.now(UTC) + timedelta(days=1)).isoformat()
        ),
        "data a string": with_value(base, "data", "data"),
        "data with an unknown field": with_value(base, "data.unexpected", True),
        "id over its limit": with_value(base, "id", "x" * 257),
        "source over its limit": with_value(base, "source", "s" * 1025),
    }
    if topic is Topic.PURCHASES:  # large records: once is enough
        cases["huge id (900 KB)"] = with_value(base, "id", "x" * 900_000)
        cases["huge record (2 MB)"] = with_value(base, "data.channel", "c" * 2_000_000)
        cases["data with 20000 unknown fields"] = with_value(
            base, "data", {**base["data"], **{f"k{i}": i for i in range(20_000)}}
        )
    for key, value in base["data"].items():
        cases[f"data.{key} an object"] = with_value(base, f"data.{key}", {"$": [value]})
        cases[f"data.{key} a list"] = with_value(base, f"data.{key}", [value, value])
        if isinstance(value, str):
            cases[f"data.{key} over 10000 characters"] = with_value(
                base, f"data.{key}", "x" * 10_001
            )
            cases[f"data.{key} with NUL"] = with_value(base, f"data.{key}", value + "\x00")
        if isinstance(value, int) and not isinstance(value, bool):
            cases[f"data.{key} negative"] = with_value(base, f"data.{key}", -1)
            cases[f"data.{key} beyond bounds"] = with_value(base, f"data.{key}", 10**15)
            cases[f"data.{key} NaN"] = with_value(base, f"data.{key}", "NaN")
    if "amount" in base["data"]:
        for label, amount in {
            "negative": "-1.00",
            "NaN": "NaN",
            "infinite": "Infinity",
            "beyond the bound": "1e13",
            "too precise": "0.0000001",
            "a boolean": True,
        }.items():
            cases[f"data.amount {label}"] = with_value(base, "data.amount", amount)
        cases["data.currency not ISO 4217"] = with_value(base, "data.currency", "XYZ")
    if "items" in base["data"]:
        cases["negative quantity"] = with_value(base, "data.items.0.quantity", -2)
        cases["zero quantity"] = with_value(base, "data.items.0.quantity", 0)
        cases["501 items"] = with_value(base, "data.items", [{"sku": f"s{i}"} for i in range(501)])
    if "period_start" in base["data"]:
        cases["period of 10000 years"] = with_value(
            with_value(base, "data.period_start", "0001-01-01"), "data.period_end", "9999-12-31"
        )
        cases["period backwards"] = with_value(base, "data.period_end", "2020-01-01")
    if "as_of" in base["data"]:
        cases["as_of in year 9999"] = with_value(base, "data.as_of", "9999-12-31T00:00:00+00:00")
    encoded = {
        label: value if value is None or isinstance(value, bytes) else orjson.dumps(value)
        for label, value in cases.items()
    }
    assert len(set(encoded.values())) == len(encoded), "hostile records must differ"
    return encoded
