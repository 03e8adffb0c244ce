"""Segment- and RudderStack-compatible collection: POST /v1/track, /v1/identify, /v1/batch
(and /v1/page, /v1/screen, /v1/group, /v1/alias, which map to nothing and say so).

Messages are mapped by `services.ingest.segment`, then validated and stored like POST
/v1/events: all or nothing, a retried messageId a duplicate. The answer is 200 (as Segment
answers) with what was stored, what was a duplicate and what was ignored, and why.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import Counter as Tally
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import Counter
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from services.ingest import segment
from services.ingest.api import (
    WRITE_EVENTS,
    EventErrors,
    errors_json,
    rate_limited,
    read_body,
    receipt_of,
    store_events,
)
from services.ingest.domain import BodyError, EventError, validate_batch
from services.ingest.resources import Ingest, IngestResources
from shared.auth import AUTH_ERRORS, Principal, bearer
from shared.http import ErrorBody, error_response
from shared.service import validation_context

log = logging.getLogger(__name__)

# Segment's HTTP API takes application/json; analytics.js sends text/plain (no CORS preflight).
MEDIA_TYPES = frozenset({"application/json", "text/plain", ""})
MESSAGES = Counter(
    "crm_segment_messages_total",
    "Segment/RudderStack messages by call and outcome (stored, duplicate, ignored, invalid).",
    ["call", "outcome"],
)


class WriteKey(HTTPBasic):
    """Segment's authentication: HTTP Basic with the write key as user name and no password.
    Here the write key is an API key with the scope events:write."""

    async def __call__(self, request: HTTPConnection) -> str | None:  # type: ignore[override]
        scheme, credentials = get_authorization_scheme_param(request.headers.get("Authorization"))
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise HTTPException(
                401,
                "the Basic credentials are not base64 of `<API key>:`",
                headers={"WWW-Authenticate": 'Basic realm="crm"'},
            ) from None
        # Segment: "key:"; old senders leave the colon out, which reads the same here.
        return decoded.partition(":")[0]


WRITE_KEY = WriteKey(
    auto_error=False,
    scheme_name="writeKey",
    realm="crm",
    description="Segment's form: `Authorization: Basic base64(<API key>:)`, the API key as "
    "user name and an empty password.",
)


async def segment_caller(
    request: Request,
    write_key: Annotated[str | None, Security(WRITE_KEY)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """The caller's key, as Segment sends it (Basic) or as every other route takes it."""
    if write_key is not None:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=write_key)
    elif credentials is None:
        raise HTTPException(
            401,
            "no API key: send `Authorization: Basic <base64 of key:>` (a Segment write key) "
            "or `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": 'Bearer realm="crm", Basic realm="crm"'},
        )
    principal: Principal = await WRITE_EVENTS(request, credentials)
    return principal


router = APIRouter(prefix="/v1", tags=["segment"], responses=AUTH_ERRORS)


class IgnoredMessage(BaseModel):
    index: int = Field(description="Position of the message (0 for a single call).")
    messageId: str | None  # noqa: N815 - Segment's spelling
    type: str = Field(examples=["track"])
    event: str | None = Field(examples=["Product Viewed"])
    reason: str


class SegmentAccepted(BaseModel):
    success: bool = Field(True, description="As Segment answers; the rest says what was kept.")
    accepted: int = Field(description="Messages stored as new events.")
    duplicates: list[str] = Field(description="Ids (messageIds) stored before: kept once.")
    ignored: list[IgnoredMessage] = Field(description="Messages that map to no CRM event.")
    receipt: str = Field(
        description="As POST /v1/events answers: send it as X-CRM-Min-Position to read your writes."
    )


_MESSAGE_SCHEMA = segment.SegmentMessage.model_json_schema()
_BODIES: dict[str, dict[str, Any]] = {
    "message": _MESSAGE_SCHEMA,
    "batch": {
        "type": "object",
        "required": ["batch"],
        "properties": {"batch": {"type": "array", "items": _MESSAGE_SCHEMA, "minItems": 1}},
        "additionalProperties": True,
    },
}


def _body_schema(kind: str) -> dict[str, Any]:
    content = {media: {"schema": _BODIES[kind]} for media in ("application/json", "text/plain")}
    return {"requestBody": {"required": True, "content": content}}


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Not JSON, or a batch without messages."},
    409: {"model": EventErrors, "description": "A messageId was stored with other content."},
    413: {"model": ErrorBody, "description": "Body or batch over the limit."},
    415: {"model": ErrorBody, "description": "Unsupported media type."},
    422: {"model": EventErrors, "description": "Invalid messages; nothing was stored."},
    429: {"model": ErrorBody, "description": "The key is over its rate; retry after Retry-After."},
    503: {"model": ErrorBody, "description": "Shedding load; retry after Retry-After seconds."},
}


