"""Kafka clients configured the one way the project uses them, and idempotent topic creation."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from pathlib import Path

import aiokafka.client
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2
from aiokafka.protocol.metadata import MetadataRequest

from shared.events import SOURCE_TOPICS, Topic
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

ALL_TOPICS: tuple[str, ...] = (*SOURCE_TOPICS, Topic.DERIVED, Topic.KEYS, Topic.DEADLETTER)

# aiokafka asks the broker to auto-create any topic it requests metadata for, and offers no
# setting to stop it. Tansu honours the request (4 partitions) and so would a Kafka broker
# with auto.create.topics.enable. After a broker loses its topics, any client could then
# re-create them with the wrong partition count before we do. We create topics ourselves,
# so every metadata request says "do not create".
aiokafka.client.MetadataRequest = functools.partial(
    MetadataRequest, allow_auto_topic_creation=False
)


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    """murmur2 of a key as Kafka's default partitioner takes it; cached, since customers
    come back and aiokafka's murmur2 is pure Python (about 5 us a key)."""
    return int(murmur2(key) & 0x7FFFFFFF)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (the Java client's and aiokafka's) gives a
    key on a topic of `partitions` partitions: what the relays use for every record."""
    return _key_hash(key) % partitions


class StaticTokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # untyped base
    """OAUTHBEARER with a token given in the environment: valid until the process restarts."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token


class TokenFileProvider(AbstractTokenProvider):  # type: ignore[misc]  # untyped base
    """OAUTHBEARER with a token read from a file at every (re)authentication: whatever
    renews the file (a sidecar, a projected service-account token) renews our token."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    async def token(self) -> str:
        return self._path.read_text().strip()


def security_options(settings: CommonSettings) -> dict[str, object]:
    """The aiokafka arguments for TLS and SASL; every client is built with them."""
    options: dict[str, object] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        # Verifies the broker's certificate and host name, against the system CAs if no file.
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    mechanism = settings.kafka_sasl_mechanism
    if mechanism is None:
        return options
    options["sasl_mechanism"] = mechanism
    if mechanism == "OAUTHBEARER":
        options["sasl_oauth_token_provider"] = _token_provider(settings)
    else:
        assert settings.kafka_sasl_password is not None  # the settings' validator saw to it
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def _token_provider(settings: CommonSettings) -> AbstractTokenProvider:
    if settings.kafka_sasl_oauth_token_file is not None:
        return TokenFileProvider(settings.kafka_sasl_oauth_token_file)
    assert settings.kafka_sasl_oauth_token is not None  # the settings' validator saw to it
    return StaticTokenProvider(settings.kafka_sasl_oauth_token.get_secret_value())


def producer(settings: CommonSettings, **overrides: object) -> AIOKafkaProducer:
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        **security_options(settings),
        # Tansu cannot serve InitProducerId; duplicates are removed downstream by event id.
        "enable_idempotence": False,
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "request_timeout_ms": 10_000,
        "metadata_max_age_ms": settings.metadata_max_age_ms,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def consumer(
    settings: CommonSettings, group_id: str | None, **overrides: object
) -> AIOKafkaConsumer:
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        **security_options(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        # Offsets live in PostgreSQL; a partition we have no offset for starts at the beginning.
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.consumer_session_timeout_ms,
        "heartbeat_interval_ms": max(settings.consumer_session_timeout_ms // 5, 500),
        "metadata_max_age_ms": settings.metadata_max_age_ms,
        "max_partition_fetch_bytes": 4 << 20,
        "fetch_max_bytes": 32 << 20,
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


def admin(settings: CommonSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        request_timeout_ms=10_000,
        **security_options(settings),
    )


async def ensure_topics(settings: CommonSettings, topics: Iterable[str] = ALL_TOPICS) -> list[str]:
    """Create whichever of `topics` are missing; return the ones this call created."""
    client = admin(settings)
    await client.start()
    try:
        return await ensure_topics_with(client, settings, topics)
    finally:
        await client.close()


def cancelled_from_inside() -> bool:
    """Whether a CancelledError being handled comes from a future cancelled inside a client
    (aiokafka cancels the futures of requests in flight when a broker connection drops), not
    from a cancellation of the running task: then it is an error like any other, and a loop
    that must survive broker outages has to treat it so (an `except Exception` lets it
    through and the loop's task ends without a word)."""
    task = asyncio.current_task()
    return task is not None and not task.cancelling()


RELAY_CANARY_PREFIX = "crm.relay."  # a relay's canary topic (shared/outbox.py)


def _new_topic(name: str, settings: CommonSettings) -> NewTopic:
    if name.startswith(RELAY_CANARY_PREFIX):
        # One record, kept for good: with time-based retention the record would expire and
        # the relay would take the empty canary for a broker that lost its logs (and publish
        # its whole log again every retention period). Compaction keeps the last record of
        # each key.
        return NewTopic(
            name, 1, settings.topic_replication_factor, topic_configs={"cleanup.policy": "compact"}
        )
    return NewTopic(name, settings.topic_partitions, settings.topic_replication_factor)


async def ensure_topics_with(
    client: AIOKafkaAdminClient, settings: CommonSettings, topics: Iterable[str]
) -> list[str]:
    existing = set(await client.list_topics())
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    response = await client.create_topics([_new_topic(t, settings) for t in missing])
    created = []
    for topic, code, message in response.topic_errors:
        if code == 0:
            created.append(topic)
        elif code != 36:  # 36: TOPIC_ALREADY_EXISTS, another instance won the race
            raise RuntimeError(f"cannot create topic {topic}: {code} {message}")
    if created:
        log.info("created topics", extra={"topics": created})
    return created


async def wait_for_broker(settings: CommonSettings, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise TimeoutError."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        client = admin(settings)
        try:
            await client.start()
            await client.list_topics()
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"broker {settings.kafka_bootstrap_servers} unreachable"
                ) from None
            await asyncio.sleep(0.2)
        finally:
            await client.close()


async def log_ends(
    settings: CommonSettings, positions: dict[tuple[str, int], int], timeout: float = 5.0
) -> dict[tuple[str, int], int]:
    """The log end (high watermark) of each partition, from a fetch response.

    Not `end_offsets()`: Tansu answers ListOffsets(latest) with the last batch's base offset
    + 1. A fetch at `positions` (where we believe each log ends, so the fetch carries no
    records) returns the true high watermark on both. Missing topics are left out.
    """
    client = consumer(settings, None)
    await client.start()
    try:
        existing = await client.topics()
        tps = [TopicPartition(t, p) for t, p in positions if t in existing]
        if not tps:
            return {}
        client.assign(tps)
        for tp in tps:
            client.seek(tp, positions[(tp.topic, tp.partition)])
        deadline = asyncio.get_running_loop().time() + timeout
        ends: dict[tuple[str, int], int] = {}
        while len(ends) < len(tps) and asyncio.get_running_loop().time() < deadline:
            await client.getmany(timeout_ms=100, max_records=1)
            for tp in tps:
                highwater = client.highwater(tp)
                if highwater is not None:
                    ends[(tp.topic, tp.partition)] = highwater
        return ends
    finally:
        await client.stop()
