"""CloudEvents 1.0 content modes over HTTP and Kafka: one event, whichever way it travels.

- Structured mode: the whole event is one JSON object (`application/cloudevents+json`, or
  plain `application/json` on POST /v1/events; on Kafka, any record without a
  `ce_specversion` header, or with a `content-type` header `application/cloudevents+json`).
- Binary mode: the attributes travel as headers, the body (record value) is the event's
  `data`, and the Content-Type (Kafka: `content-type`) header is its `datacontenttype`.
  HTTP protocol binding 1.0, section 3.1: headers `ce-<attribute>`, case-insensitive, values
  percent-encoded UTF-8 (a double-quoted value is unquoted first). Kafka protocol binding
  1.0, section 3.2: headers `ce_<attribute>`, values UTF-8.

Both modes give the same structured JSON object, which `validate_event` then judges: an event
is stored and published as the same bytes whichever mode it came in. The data of every event
type is JSON, so `datacontenttype` is `application/json`; parameters are accepted
(`application/json; charset=utf-8`: JSON is UTF-8 by RFC 8259, any other charset is refused)
and dropped, so the stored event reads `application/json` either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from shared.events import Event, FieldError, InvalidEvent, ValidationContext, validate_event

HTTP_PREFIX = "ce-"
KAFKA_PREFIX = "ce_"
JSON_MEDIA = "application/json"
# Content types of structured (and batched) mode start with this (both bindings, section 3).
EVENT_FORMAT_PREFIX = "application/cloudevents"
STRUCTURED_JSON = "application/cloudevents+json"
KAFKA_CONTENT_TYPE = "content-type"
# The content type the outbox relay gives its records (the common case, taken at a glance).
RELAYED_CONTENT_TYPE = STRUCTURED_JSON.encode()
OWN_HEADER_PREFIX = "crm-"
_UTF8 = frozenset({"utf-8", "utf8"})
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)  # RFC 9110 5.6.4: backslash escapes one byte


class BindingError(ValueError):
    """A message that does not carry a readable event; `field` says where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedMediaType(BindingError):
    """The data (binary mode) or the event format (structured mode) is not JSON."""


class DataNotJson(BindingError):
    """The body or record value is not valid JSON."""


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """The type/subtype of a Content-Type value, lower-cased, and its parameters (names
    lower-cased, values unquoted): RFC 9110 section 8.3.1."""
    kind, *parameters = (content_type or "").split(";")
    found: dict[str, str] = {}
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        found[name.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), found


def is_json(content_type: str) -> bool:
    """Whether a datacontenttype or Content-Type says JSON: `application/json`, with any
    parameters but a charset other than UTF-8."""
    kind, parameters = media_type(content_type)
    charset = parameters.get("charset")
    return kind == JSON_MEDIA and (charset is None or charset.lower() in _UTF8)


def normalised(raw: Any) -> Any:
    """A structured event whose `datacontenttype` is JSON with parameters, without them
    (anything else is left for the validation to judge)."""
    if isinstance(raw, dict):
        declared = raw.get("datacontenttype")
        if isinstance(declared, str) and declared != JSON_MEDIA and is_json(declared):
            return {**raw, "datacontenttype": JSON_MEDIA}
    return raw


def from_binary(
    attributes: dict[str, str], content_type: str | None, data: bytes
) -> dict[str, Any]:
    """The structured form of a binary-mode event: its attributes, and the data parsed as
    JSON. No content type means JSON, the data of every event type."""
    for reserved in ("data", "datacontenttype"):
        if reserved in attributes:
            raise BindingError(
                reserved,
                f"in binary mode the {reserved} is not a header "
                f"({'the body' if reserved == 'data' else 'the Content-Type header'} carries it)",
            )
    if content_type is not None and not is_json(content_type):
        raise UnsupportedMediaType(
            "datacontenttype",
            f"the data of every event type is JSON (application/json), not '{content_type}'",
        )
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise DataNotJson("data", f"not valid JSON: {error}") from None
    event: dict[str, Any] = {**attributes, "data": parsed}
    if content_type is not None:
        event["datacontenttype"] = JSON_MEDIA
    return event


# ---- HTTP -------------------------------------------------------------------------------


