"""Request ids and traces across HTTP -> event store -> Kafka -> consumers, on the real broker
and PostgreSQL: the caller's request id comes back (a made-up one when it sent none or an
unusable one), the caller's W3C traceparent is continued by ingest's server span, and the
batch spans of scoring and reporting link to the span the event was stored under, whether
the context came in the HTTP header or in the event's CloudEvents tracing extension."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import tracing
from shared.settings import CommonSettings
from tests.helpers import purchase, read_topic, wait_until
from tests.integration.test_auth import all_services, bearer, issue, known_everywhere

pytestmark = pytest.mark.integration


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)
    provider.shutdown()


def caller_context() -> tuple[str, str, str]:
    """A trace id, a span id and the traceparent a caller would send with them."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def linked_from(spans: tuple[ReadableSpan, ...], consumer: str, trace_id: str) -> set[str]:
    """Span ids (hex) the batch spans of a consumer link to within the given trace."""
    return {
        f"{link.context.span_id:016x}"
        for span in spans
        if span.name == f"process {consumer}" and span.kind is SpanKind.CONSUMER
        for link in span.links
        if f"{link.context.trace_id:032x}" == trace_id
    }


async def test_every_response_carries_a_request_id(settings: CommonSettings) -> None:
    _, token = await issue(settings, ["admin"])
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        for client in clients.values():
            given = await client.get("/healthz", headers={"X-Request-ID": "page-7.a:b"})
            assert given.headers["x-request-id"] == "page-7.a:b"
            made = await client.get("/healthz")
            assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
            unusable = await client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
            assert re.fullmatch(r"[0-9a-f]{32}", unusable.headers["x-request-id"])
        refused = await clients["scoring"].get("/v1/segments", headers={"X-Request-ID": "r-401"})
        assert refused.status_code == 401
        assert refused.headers["x-request-id"] == "r-401"  # errors too


async def test_a_trace_runs_from_the_request_through_kafka_to_each_fold(
    settings: CommonSettings, exported: InMemorySpanExporter
) -> None:
    _, token = await issue(settings, ["admin"])
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        trace_id, caller_span, traceparent = caller_context()
        posted = await clients["ingest"].post(
            "/v1/events",
            json=purchase("c-traced", "12.00"),
            headers={**bearer(token), "traceparent": traceparent},
        )
        assert posted.status_code == 202, posted.text

        servers = [
            s
            for s in exported.get_finished_spans()
            if s.kind is SpanKind.SERVER and f"{s.context.trace_id:032x}" == trace_id
        ]
        assert [s.name for s in servers] == ["POST /v1/events"]
        (server,) = servers
        assert server.parent is not None
        assert f"{server.parent.span_id:016x}" == caller_span  # the caller's trace continued
        assert server.attributes is not None
        assert server.attributes["http.response.status_code"] == 202
        stored_under = f"{server.context.span_id:016x}"

        for consumer in ("scoring", "reporting"):

            async def linked(consumer: str = consumer) -> bool:
                spans = exported.get_finished_spans()
                return stored_under in linked_from(spans, consumer, trace_id)

            await wait_until(linked, what=f"{consumer}'s batch span linked to the request's span")


async def test_the_cloudevents_tracing_extension_is_linked_too(
    settings: CommonSettings, exported: InMemorySpanExporter
) -> None:
    _, token = await issue(settings, ["admin"])
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        trace_id, producer_span, traceparent = caller_context()
        event = {**purchase("c-extension", "3.00"), "traceparent": traceparent}
        posted = await clients["ingest"].post("/v1/events", json=event, headers=bearer(token))
        assert posted.status_code == 202, posted.text

        async def linked() -> bool:
            spans = exported.get_finished_spans()
            return producer_span in linked_from(spans, "scoring", trace_id)

        await wait_until(linked, what="scoring's batch span linked to the extension's span")


async def test_records_carry_the_context_only_with_tracing_on(
    settings: CommonSettings, exported: InMemorySpanExporter
) -> None:
    """On: the gateway's copy on the topic carries the request span's traceparent. Off (the
    default): the same request leaves no trace context on the record."""
    _, token = await issue(settings, ["admin"])
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        for customer, on in (("c-traced-on", True), ("c-traced-off", False)):
            tracing.use(tracing._provider if on else None)
            trace_id, _, traceparent = caller_context()
            posted = await clients["ingest"].post(
                "/v1/events",
                json=purchase(customer, "1.00"),
                headers={**bearer(token), "traceparent": traceparent},
            )
            assert posted.status_code == 202

            async def published(customer: str = customer) -> list[dict[str, bytes]]:
                records = await read_topic(settings.kafka_bootstrap_servers, "crm.purchases")
                return [dict(r.headers) for r in records if r.key == customer.encode()]

            (headers,) = await wait_until(published, what=f"{customer}'s record on the topic")
            carried = headers.get(tracing.TRACEPARENT)
            if on:
                assert carried is not None
                assert carried.decode().split("-")[1] == trace_id
            else:
                assert carried is None