async def collect(
    request: Request, res: IngestResources, principal: Principal, call: str
) -> JSONResponse:
    """One Segment call: map its messages, store the mapped ones all or nothing, say what
    became of each."""
    settings = res.settings
    try:
        body = await read_body(request, settings.max_body_bytes)
        messages = _messages(body, request.headers.get("content-type"), call, settings.max_batch)
    except BodyError as error:
        return error_response(error.status, str(error))
    limited = rate_limited(res, principal, len(messages))
    if limited is not None:
        return limited
    single = None if call == "batch" else call
    outcomes = [segment.map_message(i, m, single) for i, m in enumerate(messages)]
    mapped = [o for o in outcomes if isinstance(o, segment.Mapped)]
    ignored = [o for o in outcomes if isinstance(o, segment.Ignored)]
    errors = [e for o in outcomes if isinstance(o, list) for e in o]
    events, invalid = validate_batch([m.event for m in mapped], validation_context(settings))
    errors += [_in_message_terms(mapped[e.index], e) for e in invalid]
    if errors:
        _count(call, outcomes, "invalid")
        bad = len({e.index for e in errors})
        detail = f"{bad} of {len(messages)} messages are invalid; nothing was stored"
        return error_response(422, detail, errors_json([_event_error(e) for e in errors]))
    index_of = {m.message_id: m.index for m in mapped}
    stored = await store_events(res, events, index_of)
    if isinstance(stored, JSONResponse):
        return stored
    _count(call, outcomes, "stored", duplicates=len(stored.duplicates))
    if ignored:
        log.info("segment messages ignored", extra={"call": call, "ignored": len(ignored)})
    answer = SegmentAccepted(
        accepted=len(stored.accepted),
        duplicates=stored.duplicates,
        receipt=receipt_of(res, events, stored),
        ignored=[
            IgnoredMessage(
                index=i.index, messageId=i.message_id, type=i.call, event=i.event, reason=i.reason
            )
            for i in ignored
        ],
    )
    return JSONResponse(answer.model_dump(mode="json"))


def _messages(body: bytes, content_type: str | None, call: str, max_messages: int) -> list[Any]:
    """The messages of a call: itself (its type from the path), or a batch's `batch`."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in MEDIA_TYPES:
        raise BodyError(415, f"unsupported media type '{kind}'")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BodyError(400, f"body is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise BodyError(400, "a Segment call is a JSON object")
    if call != "batch":
        return [parsed]
    batch = parsed.get("batch")
    if not isinstance(batch, list) or not batch:
        raise BodyError(400, "a batch carries its messages in a non-empty array `batch`")
    if len(batch) > max_messages:
        raise BodyError(413, f"a batch holds at most {max_messages} messages, got {len(batch)}")
    return batch


def _in_message_terms(mapped: segment.Mapped, error: EventError) -> segment.MessageError:
    return segment.MessageError(
        mapped.index, mapped.message_id, mapped.origin_of(error.field), error.message
    )


def _event_error(error: segment.MessageError) -> EventError:
    return EventError(error.index, error.message_id, error.field, error.message)


def _count(call: str, outcomes: list[segment.Outcome], verdict: str, duplicates: int = 0) -> None:
    """Count every message once: stored (or duplicate), ignored, or invalid with its batch."""
    tally: Tally[str] = Tally()
    for outcome in outcomes:
        tally["ignored" if isinstance(outcome, segment.Ignored) else verdict] += 1
    if duplicates:
        tally["stored"] -= duplicates
        tally["duplicate"] += duplicates
    for outcome_name, count in tally.items():
        MESSAGES.labels(call, outcome_name).inc(count)


def _route(call: str, summary: str, body: str = "message") -> None:
    async def endpoint(
        request: Request,
        res: Ingest,
        principal: Annotated[Principal, Depends(segment_caller)],
    ) -> JSONResponse:
        return await collect(request, res, principal, call)

    router.add_api_route(
        f"/{call}",
        endpoint,
        methods=["POST"],
        name=f"segment_{call}",
        operation_id=f"segment_{call}",
        summary=summary,
        response_model=SegmentAccepted,
        responses=RESPONSES,
        openapi_extra=_body_schema(body),
    )


_route("track", "Segment track: Order Completed and Order Refunded become purchase events")
_route("identify", "Segment identify: the traits become a customer update")
_route("batch", "Segment batch: any mix of calls, mapped message by message", "batch")
for _call in ("page", "screen", "group", "alias"):
    _route(_call, f"Segment {_call}: accepted, maps to no CRM event (answered as ignored)")