def http_is_binary(content_type: str | None, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Binary mode: a `ce-specversion` header, and a Content-Type that is not an event
    format (which makes it structured, whatever the headers). Without `ce-specversion` a
    request is structured, as POST /v1/events always took it."""
    if media_type(content_type)[0].startswith(EVENT_FORMAT_PREFIX):
        return False
    marker = (HTTP_PREFIX + "specversion").encode()
    return any(name.lower() == marker for name, _ in headers)


def http_attributes(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The attributes of the `ce-` headers (raw ASGI pairs), unquoted and percent-decoded."""
    found: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if not name.startswith(HTTP_PREFIX):
            continue
        attribute = _attribute_name(name, HTTP_PREFIX, found)
        found[attribute] = _percent_decoded(_unquoted(raw_value.strip()), name)
    return found


def from_http_binary(headers: Sequence[tuple[bytes, bytes]], body: bytes) -> dict[str, Any]:
    content_type = next(
        (v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), None
    )
    return from_binary(http_attributes(headers), content_type, body)


def _unquoted(value: bytes) -> bytes:
    """RFC 9110 5.6.4 quoted-string: accepted for values of older senders (HTTP binding
    3.1.3.2)."""
    if len(value) >= 2 and value.startswith(b'"') and value.endswith(b'"'):
        return _QUOTED_PAIR.sub(rb"\1", value[1:-1])
    return value


def _percent_decoded(value: bytes, header: str) -> str:
    """One round of percent-decoding; byte sequences that are not UTF-8 (overlong forms
    included) are refused, as the binding requires."""
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise BindingError(header, "not UTF-8 once percent-decoded") from None


def _attribute_name(header: str, prefix: str, found: dict[str, str]) -> str:
    attribute = header[len(prefix) :]
    if attribute in found:
        raise BindingError(header, "the header appears more than once")
    return attribute


# ---- Kafka ------------------------------------------------------------------------------


def is_binding_header(name: str) -> bool:
    """Whether a Kafka header belongs to the CloudEvents binding (an attribute, or the
    content type): what a copy of a record must keep to stay the same event."""
    lowered = name.lower()
    return lowered.startswith(KAFKA_PREFIX) or lowered == KAFKA_CONTENT_TYPE


def record_event(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> tuple[Any, bool]:
    """The structured form of a Kafka record's event, and whether it came in binary mode
    (raises BindingError)."""
    content_type: str | None = None
    attributes: dict[str, str] = {}
    for raw_name, raw_value in headers:
        if raw_name.startswith(OWN_HEADER_PREFIX):
            continue  # the relay's own headers (log, sequence number, epoch)
        if raw_name == KAFKA_CONTENT_TYPE and raw_value == RELAYED_CONTENT_TYPE:
            content_type = STRUCTURED_JSON  # every record a relay publishes: nothing to parse
            continue
        name = raw_name.lower()
        if name == KAFKA_CONTENT_TYPE:
            content_type = _utf8(raw_value, raw_name)
        elif name.startswith(KAFKA_PREFIX):
            attributes[_attribute_name(name, KAFKA_PREFIX, attributes)] = _utf8(raw_value, raw_name)
    kind = media_type(content_type)[0] if content_type != STRUCTURED_JSON else STRUCTURED_JSON
    if kind.startswith(EVENT_FORMAT_PREFIX):
        if kind != STRUCTURED_JSON:
            raise UnsupportedMediaType(KAFKA_CONTENT_TYPE, f"unsupported event format '{kind}'")
    elif "specversion" in attributes:
        return from_binary(attributes, content_type, value or b""), True
    try:
        return normalised(orjson.loads(value or b"")), False
    except orjson.JSONDecodeError as error:
        raise DataNotJson("body", f"not JSON: {error}") from None


def decode_record(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    context: ValidationContext,
    *,
    position: tuple[str, int, int] | None = None,
    origin: tuple[str, int] | None = None,
) -> Event:
    """Decode and validate a Kafka record in either content mode (raises InvalidEvent);
    `position` and `origin` say where it was read and which log published it."""
    try:
        raw, binary = record_event(value, headers)
    except BindingError as error:
        raise InvalidEvent([FieldError(error.field, str(error))]) from None
    # A NUL hides in a structured value only as the escape \\u0000; in headers, anywhere.
    may_hold_nul = None if binary else b"\\u0000" in (value or b"")
    event = validate_event(raw, context, may_hold_nul=may_hold_nul)
    return Event(event.envelope, event.data, position, origin)


def _utf8(value: bytes, header: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BindingError(header, "a header value must be UTF-8") from None
