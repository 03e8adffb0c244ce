"""The customer base (churn, retention, active, at start and end, won back, lost) from the
fold's counters, on a real PostgreSQL, against a brute-force recomputation from the events
sent: 30 and 365 days by day, weeks and months, unsliced and by tier, segment and channel,
with the events arriving shuffled in batches of any size and late purchases filling gaps;
and when the counters count with another window than the one read, the answer is still
the definition's (read-time path), and bringing them over (converge_base) keeps it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.reporting import kpi, store
from services.reporting.kpi import Granularity
from services.reporting.main import SPEC
from services.reporting.metrics import Dimension, Period, Source, table
from shared import db
from shared.events import Event, ValidationContext, validate_event
from tests.helpers import event
from tests.integration.test_reporting_store import feed

pytestmark = pytest.mark.integration

TODAY = date(2025, 6, 30)
WINDOW = 20  # shorter than a month: spells begin and end inside one
TIERS, SEGMENTS, CHANNELS = ("gold", "silver", "bronze"), ("loyal", "at_risk"), ("web", "shop")
COUNTS = [
    "customers_at_start",
    "customers_at_end",
    "active_customers",
    "won_back_customers",
    "lost_customers",
    "churn_rate",
    "retention_rate",
]


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def history(
    rng: random.Random, customers: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Purchases over 16 months (a few days of each customer held back as late events),
    tier and segment changes, acquisition channels."""
    events: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    start = TODAY - timedelta(days=480)
    for n in range(customers):
        who = f"c{n}"
        if rng.random() < 0.8:
            channel = rng.choice(CHANNELS)
            events.append(
                event(
                    "crm.customer.registered",
                    who,
                    {"name": who, "acquisition_channel": channel},
                    time=at(start, 1),
                )
            )
        days = sorted(
            {start + timedelta(days=rng.randrange(485)) for _ in range(rng.randrange(1, 9))}
        )
        for k, day in enumerate(days):
            data = {
                "order_id": f"{who}-{k}",
                "amount": "10.00",
                "currency": "USD",
                "channel": "web",
            }
            bought = event("crm.purchase.completed", who, data, time=at(day))
            (late if rng.random() < 0.15 else events).append(bought)
        for kind, values in (("tier", TIERS), ("segment", SEGMENTS)):
            for _ in range(rng.randrange(0, 4)):
                when = at(start + timedelta(days=rng.randrange(485)), rng.randrange(24))
                data = {"new": rng.choice(values), "as_of": when.isoformat()}
                events.append(event(f"crm.customer.{kind}_changed", who, data, time=when))
    return events, late


# --------------------------------------------------------------------------- brute force


def brute_force(
    events: list[Event], periods: list[tuple[date, date]], by: Dimension | None, window: int
) -> dict[tuple[date, str], dict[str, Any]]:
    """The definitions (docs/domain.md, "The customer base") applied customer by customer,
    day by day, from the events themselves."""
    bought: dict[str, set[date]] = {}
    classes: dict[tuple[str, str], dict[date, tuple[datetime, str, str]]] = {}
    channels: dict[str, tuple[datetime, str, str]] = {}
    for e in events:
        data = e.data.model_dump()
        if e.type == "crm.purchase.completed":
            bought.setdefault(e.subject, set()).add(e.time.astimezone(UTC).date())
        elif e.type.endswith("_changed"):
            as_of = data["as_of"]
            day = as_of.astimezone(UTC).date()
            kind = e.type.removeprefix("crm.customer.").removesuffix("_changed")
            found = classes.setdefault((e.subject, kind), {})
            if day not in found or (as_of, e.id) > found[day][:2]:
                found[day] = (as_of, e.id, data["new"])
        elif data.get("acquisition_channel") and (
            e.subject not in channels or (e.time, e.id) > channels[e.subject][:2]
        ):
            channels[e.subject] = (e.time, e.id, data["acquisition_channel"])

    def slice_of(customer: str, day: date) -> str:
        if by is None:
            return ""
        if by is Dimension.CHANNEL:
            return channels[customer][2] if customer in channels else "unknown"
        history = sorted(classes.get((customer, by.value), {}).items())
        if not history:
            return "unscored"
        earlier = [v for d, (_, _, v) in history if d <= day]
        return earlier[-1] if earlier else history[0][1][2]

    counts: dict[tuple[date, str], dict[str, int]] = {}
    for customer, days in bought.items():
        active = {p + timedelta(days=k) for p in days for k in range(window)}
        lost_on = {
            p + timedelta(days=window)
            for p in days
            if not any(p + timedelta(days=k) in days for k in range(1, window + 1))
        }
        first = min(days)
        for s, last in periods:
            span = [s + timedelta(days=k) for k in range((last - s).days + 1)]
            at_start = s - timedelta(days=1) in active
            found = {
                "customers_at_start": at_start,
                "customers_at_end": last in active,
                "active_customers": any(d in active for d in span),
                "new": s <= first <= last,
                "won_back_customers": first < s and not at_start and any(d in days for d in span),
                "lost_customers": at_start and any(d in lost_on for d in span),
            }
            if any(found.values()):
                into = counts.setdefault((s, slice_of(customer, s)), {})
                for name, yes in found.items():
                    into[name] = into.get(name, 0) + int(yes)
    out = {}
    for key, c in counts.items():
        start, new = c.get("customers_at_start", 0), c.get("new", 0)
        out[key] = {name: c.get(name, 0) for name in COUNTS[:5]} | {
            "churn_rate": kpi.churn_rate(c.get("lost_customers", 0), start),
            "retention_rate": kpi.retention_rate(
                c.get("customers_at_end", 0), new + c.get("won_back_customers", 0), start
            ),
        }
    return out


