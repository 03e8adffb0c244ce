"""Log lines name the request and the trace they were written in (JSON lines, no I/O)."""

from __future__ import annotations

import logging

import orjson
from opentelemetry.sdk.trace import TracerProvider

from shared import tracing
from shared.logs import JsonFormatter


def line(message: str) -> dict[str, object]:
    record = logging.LogRecord("crm", logging.INFO, __file__, 1, message, (), None)
    parsed: dict[str, object] = orjson.loads(JsonFormatter("scoring").format(record))
    return parsed


def test_a_line_outside_any_request_or_span_names_neither() -> None:
    entry = line("idle")
    assert "request_id" not in entry
    assert "trace_id" not in entry


def test_a_line_written_during_a_request_names_its_request_id() -> None:
    token = tracing.request_id.set("req-42")
    try:
        assert line("handling")["request_id"] == "req-42"
    finally:
        tracing.request_id.reset(token)
    assert "request_id" not in line("after")


def test_a_line_written_in_a_span_names_the_trace_and_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        entry = line("inside")
        context = span.get_span_context()
    assert entry["trace_id"] == f"{context.trace_id:032x}"
    assert entry["span_id"] == f"{context.span_id:016x}"
    assert len(str(entry["trace_id"])) == 32


def test_a_traceparent_link_is_parsed_and_a_malformed_one_ignored() -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    link = tracing.link_to(f"00-{trace_id}-{span_id}-01".encode())
    assert link is not None
    assert (link.context.trace_id, link.context.span_id) == (int(trace_id, 16), int(span_id, 16))
    for bad in (None, "", "00-xyz", f"00-{'0' * 32}-{span_id}-01", f"01-{trace_id}-{span_id}-01"):
        assert tracing.link_to(bad) is None
    many = [f"00-{i:032x}-{i:016x}-01" for i in range(1, 200)]
    assert len(tracing.links([*many, *many])) == tracing.MAX_LINKS
