"""Ingest's decisions, pure: what a request body holds and which events in it are valid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

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
    """The body as a whole is unusable (not JSON, wrong media type, too many events)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


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
