"""Receipts (no I/O): the partition a key gets, as Kafka's Java client computes it, and the
receipt's format and reading."""

from __future__ import annotations

import pytest

from shared import freshness, kafka

# Apache Kafka's own test vectors for its murmur2 (clients UtilsTest.testMurmur2), as the
# signed 32-bit ints Java prints; the default partitioner takes them & 0x7fffffff.
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java"), KAFKA_MURMUR2.items())
def test_a_key_gets_the_partition_kafkas_partitioner_gives_it(key: bytes, java: int) -> None:
    for partitions in (1, 3, 12, 50):
        assert kafka.partition_for(key, partitions) == (java & 0x7FFFFFFF) % partitions


def test_a_receipt_keeps_the_highest_number_per_topic_and_partition() -> None:
    # By hand: "21" -> -973932308 & 0x7fffffff = 1173551340 = 97795945 x 12 + 0;
    # "abc" -> 479470107 = 39955842 x 12 + 3.
    stored = [
        ("crm.purchases", "21", 7),
        ("crm.purchases", "21", 5),
        ("crm.purchases", "abc", 6),
        ("crm.complaints", "21", 9),
    ]
    text = freshness.receipt("ingest", stored, lambda topic: 12)
    assert text == "ingest:crm.complaints:0:9,ingest:crm.purchases:0:7,ingest:crm.purchases:3:6"
    parsed = freshness.parse_receipt(text)
    assert [(p.log, p.topic, p.partition, p.seq) for p in parsed] == [
        ("ingest", "crm.complaints", 0, 9),
        ("ingest", "crm.purchases", 0, 7),
        ("ingest", "crm.purchases", 3, 6),
    ]


def test_pending_positions_are_those_above_the_stored_high() -> None:
    positions = freshness.parse_receipt("ingest:crm.purchases:0:10,ingest:crm.purchases:1:4")
    highs = {("ingest", "crm.purchases", 0): 10, ("ingest", "crm.purchases", 1): 3}
    assert [p.partition for p in freshness.pending(positions, highs)] == [1]
    assert freshness.pending(positions, {**highs, ("ingest", "crm.purchases", 1): 4}) == []
    assert len(freshness.pending(positions, {})) == 2  # nothing applied yet


@pytest.mark.parametrize(
    "text",
    [
        "",
        ",",
        "ingest:crm.purchases:0",
        "ingest:crm.purchases:x:1",
        "Ingest:crm.purchases:0:1",
        "ingest:crm.purchases:0:-1",
        ",".join(["ingest:t:0:1"] * 1001),
    ],
)
def test_what_is_not_a_receipt_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"receipt|is not"):
        freshness.parse_receipt(text)
