"""How topics are created: a relay's canary keeps its one record for good (compacted), the
event topics get the configured partitions."""

from __future__ import annotations

from shared.kafka import _new_topic
from shared.settings import CommonSettings

SETTINGS = CommonSettings(database_url="postgresql://x/y", topic_partitions=12)


def test_a_relay_canary_is_compacted_with_one_partition() -> None:
    canary = _new_topic("crm.relay.ingest", SETTINGS)
    assert canary.num_partitions == 1
    # Time-based retention would delete the record, and an empty canary means a lost log.
    assert canary.topic_configs == {"cleanup.policy": "compact"}


def test_an_event_topic_has_the_configured_partitions_and_default_retention() -> None:
    topic = _new_topic("crm.purchases", SETTINGS)
    assert topic.num_partitions == 12
    assert not topic.topic_configs
