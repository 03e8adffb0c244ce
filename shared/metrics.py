"""Prometheus metrics of a service process (one service per process, the default registry)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

DISTRIBUTION = "crm-analytics"
# The image bakes the commit in at build time (deploy/Dockerfile, build argument GIT_COMMIT):
# it has no .git to ask.
COMMIT_VARIABLE = "CRM_GIT_COMMIT"

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
TASK_LAST_SUCCESS = Gauge(
    "crm_task_last_success_timestamp_seconds",
    "Unix time a periodic task (sla_sweep, ...) last finished a pass without error.",
    ["task"],
)
BUILD_INFO = Gauge(
    "crm_build_info",
    "Always 1; the labels say which build runs.",
    ["version", "commit", "python_version"],
)


def package_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def git_commit() -> str:
    """The commit the code was built from: the image's baked-in value, else the checkout's
    HEAD when the code runs from a git work tree (a dev install), else "unknown"."""
    baked = os.environ.get(COMMIT_VARIABLE, "").strip()
    if baked:
        return baked
    tree = Path(__file__).resolve().parent.parent
    if not (tree / ".git").exists():  # installed in site-packages: whatever repo encloses
        return "unknown"  # it is not ours to report
    try:
        found = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--verify", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):  # no git binary, not a repository, ...
        return "unknown"
    return found.stdout.strip() or "unknown"


BUILD_INFO.labels(package_version(), git_commit(), platform.python_version()).set(1)
