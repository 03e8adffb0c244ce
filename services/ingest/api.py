"""Ingest's HTTP routes: POST /v1/events (CloudEvents, structured or binary content mode)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.ingest.domain import (
    BodyError,
    EventError,
    decode_request,
    validate_batch,
)
from services.ingest.resources import Ingest, IngestResources
from services.ingest.store import Conflict, Unavailable, store_batch
from shared import freshness
from shared.auth import Principal, api_router, require
from shared.events import ERASED_TYPE, KNOWN_TYPE_NAMES, Envelope, Event
from shared.http import ErrorBody, Problem, error_response
from shared.outbox import EVENT_STORE_SCHEMA, AppendResult
from shared.schemas import all_schemas, asyncapi
from shared.service import validation_context

WRITE_EVENTS = require("events:write")
ERASE_CUSTOMERS = "customers:erase"
router = api_router("events:write", tags=["events"])


class Accepted(BaseModel):
    accepted: int = Field(description="Events newly stored.", examples=[2])
    duplicates: list[str] = Field(
        description="Ids already stored with the same content: stored once, not again.",
        examples=[["order-1000"]],
    )
    receipt: str = Field(
        description="Where the events sit in the event store, per topic and partition "
        "(`<log>:<topic>:<partition>:<seq>`, comma-separated). Send it as `X-CRM-Min-Position` "
        "with a read to get an answer that includes these events.",
        examples=["ingest:crm.purchases:3:1042"],
    )


class EventErrorItem(BaseModel):
    index: int = Field(description="Position of the event in the batch (0 for a single one).")
    id: str | None = Field(description="The event's id, when it had a readable one.")
    field: str = Field(examples=["data.amount"])
    message: str


class EventErrors(Problem):
    errors: list[EventErrorItem]


_envelope_schema = Envelope.model_json_schema()
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "Structured content mode: one CloudEvent, or a JSON array of up to the "
    "batch limit. Binary content mode (a `ce-specversion` header): the attributes as `ce-` "
    "headers, percent-encoded (CloudEvents HTTP protocol binding 1.0), and the body is the "
    "event's `data` (Content-Type `application/json`, parameters allowed).",
    "content": {
        media: {"schema": schema}
        for media, schema in (
            ("application/cloudevents+json", _envelope_schema),
            ("application/cloudevents-batch+json", {"type": "array", "items": _envelope_schema}),
            (
                "application/json",
                {"oneOf": [_envelope_schema, {"type": "array", "items": _envelope_schema}]},
            ),
        )
    },
}


# Binary content mode: the attributes as headers (all optional: structured mode has none).
_BINARY_MODE_HEADERS: list[dict[str, Any]] = [
    {
        "name": f"ce-{attribute}",
        "in": "header",
        "required": False,
        "description": f"Binary content mode: the event's `{attribute}`{note}.",
        "schema": {"type": "string"},
    }
    for attribute, note in (
        ("specversion", " (1.0); its presence selects binary mode"),
        ("id", ""),
        ("source", ""),
        ("type", ""),
        ("time", ", RFC 3339"),
        ("subject", ", the customer id"),
        ("schemaversion", " (extension; other extensions travel as `ce-<name>` too)"),
    )
]


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def errors_json(errors: list[EventError]) -> list[dict[str, Any]]:
    return [{"index": e.index, "id": e.id, "field": e.field, "message": e.message} for e in errors]


@router.post(
    "/events",
    status_code=202,
    response_model=Accepted,
    summary="Accept events: stored in the event store, then published to Kafka",
    openapi_extra={"requestBody": _REQUEST_BODY, "parameters": _BINARY_MODE_HEADERS},
    responses={
        400: {"model": ErrorBody, "description": "Not JSON, or an empty batch."},
        409: {"model": EventErrors, "description": "An id was stored before with other content."},
        413: {"model": ErrorBody, "description": "Body or batch over the limit."},
        415: {"model": ErrorBody, "description": "Unsupported media type."},
        429: {
            "model": ErrorBody,
            "description": "The key is over its rate: nothing was stored; "
            "retry after Retry-After seconds.",
        },
        422: {"model": EventErrors, "description": "Invalid events; nothing was stored."},
        503: {
            "model": ErrorBody,
            "description": "Shedding load (broker behind, database slow, "
            "too many requests): nothing was stored; retry after Retry-After seconds.",
        },
    },
)
async def post_events(
    request: Request,
    res: Ingest,
    principal: Annotated[Principal, Depends(WRITE_EVENTS)],
) -> JSONResponse:
    settings = res.settings
    try:
        body = await read_body(request, settings.max_body_bytes)
        decoded = decode_request(body, request.headers.raw, settings.max_batch)
    except BodyError as error:
        return error_response(error.status, str(error), errors_json(error.errors))
    limited = rate_limited(res, principal, len(decoded.events))
    if limited is not None:
        return limited
    events, errors = validate_batch(
        decoded.events, validation_context(settings), may_hold_nul=decoded.may_hold_nul
    )
    if errors:
        bad = len({e.index for e in errors})
        detail = f"{bad} of {len(decoded.events)} events are invalid; nothing was stored"
        return error_response(422, detail, errors_json(errors))
    refused = _erasures_refused(principal, events)
    if refused is not None:
        return refused
    stored = await store_events(res, events, {e.id: i for i, e in enumerate(events)})
    if isinstance(stored, JSONResponse):
        return stored
    answer = {
        "accepted": len(stored.accepted),
        "duplicates": stored.duplicates,
        "receipt": receipt_of(res, events, stored),
    }
    return JSONResponse(answer, status_code=202)


def receipt_of(res: IngestResources, events: list[Event], stored: AppendResult) -> str:
    """The read-your-writes receipt of stored events (shared/freshness.py), partitioned as
    the relay will publish them."""
    counts = res.relay.partition_counts if res.relay is not None else {}
    return freshness.receipt(
        EVENT_STORE_SCHEMA,
        (
            (str(e.topic), e.subject, stored.positions[e.identity])
            for e in events
            if e.identity in stored.positions
        ),
        lambda topic: counts.get(topic, res.settings.topic_partitions),
    )


def _erasures_refused(principal: Principal, events: list[Event]) -> JSONResponse | None:
    """A 403 when the batch erases a customer and the key may not: redaction cannot be
    undone, so it takes its own scope, not just the right to send events."""
    if principal.may(ERASE_CUSTOMERS):
        return None
    erasing = [i for i, e in enumerate(events) if e.type == ERASED_TYPE]
    if not erasing:
        return None
    reason = f"erasing a customer needs the scope '{ERASE_CUSTOMERS}'"
    items = [EventError(i, events[i].id, "type", reason) for i in erasing]
    return error_response(403, f"{reason}; nothing was stored", errors_json(items))


async def store_events(
    res: IngestResources, events: list[Event], index_of: dict[str, int]
) -> AppendResult | JSONResponse:
    """Store valid events all or nothing, and wake the relay; or the answer that says why
    not (503 shedding or database away, 409 an id reused; `index_of` places each id)."""
    shed = _shed(res)
    if shed is not None:
        return shed
    try:
        async with _in_flight(res):
            result = await store_batch(res.pool, events, res.settings.db_timeout_seconds)
    except Unavailable as error:
        return error_response(
            503,
            f"the database is not answering ({error}); nothing was stored, retry",
            headers={"Retry-After": "2"},
        )
    except Conflict as conflict:
        items = [
            EventError(index_of[i], i, "id", "already stored with other content")
            for i in conflict.ids
        ]
        return error_response(
            409, "event ids reused with other content; nothing was stored", errors_json(items)
        )
    if res.relay is not None:
        res.relay.notify()
    return result


def rate_limited(res: IngestResources, principal: Principal, events: int) -> JSONResponse | None:
    """429 with Retry-After when the key has sent more than its rate (per instance)."""
    settings = res.settings
    rate = principal.rate_limit or settings.rate_limit_events_per_second
    capacity = max(rate * settings.rate_limit_burst_seconds, settings.max_batch)
    wait = res.caches.rate_buckets.take(principal.key_id, events, rate, capacity, time.monotonic())
    if wait == 0:
        return None
    return error_response(
        429,
        f"this key is over its rate of {rate:g} events per second; "
        "nothing was stored, retry after Retry-After seconds",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


def _shed(res: IngestResources) -> JSONResponse | None:
    """Refuse before taking more than the system can hold: 503 with Retry-After."""
    settings = res.settings
    if res.relay is not None and res.relay.status.pending > settings.outbox_backlog_limit:
        return error_response(
            503,
            f"{res.relay.status.pending} events wait for the broker, over the limit of "
            f"{settings.outbox_backlog_limit}; nothing was stored, retry later",
            headers={"Retry-After": "5"},
        )
    if res.caches.in_flight.locked():
        return error_response(
            503,
            f"{settings.max_in_flight} requests are being stored; retry",
            headers={"Retry-After": "1"},
        )
    return None


@contextlib.asynccontextmanager
async def _in_flight(res: IngestResources) -> AsyncIterator[None]:
    async with res.caches.in_flight:
        yield


class EventTypes(BaseModel):
    types: list[str] = Field(
        description="Every event type, sorted; its schema is at /v1/schemas/{type}.",
        examples=[["crm.customer.registered", "crm.purchase.completed"]],
    )


class JsonSchemaDocument(BaseModel):
    """A JSON Schema (2020-12) document: the keywords every event type's schema has; the
    schemas of its properties follow JSON Schema's own meta-schema."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_uri: str = Field(
        alias="$schema", examples=["https://json-schema.org/draft/2020-12/schema"]
    )
    id: str = Field(alias="$id")
    title: str
    type: str = Field(examples=["object"])
    properties: dict[str, dict[str, Any]]
    required: list[str]


