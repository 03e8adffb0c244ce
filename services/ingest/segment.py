"""Segment and RudderStack tracking calls as CRM events: the mapping, pure (no I/O).

A shop that already emits the Segment spec (the HTTP Tracking API: `messageId`, `userId` or
`anonymousId`, `timestamp`; `track` with `event` and `properties`, `identify` with `traits`)
points its existing source or destination at ingest. What maps:

| call     | event                                 | CRM event                    |
|----------|---------------------------------------|------------------------------|
| track    | Order Completed                       | crm.purchase.completed       |
| track    | Order Refunded                        | crm.purchase.refunded        |
| track    | a CRM source type's name (not erased) | that type, properties = data |
| identify | (traits)                              | crm.customer.updated         |

Everything else (other track events, page, screen, group, alias, and calls without a
`userId`) is not stored and is listed in the answer with the reason: never dropped silently.

Identity: the CloudEvents source is `segment` and the id is the `messageId`, so a retried call
is a duplicate, stored once. A message without `messageId` gets the SHA-256 of its canonical
JSON (without `sentAt`, which a retry changes) as id: a retry of the same message is still one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from shared.events import ERASED_TYPE, EVENT_TYPES, SOURCE_TOPICS

SOURCE = "segment"
CALLS = ("track", "identify", "page", "screen", "group", "alias")
# Segment's spec: revenue sent without a currency is in US dollars.
DEFAULT_CURRENCY = "USD"
# Set by the sender at each send, so a retry changes them: not part of a message's identity.
VOLATILE_FIELDS = frozenset({"sentAt", "receivedAt"})
# A source event type may be sent as a track call named after it (properties = its data);
# not an erasure: that cannot be undone, and takes POST /v1/events with its own scope.
PASS_THROUGH_TYPES = frozenset(
    name
    for (name, _), kind in EVENT_TYPES.items()
    if kind.topic in SOURCE_TOPICS and name != ERASED_TYPE
)


Call = Literal["track", "identify", "page", "screen", "group", "alias"]
Id = StrictStr | StrictInt  # Segment's libraries send numeric ids as numbers


class SegmentMessage(BaseModel):
    """The fields of the Segment spec the mapping reads; every message is checked against it
    (so this schema, which the OpenAPI document shows, says what is accepted). Other fields
    (context, integrations, sentAt, ...) are allowed and not kept."""

    model_config = ConfigDict(extra="allow")

    type: Call | None = Field(None, description="Required in a batch; a call's path says it.")
    messageId: Id | None = Field(None, description="Unique per message: the event id.")  # noqa: N815
    userId: Id | None = Field(None, description="The customer id.")  # noqa: N815
    anonymousId: Id | None = None  # noqa: N815
    timestamp: StrictStr | None = Field(None, description="When it happened (RFC 3339).")
    originalTimestamp: StrictStr | None = None  # noqa: N815
    event: StrictStr | None = Field(None, examples=["Order Completed"])
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None


@dataclass(frozen=True)
class Mapped:
    """A message that becomes a CloudEvent (still to be validated)."""

    index: int
    message_id: str
    event: dict[str, Any]
    # Where each CloudEvent field came from in the message, for errors in its own terms.
    origins: dict[str, str] = field(default_factory=dict)

    def origin_of(self, event_field: str) -> str:
        """The message's field an error on `event_field` (data.amount, ...) is about."""
        for prefix in sorted(self.origins, key=len, reverse=True):
            if event_field == prefix or event_field.startswith(prefix + "."):
                return self.origins[prefix] + event_field[len(prefix) :]
        return event_field


@dataclass(frozen=True)
class Ignored:
    """A message that maps to no CRM event: not stored, listed in the answer."""

    index: int
    message_id: str | None
    call: str
    event: str | None
    reason: str


@dataclass(frozen=True)
class MessageError:
    index: int
    message_id: str | None
    field: str
    message: str


Outcome = Mapped | Ignored | list[MessageError]
# A mapping of one call: (the CRM type, its data, the origins of its fields) or errors.
Mapping = Callable[[dict[str, Any]], tuple[str, dict[str, Any], dict[str, str]]]

ENVELOPE_ORIGINS = {"id": "messageId", "subject": "userId", "time": "timestamp"}