def expected_rows(
    events: list[Event], periods: list[tuple[date, date]], by: Dimension | None, window: int
) -> dict[tuple[date, str], dict[str, Any]]:
    found = brute_force(events, periods, by, window)
    return {
        key: {
            name: (None if v is None else round(float(v), 6)) if name.endswith("_rate") else v
            for name, v in values.items()
        }
        for key, values in found.items()
    }


# --------------------------------------------------------------------------- reads


def calendar(granularity: Granularity, days: int) -> list[tuple[date, date]]:
    first = TODAY - timedelta(days=days - 1)
    starts = kpi.period_starts(first, TODAY, granularity)
    return [
        (s, min(kpi.next_period_start(s, granularity) - timedelta(days=1), TODAY)) for s in starts
    ]


async def read(
    pool: db.Pool,
    periods: list[tuple[date, date]],
    granularity: Granularity,
    by: Dimension | None,
    window: int,
) -> dict[tuple[date, str], dict[str, Any]]:
    cells = await store.read_cells(
        pool,
        store.Periods.of([s for s, _ in periods], granularity),
        by,
        {Source.BASE},
        today=TODAY,
        churn_after_days=window,
    )
    rows = table(cells, [Period(s, last) for s, last in periods], COUNTS, by)
    return {
        (r["period"], r[by.value] if by else ""): {n: r[n] for n in COUNTS}
        for r in rows
        if any(r[n] for n in COUNTS[:5])
    }


async def same_as_brute_force(pool: db.Pool, events: list[Event], window: int) -> None:
    for granularity, days in (
        (Granularity.DAY, 30),
        (Granularity.DAY, 365),
        (Granularity.WEEK, 84),
        (Granularity.MONTH, 365),
    ):
        periods = calendar(granularity, days)
        for by in (None, Dimension.TIER, Dimension.SEGMENT, Dimension.CHANNEL):
            got = await read(pool, periods, granularity, by, window)
            assert got == expected_rows(events, periods, by, window), (granularity, days, by)


def validated(raw: list[dict[str, Any]]) -> list[Event]:
    return [validate_event(r, ValidationContext()) for r in raw]


async def fresh(database_url: str, schema: str) -> db.Pool:
    found = await db.create_pool(database_url, schema)
    await db.migrate(found, schema, SPEC.migrations, db.CONSUMER_MIGRATIONS)
    return found


@pytest.fixture
async def schemas(database_url: str) -> AsyncIterator[list[db.Pool]]:
    pools: list[db.Pool] = []
    yield pools
    for found in pools:
        await found.close()


async def test_counters_equal_brute_force_under_shuffled_arrival_and_late_events(
    database_url: str, schemas: list[db.Pool]
) -> None:
    rng = random.Random(16)
    raw, late = history(rng, 45)
    events, late_events = validated(raw), validated(late)
    for attempt in range(2):
        pool = await fresh(database_url, f"reporting_base_{attempt}")
        schemas.append(pool)
        assert await store.converge_base(pool, WINDOW)
        await feed(pool, rng.sample(events, len(events)), batch_size=rng.choice([1, 7, 50]))
        await same_as_brute_force(pool, events, WINDOW)
        # Late purchases: fill gaps (a lost customer was not lost), start spells, move a
        # first purchase earlier; they arrive after the rest, shuffled.
        await feed(pool, rng.sample(late_events, len(late_events)), batch_size=3)
        await same_as_brute_force(pool, events + late_events, WINDOW)


async def test_another_window_reads_the_definition_until_the_counters_come_over(
    database_url: str, schemas: list[db.Pool]
) -> None:
    rng = random.Random(61)
    raw, late = history(rng, 30)
    events = validated(raw + late)
    pool = await fresh(database_url, "reporting_base_window")
    schemas.append(pool)
    await feed(pool, events, batch_size=40)  # counted with the migration's W (365)
    other = 45
    # The counters count with 365: a read with 45 computes the base from the purchases.
    assert await pool.fetchval("SELECT window_days FROM base_window") == 365
    await same_as_brute_force(pool, events, other)
    assert await store.converge_base(pool, other)
    assert await pool.fetchval("SELECT ready AND window_days = 45 FROM base_window")
    assert not await pool.fetchval("SELECT count(*) FROM base_days WHERE window_days = 365")
    await same_as_brute_force(pool, events, other)


async def test_customers_folded_before_the_counters_are_counted_by_converge(
    database_url: str, schemas: list[db.Pool]
) -> None:
    """Migration 006 copies each customer's purchase days, classes and channel from the
    tables folded before it; converge_base counts them: the same counters as a fold."""
    rng = random.Random(6)
    raw, late = history(rng, 30)
    events = validated(raw + late)
    pool = await fresh(database_url, "reporting_base_backfill")
    schemas.append(pool)
    assert await store.converge_base(pool, WINDOW)
    await feed(pool, rng.sample(events, len(events)), batch_size=25)
    folded = {t: await rows_of(pool, t) for t in ("base_members", "base_days")}
    # As before migration 006: the other tables, and no counters.
    await pool.execute("DELETE FROM base_members; DELETE FROM base_days")
    await pool.execute("UPDATE base_window SET window_days = 365, ready = false")
    migration = (SPEC.migrations / "006_base_counters.sql").read_text()
    await pool.execute(migration.split("-- backfill:")[1].split("-- :backfill")[0])
    await same_as_brute_force(pool, events, WINDOW)  # read-time path meanwhile
    assert await store.converge_base(pool, WINDOW)
    assert {t: await rows_of(pool, t) for t in folded} == folded
    await same_as_brute_force(pool, events, WINDOW)


async def rows_of(pool: db.Pool, name: str) -> list[str]:
    return sorted(r[0] for r in await pool.fetch(f"SELECT row_to_json(t)::text FROM {name} t"))
