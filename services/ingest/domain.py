"""Ingest's decisions, pure: what a request body holds and which events in it are valid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from shared import cloudevents_binding as binding
from shared.events import (
    RESERVED_SOURCE_PREFIX,
    Event,
    FieldError,
    InvalidEvent,
    Topic,
    ValidationContext,
    validate_event,
)

SINGLE_TYPES = frozenset({"application/cloudevents+json"})
BATCH_TYPES = frozenset({"application/cloudevents-batch+json"})
EITHER_TYPES = frozenset({"application/json", ""})


KEYS_ARE_ISSUED_BY_THE_CLI = "API keys are issued and revoked with `crm keys`, not posted"
RESERVED_SOURCE = (
    f"sources starting with '{RESERVED_SOURCE_PREFIX}' are reserved for the events the "
    "services derive themselves"
)


def refusal(event: Event) -> FieldError | None:
    """What the gateway refuses in a valid event, whether posted or published straight to a
    topic: keys (only `crm keys` issues them) and the services' own sources (so no client can
    take the identity of a derived event first)."""
    if event.topic == Topic.KEYS:
        return FieldError("type", KEYS_ARE_ISSUED_BY_THE_CLI)
    if event.envelope.source.startswith(RESERVED_SOURCE_PREFIX):
        return FieldError("source", RESERVED_SOURCE)
    return None


@dataclass(frozen=True)
class EventError:
    index: int
    id: str | None
    field: str
    message: str


class BodyError(Exception):
    """The body as a whole is unusable (not JSON, wrong media type, too many events, or
    binary-mode headers that carry no event: then `errors` says which)."""

    def __init__(self, status: int, message: str, errors: list[EventError] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []


@dataclass(frozen=True)
class Decoded:
    """The raw events of a request, and whether they may hold a NUL character (None: look)."""

    events: list[Any]
    may_hold_nul: bool | None


def decode_request(body: bytes, headers: list[tuple[bytes, bytes]], max_events: int) -> Decoded:
    """The events a POST carries, in either CloudEvents content mode (structured: the body
    is one event or an array of them; binary: `ce-` headers and the body as data)."""
    content_type = next(
        (v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), None
    )
    if not binding.http_is_binary(content_type, headers):
        raw_events = [
            binding.normalised(raw) for raw in decode_body(body, content_type, max_events)
        ]
        # JSON carries a NUL only as the escape \u0000: one scan of the body spares one per event.
        return Decoded(raw_events, b"\\u0000" in body)
    try:
        event = binding.from_http_binary(headers, body)
    except binding.UnsupportedMediaType as error:
        raise BodyError(415, f"unsupported media type: {error}") from None
    except binding.DataNotJson as error:
        raise BodyError(400, f"the body (the event's data) is {error}") from None
    except binding.BindingError as error:
        detail = "the ce- headers carry no valid event; nothing was stored"
        raise BodyError(422, detail, [EventError(0, None, error.field, str(error))]) from None
    return Decoded([event], None)  # attributes come percent-decoded from headers: look


def media_type(content_type: str | None) -> str:
    return binding.media_type(content_type)[0]


def decode_body(body: bytes, content_type: str | None, max_events: int) -> list[Any]:
    """The list of raw events a request carries: one object, or an array of them."""
    kind = media_type(content_type)
    if kind not in SINGLE_TYPES | BATCH_TYPES | EITHER_TYPES:
        raise BodyError(415, f"unsupported media type '{kind}'")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BodyError(400, f"body is not valid JSON: {error}") from None
    if isinstance(parsed, list):
        if kind in SINGLE_TYPES:
            raise BodyError(400, "application/cloudevents+json carries one event, not an array")
        if not parsed:
            raise BodyError(400, "the batch is empty")
        if len(parsed) > max_events:
            raise BodyError(413, f"a batch holds at most {max_events} events, got {len(parsed)}")
        return parsed
    if kind in BATCH_TYPES:
        raise BodyError(400, "application/cloudevents-batch+json carries a JSON array")
    return [parsed]


def validate_batch(
    raw_events: list[Any], context: ValidationContext, *, may_hold_nul: bool | None = None
) -> tuple[list[Event], list[EventError]]:
    """All events validated; the errors of every invalid one (all or nothing is the caller's).

    may_hold_nul: whether the body they came from holds a NUL escape (None: look per event)."""
    events: list[Event] = []
    errors: list[EventError] = []
    seen: dict[tuple[str, str], bytes] = {}
    for index, raw in enumerate(raw_events):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        event_id = raw_id if isinstance(raw_id, str) else None
        try:
            event = validate_event(raw, context, may_hold_nul=may_hold_nul)
        except InvalidEvent as error:
            errors.extend(EventError(index, event_id, e.field, e.message) for e in error.errors)
            continue
        refused = refusal(event)
        if refused is not None:
            errors.append(EventError(index, event.id, refused.field, refused.message))
            continue
        previous = seen.get(event.identity)
        if previous is None:
            seen[event.identity] = event.content_hash()
            events.append(event)
        elif previous != event.content_hash():
            errors.append(
                EventError(index, event.id, "id", "appears earlier in the batch with other content")
            )
    return events, errors
