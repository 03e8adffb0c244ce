"""CloudEvents content modes: a binary-mode message reads as the same event as its
structured form (the expectations are written out by hand from the two protocol bindings)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.cloudevents_binding import (
    BindingError,
    DataNotJson,
    UnsupportedMediaType,
    decode_record,
    from_http_binary,
    http_is_binary,
    is_json,
    normalised,
    record_event,
)
from shared.events import RECORDED, InvalidEvent, validate_event

DATA = {"order_id": "o-1", "amount": "19.99", "currency": "USD"}
STRUCTURED: dict[str, Any] = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "shop/Zürich web",
    "type": "crm.purchase.completed",
    "time": "2026-01-05T10:00:00+01:00",
    "subject": "cust-1",
    "datacontenttype": "application/json",
    "schemaversion": "1",
    "data": DATA,
}
# The same event as HTTP headers: the source percent-encoded (space, and the UTF-8 of ü).
HTTP_HEADERS = [
    (b"content-type", b"application/json; charset=utf-8"),
    (b"ce-specversion", b"1.0"),
    (b"CE-ID", b"e-1"),
    (b"ce-source", b"shop/Z%c3%bcrich%20web"),
    (b"ce-type", b"crm.purchase.completed"),
    (b"ce-time", b"2026-01-05T10:00:00+01:00"),
    (b"ce-subject", b"cust-1"),
    (b"ce-schemaversion", b'"1"'),  # a quoted-string, as older senders wrote values
    (b"authorization", b"Bearer x"),
]


def test_an_http_binary_event_is_its_structured_form() -> None:
    assert http_is_binary("application/json; charset=utf-8", HTTP_HEADERS)
    assert from_http_binary(HTTP_HEADERS, orjson.dumps(DATA)) == STRUCTURED


def test_http_mode_follows_the_content_type_then_ce_specversion() -> None:
    assert not http_is_binary("application/cloudevents+json", HTTP_HEADERS)
    assert not http_is_binary("application/cloudevents-batch+json", HTTP_HEADERS)
    assert not http_is_binary("application/json", [(b"content-type", b"application/json")])


def test_a_kafka_binary_record_is_its_structured_form() -> None:
    headers = [
        ("content-type", b"application/json;charset=UTF-8"),
        ("ce_specversion", b"1.0"),
        ("ce_id", b"e-1"),
        ("ce_source", "shop/Zürich web".encode()),  # Kafka: plain UTF-8, no percent-encoding
        ("ce_type", b"crm.purchase.completed"),
        ("ce_time", b"2026-01-05T10:00:00+01:00"),
        ("ce_subject", b"cust-1"),
        ("ce_schemaversion", b"1"),
    ]
    assert record_event(orjson.dumps(DATA), headers) == (STRUCTURED, True)
    event = decode_record(orjson.dumps(DATA), headers, RECORDED, position=("t", 1, 7))
    assert event.position == ("t", 1, 7)
    assert event.to_bytes() == validate_event(STRUCTURED, RECORDED).to_bytes()


def test_kafka_records_without_ce_headers_stay_structured() -> None:
    value = orjson.dumps({**STRUCTURED, "datacontenttype": "application/json; charset=utf-8"})
    assert record_event(value, []) == (STRUCTURED, False)
    relayed = [("content-type", b"application/cloudevents+json"), ("crm-seq", b"3")]
    assert record_event(orjson.dumps(STRUCTURED), relayed) == (STRUCTURED, False)
    with pytest.raises(UnsupportedMediaType):
        record_event(b"\x00", [("content-type", b"application/cloudevents+avro")])


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ('Application/JSON; charset="UTF-8"', True),
        ("application/json; charset=iso-8859-1", False),
        ("text/json", False),
        ("application/xml", False),
    ],
)
def test_json_with_parameters_is_json(declared: str, expected: bool) -> None:
    assert is_json(declared) is expected


def test_structured_datacontenttype_loses_its_parameters_only_when_json() -> None:
    with_charset = {**STRUCTURED, "datacontenttype": "application/json; charset=utf-8"}
    assert normalised(with_charset) == STRUCTURED
    xml = {**STRUCTURED, "datacontenttype": "application/xml"}
    assert normalised(xml) is xml


@pytest.mark.parametrize(
    ("extra", "body", "error", "field"),
    [
        ([(b"ce-datacontenttype", b"application/json")], b"{}", BindingError, "datacontenttype"),
        ([(b"ce-data", b"{}")], b"{}", BindingError, "data"),
        ([(b"ce-id", b"again")], b"{}", BindingError, "ce-id"),
        ([(b"ce-subject", b"%C0%A0")], b"{}", BindingError, "ce-subject"),  # overlong: not UTF-8
        ([], b"{not json", DataNotJson, "data"),
        ([(b"content-type", b"text/plain")], b"{}", UnsupportedMediaType, "datacontenttype"),
    ],
)
def test_binary_messages_that_carry_no_event(
    extra: list[tuple[bytes, bytes]], body: bytes, error: type[Exception], field: str
) -> None:
    headers = [h for h in HTTP_HEADERS if h[0] != b"content-type" or not extra] + extra
    with pytest.raises(error) as caught:
        from_http_binary(headers, body)
    assert isinstance(caught.value, BindingError)
    assert caught.value.field == field


def test_a_bad_kafka_record_is_an_invalid_event_naming_the_header() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"\xff")]
    with pytest.raises(InvalidEvent) as caught:
        decode_record(b"{}", headers, RECORDED)
    assert [e.field for e in caught.value.errors] == ["ce_id"]
