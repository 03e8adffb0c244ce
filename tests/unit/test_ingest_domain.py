from __future__ import annotations

import orjson
import pytest

from services.ingest.domain import BodyError, decode_body, validate_batch
from shared.events import ValidationContext
from tests.unit.test_events import raw


def test_single_event_and_arrays_by_media_type() -> None:
    one = orjson.dumps(raw())
    many = orjson.dumps([raw(), raw(id="e-2")])
    assert len(decode_body(one, "application/cloudevents+json", 10)) == 1
    assert len(decode_body(many, "application/cloudevents-batch+json", 10)) == 2
    assert len(decode_body(many, "application/json; charset=utf-8", 10)) == 2
    assert len(decode_body(one, None, 10)) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{", "application/json", 400),
        (b"[]", "application/json", 400),
        (b"[{}]", "application/cloudevents+json", 400),
        (b"{}", "application/cloudevents-batch+json", 400),
        (b"{}", "text/plain", 415),
        (orjson.dumps([{}] * 11), "application/json", 413),
    ],
)
def test_unusable_bodies(body: bytes, content_type: str, status: int) -> None:
    with pytest.raises(BodyError) as caught:
        decode_body(body, content_type, 10)
    assert caught.value.status == status


def test_every_bad_event_is_reported_with_index_id_and_field() -> None:
    batch = [raw(id="ok"), raw(id="bad-1", subject="no spaces"), "x", raw(id="bad-3", time="x")]
    events, errors = validate_batch(batch, ValidationContext())
    assert [e.id for e in events] == ["ok"]
    assert {(e.index, e.id, e.field) for e in errors} == {
        (1, "bad-1", "subject"),
        (2, None, "body"),
        (3, "bad-3", "time"),
    }


def test_same_id_twice_in_a_batch() -> None:
    same, _ = validate_batch([raw(), raw()], ValidationContext())
    assert len(same) == 1
    changed = raw()
    changed["data"] = {**changed["data"], "amount": "99.00"}
    _, errors = validate_batch([raw(), changed], ValidationContext())
    assert [(e.index, e.field) for e in errors] == [(1, "id")]


def test_identity_is_source_and_id() -> None:
    """CloudEvents 1.0: an id is unique within its source; two systems may both send "1001"."""
    both, errors = validate_batch([raw(), raw(source="elsewhere")], ValidationContext())
    assert errors == []
    assert [e.identity for e in both] == [
        (raw()["source"], raw()["id"]),
        ("elsewhere", raw()["id"]),
    ]


def test_the_services_own_sources_are_refused() -> None:
    """A client must not take the identity of a derived event (an SLA breach, a tier change)
    before the service emits it."""
    events, errors = validate_batch([raw(source="crm/complaints")], ValidationContext())
    assert events == []
    assert [(e.index, e.field) for e in errors] == [(0, "source")]
