"""The alert rules and the dashboard in deploy/monitoring query metrics and labels that running
services really export, and crm_build_info says which build runs.

Ingest and complaints run as processes (as `make run` starts them) on the real broker and
PostgreSQL, with traffic that makes their labelled series appear: a complaint through the
API (consumer, outbox and HTTP series), a Segment call, then two records that are not
events and one event twice, published straight to a topic (dead letters, a duplicate).
Between them they export every series the code defines (scoring and reporting serve the
same shared library's metrics).
"""

from __future__ import annotations

import asyncio
import platform
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from shared.events import Topic
from tests.helpers import ServiceProcess, api_client, event, produce_raw, wait_until
from tests.unit.test_deploy_monitoring import (
    RULES,
    TARGET_LABELS,
    dashboard,
    dashboard_queries,
    template_labels,
)
from tests.unit.test_deploy_promql import Parsed, parse, parse_grafana
from tooling.embedded import free_port, service_environment

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2]
# Series that appear only after a fault the test does not cause; the page still declares
# them (# TYPE), which the test checks instead.
NEEDS_A_FAULT = {"crm_consumer_log_resets_total": "a broker that lost a partition's log"}
GARBAGE = [b"not json", b'{"specversion": "1.0"}']

Page = dict[str, list[dict[str, str]]]  # series name -> the label sets of its samples


def read_page(text: str) -> tuple[Page, set[str]]:
    """The samples of a /metrics page by series name, and the declared family names."""
    page: Page = {}
    declared = set()
    for family in text_string_to_metric_families(text):
        declared.add(family.name)
        for sample in family.samples:
            page.setdefault(sample.name, []).append(dict(sample.labels))
    return page, declared


async def scrape(client: httpx.AsyncClient, url: str) -> tuple[Page, set[str], str]:
    response = await client.get(f"{url}/metrics")
    response.raise_for_status()
    page, declared = read_page(response.text)
    return page, declared, response.text


