"""The event contract: what ingest and every consumer accept and refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.events import (
    EVENT_TYPES,
    InvalidEvent,
    PurchaseCompleted,
    Topic,
    ValidationContext,
    validate_event,
)

CONTEXT = ValidationContext(reporting_currency="USD")


def raw(type_name: str = "crm.purchase.completed", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "shop",
        "type": type_name,
        "time": "2026-01-05T10:00:00+01:00",
        "subject": "cust-1",
        "data": {"order_id": "o-1", "amount": "19.99", "currency": "USD"},
    }
    base.update(changes)
    return base


def errors_of(value: Any) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        validate_event(value, CONTEXT)
    return {e.field: e.message for e in caught.value.errors}


def test_a_valid_purchase_is_typed_and_routed_by_customer() -> None:
    event = validate_event(raw(), CONTEXT)
    assert isinstance(event.data, PurchaseCompleted)
    assert event.data.value == Decimal("19.99")
    assert event.topic == Topic.PURCHASES
    assert event.subject == "cust-1"


def test_amount_as_json_number_keeps_its_decimal_value() -> None:
    event = validate_event(raw(data={"order_id": "o", "amount": 19.99, "currency": "USD"}), CONTEXT)
    assert event.to_json_dict()["data"]["amount"] == "19.99"


def test_foreign_currency_needs_the_converted_amount() -> None:
    errors = errors_of(raw(data={"order_id": "o", "amount": "10", "currency": "EUR"}))
    assert "reporting_amount is required" in errors["data"]
    converted = raw(
        data={"order_id": "o", "amount": "10", "currency": "EUR", "reporting_amount": "10.80"}
    )
    assert validate_event(converted, CONTEXT).data.value == Decimal("10.80")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"subject": "has space"}, "subject"),
        ({"subject": "x" * 129}, "subject"),
        ({"specversion": "0.3"}, "specversion"),
        ({"time": "2026-01-05T10:00:00"}, "time"),
        ({"time": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "time"),
        ({"type": "crm.unknown.thing"}, "type"),
        ({"schemaversion": "2"}, "schemaversion"),
        ({"data": {"order_id": "o", "amount": "-1", "currency": "USD"}}, "data.amount"),
        ({"data": {"order_id": "o", "amount": "NaN", "currency": "USD"}}, "data.amount"),
        ({"data": {"order_id": "o", "amount": "1e13", "currency": "USD"}}, "data.amount"),
        ({"data": {"order_id": "o", "amount": "1", "currency": "XYZ"}}, "data.currency"),
        ({"data": {"order_id": "o", "amount": "1", "currency": "USD", "x": 1}}, "data.x"),
    ],
)
def test_invalid_events_name_the_field(changes: dict[str, Any], field: str) -> None:
    assert field in errors_of(raw(**changes))


def test_a_non_object_is_refused() -> None:
    assert "body" in errors_of([1, 2])


def test_an_update_must_change_something() -> None:
    assert "data" in errors_of(raw("crm.customer.updated", data={}))


def test_every_source_type_has_a_topic_and_version_one() -> None:
    assert {version for _, version in EVENT_TYPES} == {1}
    assert {t.topic for t in EVENT_TYPES.values()} == {
        Topic.CUSTOMERS,
        Topic.PURCHASES,
        Topic.INTERACTIONS,
        Topic.COMPLAINTS,
        Topic.SURVEYS,
        Topic.MARKETING,
        Topic.DERIVED,
        Topic.KEYS,
    }


def test_normalised_bytes_and_hash_are_stable() -> None:
    first = validate_event(raw(), CONTEXT)
    reordered = dict(reversed(list(raw().items())))
    second = validate_event(reordered, CONTEXT)
    assert first.to_bytes() == second.to_bytes()
    assert first.content_hash() == second.content_hash()
    changed = validate_event(raw(source="other"), CONTEXT)
    assert changed.content_hash() != first.content_hash()


SLA_DATA = {"complaint_id": "k-1", "metric": "resolution", "cycle": 0, "target_seconds": 3600}
SUMMARY_DATA = {"as_of": "2026-01-05T00:00:00Z", "customers": 3}


@pytest.mark.parametrize("tier", ["gold", "developing", "potential", "forgotten", "unknown", None])
def test_an_sla_event_names_a_tier_or_unknown(tier: str | None) -> None:
    event = raw(
        "crm.complaint.sla_breached", source="crm/complaints", data={**SLA_DATA, "tier": tier}
    )
    assert validate_event(event, CONTEXT).data.tier == tier  # type: ignore[attr-defined]


def test_a_tier_outside_the_vocabulary_is_refused() -> None:
    sla = raw("crm.complaint.sla_breached", source="crm/c", data={**SLA_DATA, "tier": "vip"})
    assert "'unknown'" in errors_of(sla)["data.tier"]
    for name in ("unknown", "vip"):
        summary = raw(
            "crm.scoring.tier_summary", source="crm/s", data={**SUMMARY_DATA, "tier": name}
        )
        assert "data.tier" in errors_of(summary)
    summary = raw("crm.scoring.tier_summary", source="crm/s", data={**SUMMARY_DATA, "tier": "gold"})
    assert validate_event(summary, CONTEXT).data.tier == "gold"  # type: ignore[attr-defined]
