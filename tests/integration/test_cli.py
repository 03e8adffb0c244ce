"""The operators' `crm` command on a real broker and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest

from shared import db
from shared.events import Topic
from shared.outbox import EVENT_STORE_SCHEMA, open_event_store
from shared.settings import CommonSettings
from tests.helpers import produce_raw, purchase, read_topic
from tooling import cli, rebuild

pytestmark = pytest.mark.integration


def write_orders(path: Path) -> None:
    path.write_text(
        "OrderID,Customer,Total,Placed\n"
        "A-1,alice,19.99,2025-03-01T10:00:00+00:00\n"
        "A-2,bob,5.00,2025-03-02T11:30:00+00:00\n"
        "A-3,bob,-4,2025-03-03T09:00:00+00:00\n"
        "A-4,carol,12.50,not a date\n"
    )


async def test_import_validates_reports_and_is_idempotent(
    settings: CommonSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = tmp_path / "orders.csv"
    write_orders(orders)
    mapping = {"order_id": "OrderID", "subject": "Customer", "amount": "Total", "time": "Placed"}
    await cli.import_file(settings, "purchases", orders, mapping)
    first = capsys.readouterr().out
    assert "stored 2, already there 0, conflicting ids 0, rejected 2" in first
    assert "line 4: data.amount" in first
    assert "line 5: time" in first

    await cli.import_file(settings, "purchases", orders, mapping)
    assert "stored 0, already there 2" in capsys.readouterr().out

    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch("SELECT id, subject FROM ingest.events ORDER BY id")
    finally:
        await conn.close()
    assert [(r["id"], r["subject"]) for r in rows] == [
        ("import:purchases:A-1", "alice"),
        ("import:purchases:A-2", "bob"),
    ]


async def test_topics_and_replay_of_dead_letters(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared import kafka

    await kafka.ensure_topics(settings)
    good = orjson.dumps(purchase("c-1", "3.00"))
    # A customer erased after the event: its dead letter must not travel again.
    of_erased = orjson.dumps(purchase("c-gone", "4.00", time=datetime.now(UTC) - timedelta(days=2)))
    pool = await open_event_store(settings.database_url)
    try:
        await db.migrate(pool, EVENT_STORE_SCHEMA, db.CONSUMER_MIGRATIONS)  # as ingest does
        await pool.execute("INSERT INTO erasures (customer_id, erased_at) VALUES ('c-gone', now())")
    finally:
        await pool.close()
    headers_topic = Topic.PURCHASES.value.encode()
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for value in (good, b"{broken", of_erased):
            await producer.send_and_wait(
                Topic.DEADLETTER,
                value=value,
                key=b"c-1",
                headers=[("crm-source-topic", headers_topic), ("crm-error", b"test")],
            )
    finally:
        await producer.stop()
    await produce_raw(settings.kafka_bootstrap_servers, Topic.PURCHASES, [good], key=b"c-1")

    await cli.topics(settings)
    listing = capsys.readouterr().out
    assert "crm.deadletter" in listing
    assert [
        line.split()[-1] for line in listing.splitlines() if line.startswith("crm.deadletter")
    ] == ["3"]

    await cli.replay_deadletter(settings, dry_run=False)
    assert (
        capsys.readouterr().out.strip()
        == "re-published: 1, skipped (customer erased): 1, still invalid: 1"
    )
    republished = await read_topic(settings.kafka_bootstrap_servers, Topic.PURCHASES)
    assert [r.value for r in republished] == [good, good]  # the raw one, then the replay


async def test_rebuild_refuses_ingest_and_a_service_never_started(
    settings: CommonSettings,
) -> None:
    with pytest.raises(rebuild.RebuildError, match="event store"):
        await rebuild.rebuild("ingest", settings)
    with pytest.raises(rebuild.RebuildError, match="start it once"):
        await rebuild.rebuild("reporting", settings)
    with pytest.raises(rebuild.RebuildError, match="no service"):
        await rebuild.rebuild("billing", settings)


async def test_a_binary_mode_dead_letter_keeps_its_attributes_and_replays_with_them(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """CloudEvents binary mode keeps the attributes in `ce_` headers: the dead letter carries
    them (a copy of the value alone is no event) and the replay publishes them again."""
    from aiokafka import ConsumerRecord

    from shared import kafka
    from shared.consumer import dead_letter

    await kafka.ensure_topics(settings)
    attributes = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"bin-dl-1"),
        ("ce_source", b"shop/pos"),
        ("ce_type", b"crm.purchase.completed"),
        ("ce_time", (datetime.now(UTC) - timedelta(hours=1)).isoformat().encode()),
        ("ce_subject", b"c-bin"),
        ("content-type", b"application/json; charset=utf-8"),
    ]
    value = orjson.dumps({"order_id": "b-1", "amount": "7.25", "currency": "USD"})
    original = ConsumerRecord(
        Topic.PURCHASES.value,
        0,
        41,
        0,
        0,
        b"c-bin",
        value,
        None,
        5,
        len(value),
        [*attributes, ("x-other", b"dropped")],
    )
    key, letter, headers = dead_letter(original, "a reason of the time", "ingest-archive")
    assert letter == value
    assert [h for h in headers if h[0].startswith("ce_") or h[0] == "content-type"] == attributes
    assert ("x-other", b"dropped") not in headers

    producer = kafka.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(Topic.DEADLETTER, value=letter, key=key, headers=headers)
    finally:
        await producer.stop()
    await cli.replay_deadletter(settings, dry_run=False)
    assert capsys.readouterr().out.strip() == "re-published: 1"
    (replayed,) = [
        r
        for r in await read_topic(settings.kafka_bootstrap_servers, Topic.PURCHASES)
        if r.key == b"c-bin"
    ]
    assert replayed.value == value
    assert list(replayed.headers) == attributes