def value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def produce_in_one_batch(bootstrap: str, topic: str, value: bytes, copies: int) -> None:
    """`copies` identical records in one produce request: the broker appends them as one
    batch, which a consumer's fetch returns whole."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        sent = [await producer.send(topic, value=value, key=b"cust-m1") for _ in range(copies)]
        await producer.flush()
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@pytest.fixture
async def running(broker: Any, database_url: str, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    env = service_environment(
        broker,
        database_url,
        TOPIC_PARTITIONS="3",
        CONSUMER_SESSION_TIMEOUT_MS="6000",
        METADATA_MAX_AGE_MS="1000",
    )
    services = [
        ServiceProcess(name, env, tmp_path, free_port()) for name in ("ingest", "complaints")
    ]
    try:
        for service in services:
            service.start()
        await asyncio.gather(*(service.wait_ready() for service in services))
        yield {service.name: service.url for service in services}
    finally:
        for service in services:
            service.stop()


def expressions() -> Iterator[tuple[str, Parsed, dict[str, str]]]:
    """(where, parsed, annotations) of every rule and dashboard query."""
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule['alert']}", parse(rule["expr"]), rule["annotations"]
    for where, query in dashboard_queries(dashboard()):
        yield where, parse_grafana(query), {}


def label_names(page: Page, series: str) -> set[str]:
    return set().union(*(set(labels) for labels in page.get(series, [])))


@pytest.fixture
def clock_before() -> float:
    """The time before the services start (requested before `running`)."""
    return time.time()


async def test_rules_and_dashboard_query_series_and_labels_running_services_export(
    clock_before: float, running: dict[str, str], broker: Any
) -> None:
    opened = datetime.now(UTC) - timedelta(minutes=5)
    complaint = event(
        "crm.complaint.opened",
        "cust-m1",
        {"complaint_id": "cmp-m1", "channel": "hotline", "category": "delivery"},
        time=opened,
    )
    async with api_client(timeout=10) as client:
        posted = await client.post(f"{running['ingest']}/v1/events", json=[complaint])
        assert posted.status_code == 202, posted.text
        # A Segment call that maps to no CRM event (ingest counts it by call and outcome).
        viewed = {"type": "track", "event": "Product Viewed", "userId": "cust-m1"}
        tracked = await client.post(f"{running['ingest']}/v1/track", json=viewed)
        assert tracked.is_success, tracked.text
        # Published straight to the topic: two records that are not events, and one event
        # twice in one batch (the gateway that archives direct publications applies it once).
        await produce_raw(broker.bootstrap, Topic.COMPLAINTS, GARBAGE, key=b"cust-m1")
        again = event("crm.complaint.responded", "cust-m1", {"complaint_id": "cmp-m1"})
        await produce_in_one_batch(broker.bootstrap, Topic.COMPLAINTS, orjson.dumps(again), 2)

        async def traffic_seen() -> tuple[str, str] | None:
            ingest = (await client.get(f"{running['ingest']}/metrics")).text
            complaints = (await client.get(f"{running['complaints']}/metrics")).text
            applied = value(
                complaints,
                "crm_events_applied_total",
                consumer="complaints",
                topic="crm.complaints",
            )
            dead = value(ingest, "crm_events_deadlettered_total", topic="crm.complaints")
            duplicate = value(ingest, "crm_events_duplicate_total", consumer="ingest-archive")
            if applied and dead == len(GARBAGE) and duplicate:
                return ingest, complaints
            return None

        async def swept() -> float | None:
            page = (await client.get(f"{running['complaints']}/metrics")).text
            return value(page, "crm_task_last_success_timestamp_seconds", task="sla_sweep")

        await wait_until(traffic_seen, timeout=60, what="the complaint, dead letters, duplicate")
        await wait_until(swept, timeout=30, what="complaints reporting a successful SLA sweep")
        pages = [await scrape(client, url) for url in running.values()]

    page: Page = {}
    declared: set[str] = set()
    for one, names, _ in pages:
        declared |= names
        for series, labels in one.items():
            page.setdefault(series, []).extend(labels)

    problems = []
    for where, parsed, notes in expressions():
        available = set(TARGET_LABELS)
        for selector in parsed.selectors:
            assert selector.metric, where
            if selector.metric in NEEDS_A_FAULT:
                family = selector.metric.removesuffix("_total")
                if family not in declared:
                    problems.append(f"{where}: {selector.metric} is not declared")
                continue
            if selector.metric not in page:
                problems.append(f"{where}: no series {selector.metric}")
            labels = label_names(page, selector.metric)
            available |= labels
            if not selector.label_names() <= labels | TARGET_LABELS:
                problems.append(f"{where}: {selector.metric} has no {selector.label_names()}")
        if any(s.metric and s.metric in NEEDS_A_FAULT for s in parsed.selectors):
            continue  # its labels cannot be seen without its fault
        if not parsed.grouping <= available:
            problems.append(f"{where}: groups by {parsed.grouping - available}")
        carried = parsed.labels if parsed.labels is not None else available - parsed.dropped
        for text in notes.values():
            if not template_labels(text) <= carried:
                problems.append(f"{where}: a template reads {template_labels(text) - carried}")
    assert not problems, "\n".join(problems)

    # The alerts' data are what happened: exactly the two records that were not events were
    # dead-lettered, one duplicate counted, and the sweep ran since the services started.
    ingest_text, complaints_text = pages[0][2], pages[1][2]
    assert value(ingest_text, "crm_events_deadlettered_total", topic="crm.complaints") == 2
    assert value(ingest_text, "crm_events_duplicate_total", consumer="ingest-archive") == 1
    last_sweep = value(complaints_text, "crm_task_last_success_timestamp_seconds", task="sla_sweep")
    assert last_sweep is not None
    assert clock_before <= last_sweep <= time.time()


def git(*arguments: str) -> list[str]:
    return subprocess.run(
        ["git", "-C", str(REPOSITORY), *arguments], capture_output=True, text=True, check=True
    ).stdout.split()


@pytest.fixture
def head_before() -> str:
    """HEAD before the services start (requested before `running`)."""
    return git("rev-parse", "HEAD")[0]


async def test_build_info_names_the_package_version_commit_and_python(
    head_before: str, running: dict[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        pages = [await scrape(client, url) for url in running.values()]
    # The work tree may be shared with someone committing while the services start: they
    # read HEAD then, so it is the commit before or one made on top of it since.
    commits = {head_before, *git("rev-list", f"{head_before}..HEAD")}
    for page, _, _ in pages:
        [labels] = page["crm_build_info"]
        assert labels["version"] == version("crm-analytics")
        assert labels["python_version"] == platform.python_version()
        assert labels["commit"] in commits
