"""Request ids and distributed tracing across HTTP -> event store -> Kafka -> consumers.

Every HTTP response carries `X-Request-ID` (the caller's, when it sent a usable one) and
every log line written while the request runs names it. Tracing follows W3C Trace Context
(https://www.w3.org/TR/trace-context/) with OpenTelemetry: off by default, on when
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, exported
over OTLP/HTTP (the exporter reads the other standard `OTEL_*` variables itself).

How a trace travels: a request's server span (continuing the caller's `traceparent`) is the
context its events are stored under; the outbox keeps it beside each event and the relay
sends it as the record header `traceparent`; each consumer's batch span links to the
contexts of the records it applied (a batch folds many traces: links, not a parent, as the
OpenTelemetry messaging conventions advise), and events a fold publishes (derived events)
carry that batch span on. An event that itself carries the CloudEvents distributed tracing
extension (`traceparent`, set by its producer) is linked the same way. With tracing off the
OpenTelemetry API is a no-op: no header is written and no context is kept.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT = "traceparent"  # the W3C header, the Kafka record header and the CE extension
MAX_LINKS = 64  # per consumer batch: enough to follow a sample, bounded for a 1000-record batch
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

# A caller's request id is kept only if it is short and plain (it ends up in log lines).
_USABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# version 00: trace id (32 hex, not all 0), span id (16 hex, not all 0), flags (2 hex).
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def configure(service: str) -> None:
    """Turn tracing on for this process when an OTLP endpoint is configured."""
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as missing:
        raise SystemExit(
            "tracing is configured (OTEL_EXPORTER_OTLP_ENDPOINT) but the OpenTelemetry SDK "
            "is not installed: pip install 'crm-analytics[tracing]'"
        ) from missing
    provider = SdkTracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use(provider)


def use(provider: TracerProvider | None) -> None:
    """The provider spans go to (None: tracing off). Kept here, not as OpenTelemetry's
    global, so tests can switch it per test."""
    global _provider
    _provider = provider


def enabled() -> bool:
    return _provider is not None


def tracer() -> Tracer:
    return (_provider or trace.NoOpTracerProvider()).get_tracer("crm-analytics")


def current_traceparent() -> str | None:
    """The current span as a `traceparent` value, or None (tracing off, no span)."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def link_to(traceparent: str | bytes | None) -> Link | None:
    """A link to the span a `traceparent` names; None for a missing or malformed one (a
    producer's bad header must not fail a batch)."""
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", "replace")
    match = _TRACEPARENT.fullmatch(traceparent or "")
    if match is None or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
        return None
    context = SpanContext(
        int(match[1], 16),
        int(match[2], 16),
        is_remote=True,
        trace_flags=TraceFlags(int(match[3], 16)),
    )
    return Link(context)


def links(traceparents: Iterable[str | bytes | None]) -> list[Link]:
    """Distinct links to at most MAX_LINKS of the given contexts."""
    found: dict[tuple[int, int], Link] = {}
    for value in traceparents:
        link = link_to(value)
        if link is not None:
            found.setdefault((link.context.trace_id, link.context.span_id), link)
            if len(found) == MAX_LINKS:
                break
    return list(found.values())


@contextlib.contextmanager
def consumer_span(consumer: str, records: int, linked: list[Link]) -> Iterator[None]:
    """The span of one consumer batch's commit (no-op with tracing off)."""
    if _provider is None:
        yield
        return
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.consumer.group.name": consumer,
        "messaging.batch.message_count": records,
    }
    with tracer().start_as_current_span(
        f"process {consumer}", kind=SpanKind.CONSUMER, links=linked, attributes=attributes
    ):
        yield


def _request_id_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER.encode():
            given = str(value.decode("latin-1"))
            if _USABLE_REQUEST_ID.fullmatch(given):
                return given
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """The outermost layer: a request id for the response and the log lines, and, with
    tracing on, a server span continuing the caller's `traceparent`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id_of(scope)
        token = request_id.set(rid)
        status = 500

        async def with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (REQUEST_ID_HEADER.encode(), rid.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            with self._server_span(scope, rid) as span:
                await self.app(scope, receive, with_request_id)
                if span is not None:
                    route = getattr(scope.get("route"), "path", None)
                    if route:
                        span.update_name(f"{scope['method']} {route}")
                        span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
        finally:
            request_id.reset(token)

    @staticmethod
    @contextlib.contextmanager
    def _server_span(scope: Scope, rid: str) -> Iterator[trace.Span | None]:
        if _provider is None:
            yield None
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = _propagator.extract(carrier)
        attributes = {
            "http.request.method": scope["method"],
            "url.path": scope["path"],
            "crm.request_id": rid,
        }
        with tracer().start_as_current_span(
            scope["method"], context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            yield span
