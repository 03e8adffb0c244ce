"""Complaints on a real PostgreSQL (and broker for the commands): determinism of SLA events,
crisis detection, the agents' commands, and the seven handling steps in their order with
their durations."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.complaints import jobs, sla
from services.complaints.domain import Complaint, StepDone, derive, sla_event, tier_event
from services.complaints.main import SPEC
from services.complaints.main import app as complaints_app
from services.complaints.projection import ComplaintsProjection
from services.complaints.settings import ComplaintsSettings
from shared import db
from shared.events import (
    RECORDED,
    ClassChanged,
    ComplaintEvent,
    Event,
    SlaClockStopped,
    SlaWaitExpired,
    ValidationContext,
    decode_event,
    validate_event,
)
from shared.settings import CommonSettings
from tests.helpers import api_client, event, wait_until

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a Monday
CONTEXT = ValidationContext(future_tolerance=timedelta(days=3650))


def step(kind: str, complaint: str, at: datetime, **data: Any) -> Event:
    raw = event(
        f"crm.complaint.{kind}",
        "cust-1",
        {"complaint_id": complaint, **data},
        time=at,
        event_id=f"{complaint}-{kind}-{at.isoformat()}",
    )
    return validate_event(raw, CONTEXT)


def recorded_stream() -> list[Event]:
    """A day of complaints in several shapes: met, breached, paused, reopened."""
    t = NOW - timedelta(days=3)
    events = []
    for i in range(12):
        cid = f"k{i}"
        opened = t + timedelta(hours=i)
        priority = ["low", "medium", "high", "urgent"][i % 4]
        events.append(
            step("opened", cid, opened, channel="email", category="delivery", priority=priority)
        )
        if i % 3 != 2:
            events.append(step("responded", cid, opened + timedelta(minutes=30 + 40 * i)))
        if i % 4 == 1:
            events.append(step("waiting", cid, opened + timedelta(hours=2)))
            events.append(step("customer_replied", cid, opened + timedelta(hours=20)))
        if i % 2 == 0:
            events.append(step("resolved", cid, opened + timedelta(hours=6 + i)))
        if i % 6 == 0:
            events.append(step("reopened", cid, opened + timedelta(hours=30)))
    return events


async def prepared_pool(dsn: str) -> db.Pool:
    pool = await db.create_pool(dsn, "complaints")
    await db.migrate(
        pool, "complaints", SPEC.migrations, db.CONSUMER_MIGRATIONS, db.OUTBOX_MIGRATIONS
    )
    return pool


async def replay(pool: db.Pool, events: list[Event], settings: ComplaintsSettings) -> None:
    projection = ComplaintsProjection(settings.sla_config())
    shuffled = list(events)
    random.Random(len(events)).shuffle(shuffled)  # arrival order must not matter
    for start in range(0, len(shuffled), 7):
        async with pool.acquire() as conn, conn.transaction():
            await projection.store(conn, shuffled[start : start + 7])
    await jobs.sweep_once(pool, settings, now=NOW)


async def sla_events(pool: db.Pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch("SELECT id, type, time, body FROM events ORDER BY id")
    return [tuple(r) for r in rows]


async def test_a_replayed_stream_produces_identical_sla_events(
    postgres: Any, database_url: str
) -> None:
    settings = ComplaintsSettings()
    first = await prepared_pool(database_url)
    second = await prepared_pool(postgres.create_database("complaints_replay"))
    try:
        stream = recorded_stream()
        await replay(first, stream, settings)
        await replay(second, stream, settings)
        emitted = await sla_events(first)
        assert emitted == await sla_events(second)
        types = {row[1] for row in emitted}
        assert {
            "crm.complaint.sla_breached",
            "crm.complaint.sla_clock_stopped",
            "crm.complaint.escalated_auto",
        } <= types
        # The sweep left nothing owed: every complaint's next SLA event lies ahead (one due
        # exactly now happens now, and goes out with the next sweep).
        owed = "SELECT count(*) FROM complaints WHERE next_sla_at < $1"
        assert await first.fetchval(owed, NOW) == 0
        await replay(first, stream, settings)  # the same stream again changes nothing
        assert await sla_events(first) == emitted
    finally:
        await first.close()
        await second.close()


# ---- incremental state equals full re-derivation -------------------------------------------

FOLLOW_UPS: dict[str, dict[str, Any]] = {
    "responded": {"agent_id": "a-1"},
    "waiting": {},
    "customer_replied": {},
    "solution_proposed": {},
    "escalated": {"level": 2},
    "resolved": {},
    "reopened": {},
    "closed": {},
    "feedback": {"score": 4},
    "priority_changed": {"priority": "high"},
    "escalated_auto": {"metric": "first_response", "cycle": 0, "target_seconds": 3600, "level": 1},
    "step_done": {},  # one of RECORDED_STEPS, drawn at random
}
RECORDED_STEPS = ["listen", "thank", "apologise", "promise", "follow_up"]
TIERS = ["gold", "developing", "potential", "forgotten", "platinum"]  # the last one unknown


def random_history(rng: random.Random, tag: str) -> list[Event]:
    """A few complaints of one customer with random steps, and the customer's tier changes;
    some steps share a time (the event id orders them)."""
    customer, raws = f"cust-{tag}", []
    start = NOW - timedelta(days=rng.randrange(2, 20))
    for c in range(rng.randrange(1, 4)):
        cid, at = f"{tag}-c{c}", start + timedelta(minutes=rng.randrange(600))
        priority = rng.choice(["low", "medium", "high", "urgent"])
        data = {"channel": "chat", "category": "delivery", "priority": priority}
        raws.append(("opened", cid, at, data))
        for _ in range(rng.randrange(8)):
            at += timedelta(minutes=rng.choice([0, 5, 45, 300, 1500]))
            kind = rng.choice(list(FOLLOW_UPS))
            data = FOLLOW_UPS[kind]
            if kind == "step_done":
                data = {"step": rng.choice(RECORDED_STEPS)}
            raws.append((kind, cid, at, data))
    events = [
        validate_event(
            event(
                f"crm.complaint.{k}",
                customer,
                {"complaint_id": c, **d},
                time=t,
                event_id=f"{c}-{n}",
            ),
            CONTEXT,
        )
        for n, (k, c, t, d) in enumerate(raws)
    ]
    for n in range(rng.randrange(4)):
        at = start + timedelta(minutes=rng.randrange(4000))
        tier = {"new": rng.choice(TIERS), "as_of": at.isoformat()}
        raw = event("crm.customer.tier_changed", customer, tier, time=at, event_id=f"{tag}-t{n}")
        events.append(validate_event(raw, CONTEXT))
    return events


def arrival(rng: random.Random, events: list[Event]) -> list[list[Event]]:
    """Mostly in time order, as a consumer sees one customer's events, with some arriving
    late; in batches of 1 to 6."""
    order = sorted(events, key=lambda e: (e.time, e.id))
    for _ in range(rng.randrange(3)):
        late = order.pop(rng.randrange(len(order)))
        order.insert(rng.randrange(len(order) + 1), late)
    batches = []
    while order:
        size = rng.randrange(1, 7)
        batches.append(order[:size])
        order = order[size:]
    return batches


def full_rederivation(
    events: list[Event], config: sla.SlaConfig
) -> dict[str, tuple[Complaint, sla.SlaState]]:
    """The oracle: each complaint folded from all its events at once, sorted (the workflow
    and SLA folds as they were before any state was kept)."""
    tiers = [
        tier_event(f"tier:{e.id}", e.time, e.data.new)
        for e in events
        if isinstance(e.data, ClassChanged)
    ]
    found = {}
    for cid in {e.data.complaint_id for e in events if isinstance(e.data, ComplaintEvent)}:
        steps = [
            e for e in events if isinstance(e.data, ComplaintEvent) and e.data.complaint_id == cid
        ]
        complaint = derive(cid, steps[0].subject, steps)
        timeline = [s for s in map(sla_event, steps) if s is not None] + tiers
        found[cid] = (complaint, sla.fold_events(cid, timeline, config))
    return found


async def test_state_kept_between_batches_equals_a_full_rederivation(database_url: str) -> None:
    settings = ComplaintsSettings()
    config = settings.sla_config()
    pool = await prepared_pool(database_url)
    projection = ComplaintsProjection(config)
    rng = random.Random(7)
    try:
        for n in range(40):
            events = random_history(rng, f"h{n}")
            for batch in arrival(rng, events):
                async with pool.acquire() as conn, conn.transaction():
                    await projection.store(conn, batch)
            for cid, (complaint, state) in full_rederivation(events, config).items():
                row = await pool.fetchrow("SELECT * FROM complaints WHERE complaint_id = $1", cid)
                assert row is not None
                columns = {k: v for k, v in asdict(complaint).items() if k != "steps"}
                assert {k: row[k] for k in columns} == columns, cid
                steps = await pool.fetch(
                    "SELECT step, cycle, started_at, done_at FROM complaint_steps "
                    "WHERE complaint_id = $1 ORDER BY seq",
                    cid,
                )
                assert [StepDone(*r) for r in steps] == list(complaint.steps), cid
                assert sla.state_from_json(cid, row["sla_state"]) == state, cid
                assert row["tier"] == state.tier
    finally:
        await pool.close()


async def test_a_complaint_wave_raises_one_alert_and_background_none(database_url: str) -> None:
    settings = ComplaintsSettings()
    pool = await prepared_pool(database_url)
    rng = random.Random(42)
    start = NOW - timedelta(weeks=5)
    events = []
    n = 0
    for hour in range(5 * 7 * 24):
        at = start + timedelta(hours=hour)
        business = 8 <= at.hour < 20
        for category in ("delivery", "billing"):
            rate = 2.0 if business else 0.3
            count = sum(rng.random() < rate / 10 for _ in range(10))
            wave = category == "delivery" and hour >= 5 * 7 * 24 - 6  # one morning
            count += 12 if wave else 0
            for _ in range(count):
                n += 1
                cat = "price_billing" if category == "billing" else "delivery"
                raw = event(
                    "crm.complaint.opened",
                    f"c{n % 97}",
                    {"complaint_id": f"w{n}", "channel": "hotline", "category": cat},
                    time=at + timedelta(minutes=rng.randrange(60)),
                    event_id=f"w{n}",
                )
                events.append(validate_event(raw, CONTEXT))
    try:
        projection = ComplaintsProjection(settings.sla_config())
        for begin in range(0, len(events), 2000):
            async with pool.acquire() as conn, conn.transaction():
                await projection.store(conn, events[begin : begin + 2000])
        assert await jobs.detect_once(pool, settings, now=NOW) == 2
        alerts = await pool.fetch(
            "SELECT dimension, value, count, baseline FROM crisis_alerts ORDER BY dimension"
        )
        # One alert for the category, and one for the channel the wave came through; the
        # steady category (price_billing) raises none.
        assert [(a["dimension"], a["value"]) for a in alerts] == [
            ("category", "delivery"),
            ("channel", "hotline"),
        ]
        assert all(a["count"] > 2 * a["baseline"] for a in alerts)
        published = await pool.fetch("SELECT type FROM events WHERE type = 'crm.crisis.detected'")
        assert len(published) == 2
        assert await jobs.detect_once(pool, settings, now=NOW) == 0  # each hour is seen once
    finally:
        await pool.close()


@asynccontextmanager
async def complaints_client(
    settings: CommonSettings, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = complaints_app(ComplaintsSettings(**settings.model_dump(), **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://complaints") as http:
            yield http


@pytest.fixture
async def client(settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with complaints_client(settings, sla_always_open=True) as http:
        yield http


async def publish(settings: CommonSettings, raws: list[dict[str, Any]]) -> None:
    """Another system publishes these complaint events: straight into the complaints' log."""
    from shared.outbox import append_events

    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO complaints")
            await append_events(conn, [validate_event(raw, CONTEXT) for raw in raws])
    finally:
        await conn.close()


