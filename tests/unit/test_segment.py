"""The Segment mapping, message by message (expected events written out by hand from the
Segment spec's fields and the mapping table)."""

from __future__ import annotations

from typing import Any

from services.ingest.segment import Ignored, Mapped, MessageError, event_id, map_message

WHEN = "2026-11-02T10:15:00.000Z"


def track(name: str, properties: dict[str, Any], **fields: Any) -> dict[str, Any]:
    message = {"type": "track", "messageId": "m-1", "userId": "cust-1", "timestamp": WHEN}
    return {**message, "event": name, "properties": properties, **fields}


def mapped(message: dict[str, Any]) -> Mapped:
    outcome = map_message(0, message)
    assert isinstance(outcome, Mapped), outcome
    return outcome


def test_order_completed_is_a_purchase_of_its_total() -> None:
    properties = {
        "order_id": 50314,
        "affiliation": "Google Store",
        "total": 27.5,
        "revenue": 25.0,
        "currency": "EUR",
        "products": [
            {"product_id": "507f1f77", "sku": "45790-32", "name": "Monopoly", "price": 19},
            {"product_id": "505bd76785", "name": "Uno", "price": 3.25, "quantity": 2},
        ],
    }
    assert mapped(track("Order Completed", properties)).event == {
        "specversion": "1.0",
        "id": "m-1",
        "source": "segment",
        "type": "crm.purchase.completed",
        "time": WHEN,
        "subject": "cust-1",
        "datacontenttype": "application/json",
        "data": {
            "order_id": "50314",
            "amount": "27.5",
            "currency": "EUR",
            "channel": "Google Store",
            "items": [
                {"sku": "45790-32", "name": "Monopoly", "unit_price": "19"},
                {"sku": "505bd76785", "name": "Uno", "quantity": 2, "unit_price": "3.25"},
            ],
        },
    }


def test_the_amount_falls_back_to_revenue_then_to_the_products() -> None:
    revenue = mapped(track("Order Completed", {"order_id": "o", "revenue": 59.9}))
    assert revenue.event["data"]["amount"] == "59.9"  # the JSON number's text, not 59.8999...
    assert revenue.event["data"]["currency"] == "USD"  # Segment's default
    products = [{"sku": "a", "price": 19.99, "quantity": 2}, {"sku": "b", "price": "0.02"}]
    summed = mapped(track("Order Completed", {"order_id": "o", "products": products}))
    assert summed.event["data"]["amount"] == "40.00"  # 2 x 19.99 + 0.02
    assert summed.origin_of("data.amount") == "properties.products"
    nothing = mapped(track("Order Completed", {"order_id": "o"}))
    assert "amount" not in nothing.event["data"]
    assert nothing.origin_of("data.amount") == "properties.total"


def test_order_refunded_is_a_refund_of_the_same_measure() -> None:
    refund = mapped(track("Order Refunded", {"order_id": "o-9", "total": 30}))
    assert refund.event["type"] == "crm.purchase.refunded"
    assert refund.event["data"] == {"order_id": "o-9", "amount": "30", "currency": "USD"}


def test_identify_traits_become_a_customer_update() -> None:
    traits = {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "address": {"street": "12 St James's Sq", "city": "London", "postalCode": "SW1Y 4JH"},
        "birthday": "1815-12-10T00:00:00.000Z",
        "gender": "Female",
        "title": "Analyst",
        "company": {"name": "Analytical Engines", "industry": "Computing", "employee_count": 12},
        "plan": "premium",  # not a field of the record: not kept
    }
    message = {"type": "identify", "messageId": "m-2", "userId": "cust-1", "timestamp": WHEN}
    update = mapped({**message, "traits": traits})
    assert update.event["type"] == "crm.customer.updated"
    assert update.event["data"] == {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "address": "12 St James's Sq, London, SW1Y 4JH",
        "birth_year": 1815,
        "gender": "female",
        "occupation": "Analyst",
        "industry": "Computing",
        "size": "12",
    }
    assert update.origin_of("data.email") == "traits.email"


def test_what_maps_to_nothing_is_ignored_with_the_reason() -> None:
    viewed = map_message(3, track("Product Viewed", {"sku": "x"}))
    assert isinstance(viewed, Ignored)
    assert (viewed.index, viewed.call, viewed.event) == (3, "track", "Product Viewed")
    assert "'Order Completed', 'Order Refunded'" in viewed.reason
    page = map_message(0, {"type": "page", "userId": "u", "name": "Home"})
    assert isinstance(page, Ignored)
    anonymous = map_message(0, track("Order Completed", {"total": 1}, userId=None, anonymousId="a"))
    assert isinstance(anonymous, Ignored)
    assert "no userId" in anonymous.reason
    bare = {"type": "identify", "userId": "u", "timestamp": WHEN, "traits": {"plan": "x"}}
    assert isinstance(map_message(0, bare), Ignored)


def test_malformed_messages_are_errors_in_the_messages_own_terms() -> None:
    def fields(message: Any) -> list[str]:
        outcome = map_message(0, message)
        assert isinstance(outcome, list)
        return [e.field for e in outcome if isinstance(e, MessageError)]

    assert fields("x") == [""]
    assert fields({"type": "purchase"}) == ["type"]
    assert fields(track("", {})) == ["event"]
    assert fields(track("Order Completed", {}, userId=None)) == ["userId"]
    assert fields(track("Order Completed", {}, timestamp=None)) == ["timestamp"]
    assert fields(track("Order Completed", ["not", "an", "object"])) == ["properties"]


def test_a_crm_type_passes_through_with_its_properties_as_data() -> None:
    nps = mapped(track("crm.survey.nps", {"score": 9}))
    assert (nps.event["type"], nps.event["data"]) == ("crm.survey.nps", {"score": 9})
    assert nps.origin_of("data.score") == "properties.score"
    keys = map_message(0, track("crm.apikey.issued", {}))
    assert isinstance(keys, Ignored)  # only the source types: keys and derived events are not
    erasure = map_message(0, track("crm.customer.erased", {}))
    assert isinstance(erasure, Ignored)  # nor an erasure, which takes its own scope


def test_without_a_message_id_a_retry_still_has_the_same_id() -> None:
    first = {**track("Order Completed", {"total": 1}), "sentAt": "2026-11-02T10:15:01Z"}
    del first["messageId"]
    retry = {**first, "sentAt": "2026-11-02T10:16:30Z"}
    assert event_id(first) == event_id(retry)
    assert event_id(first).startswith("sha256-")
    assert event_id({**first, "properties": {"total": 2}}) != event_id(first)
