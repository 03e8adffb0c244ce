"""Prometheus metrics of a service process (one service per process, the default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPLIED = Counter(
    "crm_events_applied_total", "Events applied to a read model.", ["consumer", "topic"]
)
EVENTS_DUPLICATE = Counter(
    "crm_events_duplicate_total", "Events skipped because their id was applied.", ["consumer"]
)
RECORDS_SKIPPED = Counter(
    "crm_records_skipped_total",
    "Records not folded: below their log's mark, or not this consumer's to judge.",
    ["consumer"],
)
EVENTS_DEADLETTERED = Counter(
    "crm_events_deadlettered_total", "Records sent to crm.deadletter.", ["consumer", "topic"]
)
CONSUMER_LAG = Gauge(
    "crm_consumer_lag", "High watermark minus next offset.", ["consumer", "topic", "partition"]
)
BATCH_SECONDS = Histogram(
    "crm_consumer_batch_seconds",
    "Time to apply one batch, transaction included.",
    ["consumer"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_FAILURES = Gauge(
    "crm_consumer_consecutive_failures",
    "Attempts at a batch that failed in a row (0 after a batch commits).",
    ["consumer"],
)
LOG_RESETS = Counter(
    "crm_consumer_log_resets_total",
    "Partitions re-read from the start because the broker's log differed from the one applied.",
    ["consumer", "topic"],
)
HTTP_SECONDS = Histogram(
    "crm_http_request_seconds",
    "HTTP request latency.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OUTBOX_PENDING = Gauge("crm_outbox_pending", "Events stored but not yet published.")
EVENTS_PUBLISHED = Counter("crm_events_published_total", "Events published by the relay.")