async def post(client: httpx.AsyncClient, complaint: str, command: str, **body: Any) -> Any:
    return await client.post(f"/v1/complaints/{complaint}/{command}", json=body)


async def walk_first_steps(client: httpx.AsyncClient, complaint: str) -> None:
    """Steps 1-5, in order, as an agent does them before carrying the solution out."""
    promised = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    for command, body in [
        ("listen", {"notes": "restated: the parcel came late"}),
        ("thank", {}),
        ("apologise", {}),
        ("promise", {"notes": "order number and address collected"}),
        ("propose", {"solution": "refund the shipping", "promised_at": promised}),
    ]:
        done = await post(client, complaint, command, **body)
        assert done.status_code == 202, (command, done.text)


async def test_agent_commands_follow_the_workflow(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    opened = event(
        "crm.complaint.opened",
        "cust-9",
        {
            "complaint_id": "cmd-1",
            "channel": "chat",
            "category": "service_quality",
            "priority": "high",
        },
        time=datetime.now(UTC) - timedelta(minutes=10),
    )
    conn = await asyncpg.connect(settings.database_url)
    try:  # another system publishes the opening: straight into the complaints' event log
        from shared.outbox import append_events

        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO complaints")
            await append_events(conn, [validate_event(opened, CONTEXT)])
    finally:
        await conn.close()

    async def status() -> str | None:
        response = await client.get("/v1/complaints/cmd-1")
        return response.json()["status"] if response.status_code == 200 else None

    assert await wait_until(status, what="the opened complaint") == "opened"
    refused = await client.post("/v1/complaints/cmd-1/close", json={})
    assert refused.status_code == 409
    assert "resolved" in refused.json()["detail"]
    bad = await client.post("/v1/complaints/cmd-1/feedback", json={"score": 9})
    assert bad.status_code in (409, 422)

    accepted = await client.post("/v1/complaints/cmd-1/respond", json={"agent_id": "a-7"})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status_before"] == "opened"
    assert (await client.post("/v1/complaints/cmd-1/escalate", json={})).status_code == 202
    await walk_first_steps(client, "cmd-1")  # the seven steps are an order (issue 15)
    assert (await client.post("/v1/complaints/cmd-1/resolve", json={})).status_code == 202
    feedback = await client.post("/v1/complaints/cmd-1/feedback", json={"score": 4})
    assert feedback.status_code == 202, feedback.text
    assert (await client.post("/v1/complaints/cmd-1/close", json={})).status_code == 202

    async def closed() -> Any:
        body = (await client.get("/v1/complaints/cmd-1")).json()
        return body if body["status"] == "closed" else None

    body = await wait_until(closed, what="the complaint closed through its commands")
    assert body["escalation_level"] == 1
    assert body["feedback_score"] == 4
    assert [h["type"].rsplit(".", 1)[1] for h in body["history"]] == [
        "opened",
        "responded",
        "escalated",
        *["step_done"] * 4,
        "solution_proposed",
        "resolved",
        "feedback",
        "closed",
    ]
    first_response = next(c for c in body["clocks"] if c["metric"] == "first_response")
    assert first_response["status"] == "met"
    missing = await client.post("/v1/complaints/nope/respond", json={})
    assert missing.status_code == 404
    queue = (await client.get("/v1/complaints", params={"status": "closed"})).json()
    assert [i["complaint_id"] for i in queue["items"]] == ["cmd-1"]


# ---- issue 15: waits that cannot hang, breaches that stand ----------------------------------

MONDAY_9 = NOW - timedelta(hours=3)  # NOW is Monday 12:00; the default calendar is 09-12, 13-18


async def store_steps(pool: db.Pool, projection: ComplaintsProjection, events: list[Event]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await projection.store(conn, events)


async def published(pool: db.Pool, kind: str) -> list[Event]:
    rows = await pool.fetch("SELECT body FROM events WHERE type = $1 ORDER BY seq", kind)
    return [decode_event(str(r["body"]).encode(), RECORDED) for r in rows]


async def test_a_breach_published_before_a_late_reply_stands(database_url: str) -> None:
    """Medium priority: the first response is due 4 business hours after Monday 09:00, at
    14:00. The sweep at 15:00 publishes the breach and the escalation; then a reply stamped
    13:30 arrives. The complaint stays escalated and its clock says breached, not met."""
    settings = ComplaintsSettings()
    pool = await prepared_pool(database_url)
    projection = ComplaintsProjection(settings.sla_config())
    opened = step("opened", "late-1", MONDAY_9, channel="email", category="delivery")
    try:
        await store_steps(pool, projection, [opened])
        await jobs.sweep_once(pool, settings, now=MONDAY_9 + timedelta(hours=6))
        (escalation,) = await published(pool, "crm.complaint.escalated_auto")
        assert escalation.time == MONDAY_9 + timedelta(hours=5)
        await store_steps(pool, projection, [escalation])  # it comes back, as consumed
        reply = step("responded", "late-1", MONDAY_9 + timedelta(hours=4, minutes=30))
        await store_steps(pool, projection, [reply])

        row = await pool.fetchrow("SELECT * FROM complaints WHERE complaint_id = 'late-1'")
        assert (row["status"], row["escalation_level"], row["breached"]) == ("escalated", 1, True)
        await jobs.sweep_once(pool, settings, now=MONDAY_9 + timedelta(hours=7))
        stops = [
            e.data
            for e in await published(pool, "crm.complaint.sla_clock_stopped")
            if isinstance(e.data, SlaClockStopped)
        ]
        assert [(s.metric, s.outcome, s.elapsed_seconds) for s in stops] == [
            ("first_response", "breached", 3.5 * 3600)  # 09-12 and 13:00-13:30
        ]
        assert len(await published(pool, "crm.complaint.sla_breached")) == 1
        assert len(await published(pool, "crm.complaint.escalated_auto")) == 1
    finally:
        await pool.close()


async def test_a_wait_past_the_maximum_resumes_and_the_sweeper_says_so(database_url: str) -> None:
    """Waiting from Monday 11:00 with the default 72-hour maximum: Thursday 11:00 the paused
    resolution clock resumes by itself and the sweeper publishes it."""
    settings = ComplaintsSettings()
    pool = await prepared_pool(database_url)
    projection = ComplaintsProjection(settings.sla_config())
    steps = [
        step("opened", "wait-1", MONDAY_9, channel="email", category="delivery"),
        step("responded", "wait-1", MONDAY_9 + timedelta(hours=1)),
        step("waiting", "wait-1", MONDAY_9 + timedelta(hours=2)),
    ]
    expiry = MONDAY_9 + timedelta(days=3, hours=2)
    try:
        await store_steps(pool, projection, steps)
        row = await pool.fetchrow("SELECT * FROM complaints WHERE complaint_id = 'wait-1'")
        # Saved as of today, months later: the resumed resolution clock ran out (22 business
        # hours from Thursday 11:00), so the complaint is breached, not parked for good.
        assert row["breached"] is True
        await jobs.sweep_once(pool, settings, now=expiry + timedelta(minutes=1))
        (said,) = await published(pool, "crm.complaint.sla_wait_expired")
        assert isinstance(said.data, SlaWaitExpired)
        assert (said.time, said.data.metric, said.data.waiting_since) == (
            expiry,
            "resolution",
            MONDAY_9 + timedelta(hours=2),
        )
    finally:
        await pool.close()


async def test_agents_record_a_customer_reply_that_ends_the_wait(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=100)
    data = {"complaint_id": "cmd-2", "channel": "chat", "category": "delivery"}
    since = start + timedelta(minutes=2)
    steps = [
        event("crm.complaint.opened", "cust-8", data, time=start),
        event(
            "crm.complaint.responded",
            "cust-8",
            {"complaint_id": "cmd-2"},
            time=start + timedelta(minutes=1),
        ),
        event("crm.complaint.waiting", "cust-8", {"complaint_id": "cmd-2"}, time=since),
    ]
    conn = await asyncpg.connect(settings.database_url)
    try:  # another system published these steps: straight into the complaints' event log
        from shared.outbox import append_events

        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO complaints")
            await append_events(conn, [validate_event(s, CONTEXT) for s in steps])
    finally:
        await conn.close()

    async def waiting() -> Any:
        response = await client.get("/v1/complaints/cmd-2")
        body = response.json() if response.status_code == 200 else None
        return body if body and body["status"] == "waiting" else None

    body = await wait_until(waiting, what="the complaint waiting on the customer")
    # Waiting for 100 hours: past the 72-hour maximum, the clocks resumed by themselves.
    assert [
        (datetime.fromisoformat(w["waiting_since"]), datetime.fromisoformat(w["expired_at"]))
        for w in body["waits_expired"]
    ] == [(since, since + timedelta(hours=72))]
    resolution = next(c for c in body["clocks"] if c["metric"] == "resolution")
    assert datetime.fromisoformat(resolution["segments"][-1]["start"]) == since + timedelta(
        hours=72
    )

    replied = await client.post("/v1/complaints/cmd-2/customer_reply", json={"message": "ok"})
    assert replied.status_code == 202, replied.text
    assert replied.json()["type"] == "crm.complaint.customer_replied"

    async def investigating() -> Any:
        body = (await client.get("/v1/complaints/cmd-2")).json()
        return body if body["status"] == "investigating" else None

    body = await wait_until(investigating, what="the customer's reply folded")
    assert body["history"][-1]["type"] == "crm.complaint.customer_replied"
    await walk_first_steps(client, "cmd-2")  # the seven steps are an order (issue 15)
    assert (await client.post("/v1/complaints/cmd-2/resolve", json={})).status_code == 202


# ---- issue 15 item 4: the seven handling steps, in order, and how long each takes -----------

STEPS_DAY = datetime(2026, 1, 5, 10, tzinfo=UTC)  # a Monday


def handled(cid: str, steps: list[tuple[str, float, dict[str, Any]]]) -> list[dict[str, Any]]:
    """A complaint opened at STEPS_DAY and its (type, minutes after the opening, data) steps,
    as another system publishes them."""
    opened = ("opened", 0.0, {"channel": "chat", "category": "delivery"})
    return [
        event(
            f"crm.complaint.{kind}",
            "cust-steps",
            {"complaint_id": cid, **data},
            time=STEPS_DAY + timedelta(minutes=minutes),
            event_id=f"{cid}-{n}",
        )
        for n, (kind, minutes, data) in enumerate([opened, *steps])
    ]


def did(step: str, minutes: float) -> tuple[str, float, dict[str, Any]]:
    return ("step_done", minutes, {"step": step})


# Minutes after the opening. d1 and d2 walk every step (d2's follow-up is the customer's
# feedback); d3 has only listened; d4's listening falls before the period.
HANDLED = [
    *handled(
        "d1",
        [
            *[did("listen", 6), did("thank", 7), did("apologise", 8), did("promise", 30)],
            ("solution_proposed", 90, {}),
            ("resolved", 330, {}),
            did("follow_up", 330 + 1440),
        ],
    ),
    *handled(
        "d2",
        [
            *[did("listen", 30), did("thank", 32), did("apologise", 35), did("promise", 65)],
            ("solution_proposed", 125, {}),
            ("resolved", 245, {}),
            ("feedback", 305, {"score": 5}),
        ],
    ),
    *handled("d3", [did("listen", 12)]),
    *[
        {**e, "time": (datetime.fromisoformat(e["time"]) - timedelta(days=3)).isoformat()}
        for e in handled("d4", [did("listen", 2)])
    ],
]
# By hand, in minutes (median and p90 interpolate between the sorted durations' ranks:
# p90 of [a, b] = a + 0.9 (b - a); of [6, 12, 30] at rank 1.8: 12 + 0.8 * 18 = 26.4), then
# in seconds (exact): (count, mean, median, p90).
EXPECTED_SECONDS = {
    "listen": (3, 16 * 60, 12 * 60, 1584),  # 6, 30, 12; p90 26.4 min
    "thank": (2, 90, 90, 114),  # 1, 2; p90 1.9 min
    "apologise": (2, 120, 120, 168),  # 1, 3; p90 2.8 min
    "promise": (2, 26 * 60, 26 * 60, 1752),  # 22, 30; p90 29.2 min
    "propose": (2, 3600, 3600, 3600),  # 60, 60
    "carry_out": (2, 180 * 60, 180 * 60, 228 * 60),  # 240, 120; p90 120 + 0.9 * 120
    "follow_up": (2, 750 * 60, 750 * 60, 1302 * 60),  # 1440, 60; p90 60 + 0.9 * 1380
}


async def test_the_steps_durations_equal_a_hand_calculation(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    await publish(settings, HANDLED)
    period = {
        "from": (STEPS_DAY - timedelta(hours=1)).isoformat(),
        "to": (STEPS_DAY + timedelta(days=2)).isoformat(),
    }

    async def folded(clock: str) -> Any:
        response = await client.get(
            "/v1/complaints/steps/durations", params={**period, "clock": clock}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        counts = {s["step"]: s["count"] for s in body["steps"]}
        return body if counts["listen"] == 3 and counts["follow_up"] == 2 else None

    for clock in ("wall", "business"):  # a 24x7 calendar: business hours are wall hours
        body = await wait_until(lambda clock=clock: folded(clock), what="every step folded")
        assert body["clock"] == clock
        assert [(s["position"], s["step"]) for s in body["steps"]] == list(
            enumerate(EXPECTED_SECONDS, start=1)
        )
        for step in body["steps"]:
            count, mean, median, p90 = EXPECTED_SECONDS[step["step"]]
            hours = (step["count"], step["mean_hours"], step["median_hours"], step["p90_hours"])
            assert hours == (count, mean / 3600, median / 3600, p90 / 3600), step
    later = await client.get(
        "/v1/complaints/steps/durations",
        params={"from": period["to"], "to": (STEPS_DAY + timedelta(days=3)).isoformat()},
    )
    assert [s["count"] for s in later.json()["steps"]] == [0] * 7
    backwards = await client.get(
        "/v1/complaints/steps/durations", params={"from": period["to"], "to": period["from"]}
    )
    assert backwards.status_code == 422
    assert backwards.json()["errors"][0]["field"] == "query.from"


def refused_field(response: httpx.Response, status: int = 409) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["detail"]
    field: str = body["errors"][0]["field"]
    return field


async def test_agents_walk_the_seven_steps_in_order_and_are_refused_out_of_order(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    opened_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    data = {"complaint_id": "walk-1", "channel": "hotline", "category": "product_quality"}
    await publish(settings, [event("crm.complaint.opened", "cust-w", data, time=opened_at)])

    async def known() -> bool:
        return (await client.get("/v1/complaints/walk-1")).status_code == 200

    await wait_until(known, what="the opened complaint")
    # Today's shortcut, resolving straight from "opened", is refused with the step missing.
    assert refused_field(await post(client, "walk-1", "resolve")) == "steps.listen"
    assert refused_field(await post(client, "walk-1", "thank")) == "steps.listen"
    assert (await post(client, "walk-1", "listen", notes="the kettle leaks")).status_code == 202
    assert (await post(client, "walk-1", "thank")).status_code == 202
    assert refused_field(await post(client, "walk-1", "promise")) == "steps.apologise"
    assert (await post(client, "walk-1", "apologise")).status_code == 202
    assert (await post(client, "walk-1", "promise")).status_code == 202
    assert refused_field(await post(client, "walk-1", "listen")) == "steps.listen"  # passed
    no_timetable = await post(client, "walk-1", "propose", solution="a new kettle")
    assert refused_field(no_timetable, 422) == "body.promised_at"
    promised = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    accepted = await post(client, "walk-1", "propose", promised_at=promised)
    assert accepted.status_code == 202, accepted.text
    assert refused_field(await post(client, "walk-1", "follow_up")) == "status"
    assert (await post(client, "walk-1", "resolve")).status_code == 202
    assert refused_field(await post(client, "walk-1", "close")) == "steps.follow_up"
    assert (await post(client, "walk-1", "follow_up", notes="happy")).status_code == 202
    assert (await post(client, "walk-1", "close")).status_code == 202
    assert refused_field(await post(client, "walk-1", "listen")) == "status"

    async def closed() -> Any:
        body = (await client.get("/v1/complaints/walk-1")).json()
        return body if body["status"] == "closed" else None

    body = await wait_until(closed, what="the walked complaint closed")
    times = {h["type"]: datetime.fromisoformat(h["time"]) for h in body["history"]}
    order = ["listen", "thank", "apologise", "promise", "propose", "carry_out", "follow_up"]
    assert [s["step"] for s in body["steps"]] == order
    assert body["next_step"] is None
    # Each step's turn began when the one before it was done (the first: at the opening).
    done = [datetime.fromisoformat(s["done_at"]) for s in body["steps"]]
    began = [datetime.fromisoformat(s["started_at"]) for s in body["steps"]]
    assert began == [opened_at, *done[:-1]]
    assert done[4] == times["crm.complaint.solution_proposed"]
    assert done[5] == times["crm.complaint.resolved"]
    first_response = next(c for c in body["clocks"] if c["metric"] == "first_response")
    assert first_response["status"] == "met"  # listening was the first response
    assert datetime.fromisoformat(body["first_response_at"]) == done[0]

    span = {"from": opened_at.isoformat(), "to": (done[-1] + timedelta(seconds=1)).isoformat()}
    report = await client.get("/v1/complaints/steps/durations", params={**span, "clock": "wall"})
    for step, start, end in zip(report.json()["steps"], began, done, strict=True):
        hours = (end - start).total_seconds() / 3600
        assert (step["count"], step["mean_hours"], step["p90_hours"]) == (1, hours, hours)


async def opened_complaint(client: httpx.AsyncClient, cid: str) -> None:
    async def known() -> bool:
        return (await client.get(f"/v1/complaints/{cid}")).status_code == 200

    await wait_until(known, what=f"the opened complaint {cid}")


async def test_skippable_steps_by_setting_resolve_from_opened_or_leave_one_step_out(
    settings: CommonSettings,
) -> None:
    opened = {"channel": "email", "category": "delivery"}
    everything = ["listen", "thank", "apologise", "promise", "propose", "follow_up"]
    async with complaints_client(settings, complaint_steps_skippable=everything) as client:
        await publish(  # once the service created its schema
            settings,
            [
                event("crm.complaint.opened", "cust-s", {**opened, "complaint_id": cid})
                for cid in ("skip-1", "skip-2")
            ],
        )
        await opened_complaint(client, "skip-1")
        assert (await post(client, "skip-1", "resolve")).status_code == 202
        assert (await post(client, "skip-1", "close")).status_code == 202
    async with complaints_client(settings, complaint_steps_skippable=["thank"]) as client:
        await opened_complaint(client, "skip-2")
        assert (await post(client, "skip-2", "listen")).status_code == 202
        assert (await post(client, "skip-2", "apologise")).status_code == 202  # thank skipped
        promised = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        proposal = await post(client, "skip-2", "propose", promised_at=promised)
        assert refused_field(proposal) == "steps.promise"  # not skippable here