class AsyncApiDocument(BaseModel):
    """An AsyncAPI 3.0 document: its top-level members; their contents follow the AsyncAPI
    specification's own schema."""

    model_config = ConfigDict(extra="allow")

    asyncapi: str = Field(examples=["3.0.0"])
    info: dict[str, Any]
    channels: dict[str, dict[str, Any]]
    operations: dict[str, dict[str, Any]]
    components: dict[str, Any]


@router.get(
    "/schemas",
    response_model=EventTypes,
    summary="The event types, with the JSON Schema of each",
    tags=["schemas"],
)
async def list_schemas() -> EventTypes:
    return EventTypes(types=KNOWN_TYPE_NAMES)


@router.get(
    "/schemas/{event_type}",
    response_model=JsonSchemaDocument,
    response_model_by_alias=True,
    summary="JSON Schema (2020-12) of one event type, envelope included",
    tags=["schemas"],
    responses={404: {"model": ErrorBody, "description": "Unknown event type."}},
)
async def get_schema(event_type: str) -> JSONResponse:
    found = all_schemas().get(event_type)
    if found is None:
        raise HTTPException(404, f"unknown event type '{event_type}'")
    return JSONResponse(found)  # the document as made, keyword order included


@router.get(
    "/asyncapi.json",
    response_model=AsyncApiDocument,
    summary="AsyncAPI 3.0 document of the topics",
    tags=["schemas"],
)
async def get_asyncapi() -> JSONResponse:
    return JSONResponse(asyncapi())