def map_message(index: int, message: Any, call: str | None = None) -> Outcome:
    """What one message becomes: of the call `call`, or of a batch (None: its `type`)."""
    if not isinstance(message, dict):
        return [MessageError(index, None, "", "a message is a JSON object")]
    message_id = event_id(message)
    try:
        checked = SegmentMessage.model_validate(message)
    except ValidationError as error:
        return [
            MessageError(index, message_id, ".".join(map(str, e["loc"])), e["msg"])
            for e in error.errors(include_url=False)
        ]
    call = call or checked.type
    if call is None:
        return [MessageError(index, message_id, "type", f"required: one of {', '.join(CALLS)}")]
    message = {**message, "type": call}
    if call == "track":
        return _track(index, message_id, message)
    if call == "identify":
        return _identify(index, message_id, message)
    reason = f"{call} calls map to no CRM event (only track and identify do)"
    return Ignored(index, message_id, call, None, reason)


def event_id(message: dict[str, Any]) -> str:
    """The CloudEvents id of a message: its messageId, else the hash of its content."""
    given = message.get("messageId")
    if isinstance(given, str) and given:
        return given
    if isinstance(given, int) and not isinstance(given, bool):
        return str(given)
    kept = {k: v for k, v in message.items() if k not in VOLATILE_FIELDS}
    return "sha256-" + hashlib.sha256(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _track(index: int, message_id: str, message: dict[str, Any]) -> Outcome:
    name = message.get("event")
    if not isinstance(name, str) or not name:
        return [MessageError(index, message_id, "event", "required: the name of the event")]
    mapping = TRACK_MAPPINGS.get(name)
    if mapping is None and name in PASS_THROUGH_TYPES:
        mapping = _pass_through(name)
    if mapping is None:
        reason = (
            f"track '{name[:200]}' has no mapping; mapped are "
            f"{', '.join(repr(n) for n in TRACK_MAPPINGS)} and the CRM event types by name"
        )
        return Ignored(index, message_id, "track", name, reason)
    return _mapped(index, message_id, message, "track", name, "properties", mapping)


def _identify(index: int, message_id: str, message: dict[str, Any]) -> Outcome:
    outcome = _mapped(index, message_id, message, "identify", None, "traits", _customer_update)
    if isinstance(outcome, Mapped) and not outcome.event["data"]:
        kept = ", ".join(TRAITS)
        reason = f"identify without a trait the customer record keeps ({kept})"
        return Ignored(index, message_id, "identify", None, reason)
    return outcome


def _mapped(
    index: int,
    message_id: str,
    message: dict[str, Any],
    call: str,
    name: str | None,
    payload: str,
    mapping: Mapping,
) -> Outcome:
    """The CloudEvent of a mapped call: the envelope from the message, the data by `mapping`."""
    user_id = _text(message.get("userId"))
    if user_id is None:
        if _text(message.get("anonymousId")) is None:
            return [MessageError(index, message_id, "userId", "userId or anonymousId is required")]
        reason = "no userId: anonymous activity belongs to no customer (send it with a userId)"
        return Ignored(index, message_id, call, name, reason)
    body = message.get(payload, {})
    if not isinstance(body, dict):
        return [MessageError(index, message_id, payload, "must be a JSON object")]
    time = message.get("timestamp", message.get("originalTimestamp"))
    if time is None:
        # No receipt time instead: a retry would then differ from the first try.
        return [MessageError(index, message_id, "timestamp", "required: when it happened")]
    type_name, data, origins = mapping(body)
    event = {
        "specversion": "1.0",
        "id": message_id,
        "source": SOURCE,
        "type": type_name,
        "time": time,
        "subject": user_id,
        "datacontenttype": "application/json",
        "data": data,
    }
    return Mapped(index, message_id, event, {**ENVELOPE_ORIGINS, **origins})


# ---- track: the e-commerce spec (v2) ----------------------------------------------------


def _order_completed(properties: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
    data, origins = _order(properties)
    data["items"] = [_line_item(p) for p in properties.get("products") or []]
    if "products" in properties and not isinstance(properties["products"], list):
        data["items"] = properties["products"]  # for the validation to refuse, by name
    origins["data.items"] = "properties.products"
    if properties.get("affiliation") is not None:
        data["channel"] = properties["affiliation"]
        origins["data.channel"] = "properties.affiliation"
    return "crm.purchase.completed", data, origins


def _order_refunded(properties: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
    data, origins = _order(properties)
    return "crm.purchase.refunded", data, origins


def _order(properties: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """What an order and its refund share: the order id and the money.

    The amount is `total` (what the customer paid); else `revenue`; else the sum of the
    products' price x quantity. One measure for both, so a refund nets against its order."""
    data: dict[str, Any] = {"currency": properties.get("currency") or DEFAULT_CURRENCY}
    origins = {"data.order_id": "properties.order_id", "data.currency": "properties.currency"}
    if properties.get("order_id") is not None:
        data["order_id"] = _text(properties["order_id"]) or properties["order_id"]
    for name in ("total", "revenue"):
        if properties.get(name) is not None:
            data["amount"] = _number(properties[name])
            origins["data.amount"] = f"properties.{name}"
            break
    else:
        summed = _products_sum(properties.get("products"))
        origins["data.amount"] = "properties.total"
        if summed is not None:
            data["amount"] = summed
            origins["data.amount"] = "properties.products"
    if properties.get("reporting_amount") is not None:
        data["reporting_amount"] = _number(properties["reporting_amount"])
        origins["data.reporting_amount"] = "properties.reporting_amount"
    return data, origins


def _line_item(product: Any) -> Any:
    if not isinstance(product, dict):
        return product  # for the validation to refuse
    item = {
        "sku": _text(product.get("sku")) or _text(product.get("product_id")),
        "name": product.get("name"),
        "category": product.get("category"),
        "quantity": product.get("quantity"),
        "unit_price": None if product.get("price") is None else _number(product["price"]),
    }
    return {k: v for k, v in item.items() if v is not None}


def _products_sum(products: Any) -> str | None:
    """The sum of price x quantity (1 when not given), when every product has a price."""
    if not isinstance(products, list) or not products:
        return None
    total = Decimal(0)
    for product in products:
        if not isinstance(product, dict):
            return None
        price = _decimal(product.get("price"))
        quantity = product.get("quantity", 1)
        if price is None or not isinstance(quantity, int) or isinstance(quantity, bool):
            return None
        total += price * quantity
    return str(total)


def _pass_through(type_name: str) -> Mapping:
    def mapping(properties: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
        return type_name, dict(properties), {"data": "properties"}

    return mapping


TRACK_MAPPINGS: dict[str, Mapping] = {
    "Order Completed": _order_completed,
    "Order Refunded": _order_refunded,
}


# ---- identify: traits (Segment's reserved traits) ---------------------------------------

TRAITS = (
    *("name", "firstName", "lastName", "email", "phone", "address"),
    *("birthday", "gender", "title", "industry", "company"),
)
GENDERS = frozenset({"female", "male", "other"})


def _customer_update(traits: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
    found = traits.get("company")
    company: dict[str, Any] = found if isinstance(found, dict) else {}
    data = {
        "name": traits.get("name") or _full_name(traits),
        "email": traits.get("email"),
        "phone": _text(traits.get("phone")),
        "address": _address(traits.get("address")),
        "birth_year": _year(traits.get("birthday")),
        "gender": _gender(traits.get("gender")),
        "occupation": traits.get("title"),
        "industry": traits.get("industry") or company.get("industry"),
        "size": _text(company.get("employee_count")),
    }
    origins = {
        "data.name": "traits.name",
        "data.email": "traits.email",
        "data.phone": "traits.phone",
        "data.address": "traits.address",
        "data.birth_year": "traits.birthday",
        "data.occupation": "traits.title",
        "data.industry": "traits.industry",
        "data.size": "traits.company.employee_count",
    }
    return "crm.customer.updated", {k: v for k, v in data.items() if v is not None}, origins


def _full_name(traits: dict[str, Any]) -> str | None:
    parts = [traits.get("firstName"), traits.get("lastName")]
    joined = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return joined or None


def _address(address: Any) -> Any:
    """Segment's address object as one line (street, city, state, postal code, country)."""
    if not isinstance(address, dict):
        return address
    keys = ("street", "city", "state", "postalCode", "country")
    parts = [str(address[k]).strip() for k in keys if address.get(k) not in (None, "")]
    return ", ".join(parts) or None


def _year(birthday: Any) -> int | None:
    """The year of an ISO 8601 birthday (what the record keeps of it)."""
    if isinstance(birthday, str) and len(birthday) >= 4 and birthday[:4].isdigit():
        return int(birthday[:4])
    return None


def _gender(gender: Any) -> str | None:
    """female, male or other (any case); other values are not kept (the record's field is
    an enumeration, and guessing would be wrong)."""
    if isinstance(gender, str) and gender.strip().lower() in GENDERS:
        return gender.strip().lower()
    return None


# ---- values -----------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """An identifier as text: Segment libraries send numbers as ids too."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _number(value: Any) -> Any:
    """A JSON number as decimal text (59.9, not 59.899999...); anything else as it is, for
    the validation to judge."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _decimal(value: Any) -> Decimal | None:
    text = _number(value)
    if not isinstance(text, str):
        return None
    try:
        found = Decimal(text)
    except InvalidOperation:
        return None
    return found if found.is_finite() else None
