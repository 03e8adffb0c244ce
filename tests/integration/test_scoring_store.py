"""Scoring's history tables and the RFM derived from them, on a real PostgreSQL, against
histories worked out by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.scoring import rescore, store
from services.scoring.domain import PurchaseSummary
from services.scoring.main import SPEC
from services.scoring.projection import ScoringProjection
from services.scoring.settings import ScoringSettings
from shared import db
from shared.events import RECORDED, Event, validate_event
from tests.helpers import event

pytestmark = pytest.mark.integration

UTC = ZoneInfo("UTC")
WINDOW = 90


def at(moment: str) -> datetime:
    return datetime.fromisoformat(f"2025-03-{moment}:00+00:00")


def ev(
    eid: str, type_name: str, subject: str, data: dict[str, Any], when: str, source: str = "shop"
) -> Event:
    raw = event(type_name, subject, data, time=at(when), event_id=eid) | {"source": source}
    return validate_event(raw, RECORDED)


def buy(eid: str, subject: str, when: str, amount: str, source: str = "shop") -> Event:
    data = {"order_id": f"o-{eid}", "amount": amount, "currency": "USD"}
    return ev(eid, "crm.purchase.completed", subject, data, when, source)


def refund(eid: str, subject: str, when: str, amount: str) -> Event:
    data = {"order_id": "o-x1", "amount": amount, "currency": "USD"}
    return ev(eid, "crm.purchase.refunded", subject, data, when)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    found = await db.create_pool(database_url, "scoring")
    await db.migrate(found, "scoring", *SPEC.migration_directories())
    yield found
    await found.close()


async def fold(pool: db.Pool, *batches: list[Event]) -> None:
    for batch in batches:
        async with pool.acquire() as conn, conn.transaction():
            await ScoringProjection(UTC).store(conn, batch)


# x: 10 on 03-01, 20 and 5 on 03-05 (the 5 at 18:00 is the last), 4 refunded on 03-06, and a
# purchase on 03-20, after the as-of instant below. r: a refund only (no purchase).
HISTORY = [
    buy("x1", "x", "01T10:00", "10.00"),
    buy("x2", "x", "05T09:00", "20.00"),
    buy("x3", "x", "05T18:00", "5.00"),
    refund("x4", "x", "06T10:00", "4.00"),
    buy("x5", "x", "20T10:00", "100.00"),
    refund("r1", "r", "02T10:00", "3.00"),
]
AS_OF = at("10T00:00")


async def test_rfm_and_the_scores_read_one_derivation(pool: db.Pool) -> None:
    await fold(pool, HISTORY)
    rfm = await store.load_rfm(pool, "x", AS_OF, UTC, WINDOW)
    # Up to 03-10: three purchases (x1, x2, x3), first x1, last x3, 10 + 20 + 5 - 4 = 31.
    assert rfm == PurchaseSummary("x", at("01T10:00"), at("05T18:00"), 3, Decimal("31.00"))
    population = await store.load_population(pool, AS_OF, UTC, WINDOW, ["x"])
    assert population.customer_id.tolist() == ["x"]
    assert population.orders.tolist() == [3.0]
    assert population.net_spent.tolist() == [31.0]
    assert population.days_since_last.tolist() == [(4 * 24 + 6) / 24]  # 03-05 18:00 to 03-10
    # A customer who only got a refund has no purchase: no RFM, and not in the population.
    assert await store.load_rfm(pool, "r", AS_OF, UTC, WINDOW) is None
    assert (await store.load_population(pool, AS_OF, UTC, WINDOW, ["r"])).size == 0


async def test_a_batch_stored_again_adds_nothing(pool: db.Pool) -> None:
    first = [
        *HISTORY[:3],
        ev(
            "i1",
            "crm.interaction.logged",
            "x",
            {"channel": "chat", "direction": "inbound"},
            "02T10:00",
        ),
        ev(
            "k1",
            "crm.complaint.opened",
            "x",
            {"complaint_id": "c1", "channel": "hotline", "category": "delivery"},
            "03T10:00",
        ),
        ev("p1", "crm.customer.registered", "x", {"name": "X"}, "01T08:00"),
    ]
    # The second batch repeats the first (some rows are stored: the COPY gives way to an
    # insert that skips them) and adds x3's neighbour x4.
    await fold(pool, first, [*first, HISTORY[3]])
    counts = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM purchases) AS purchases,"
        " (SELECT count(*) FROM interactions) AS interactions,"
        " (SELECT count(*) FROM complaints) AS complaints,"
        " (SELECT count(*) FROM customer_events) AS profile_events"
    )
    assert counts is not None
    assert dict(counts) == {"purchases": 4, "interactions": 1, "complaints": 1, "profile_events": 1}
    rfm = await store.load_rfm(pool, "x", AS_OF, UTC, WINDOW)
    assert rfm is not None
    assert (rfm.purchase_count, rfm.total_spent) == (3, Decimal("31.00"))


async def test_one_id_from_two_sources_is_two_events(pool: db.Pool) -> None:
    # CloudEvents: an id is unique within its source; two shops may both send "1001".
    same_id = [buy("1001", "x", "01T10:00", "10.00", "shop-a")]
    await fold(pool, same_id, [buy("1001", "x", "01T10:00", "15.00", "shop-b")], same_id)
    rfm = await store.load_rfm(pool, "x", AS_OF, UTC, WINDOW)
    assert rfm is not None
    assert (rfm.purchase_count, rfm.total_spent) == (2, Decimal("25.00"))


async def test_the_first_rescore_announces_every_buyer_once(
    pool: db.Pool, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rescore, "EVENTS_PER_APPEND", 2)  # several slices of change events
    buyers = {f"c{i}" for i in range(7)}
    await fold(pool, [buy(f"e{c}", c, "01T10:00", "10.00") for c in sorted(buyers)], HISTORY)
    buyers.add("x")
    assert (
        await rescore.rescore(ScoringSettings(timezone="UTC", database_url=database_url))
        is not None
    )
    rows = await pool.fetch("SELECT type, subject FROM events")
    announced: dict[str, list[str]] = {}
    for row in rows:
        announced.setdefault(row["type"], []).append(row["subject"])
    for kind in ("crm.customer.segment_changed", "crm.customer.tier_changed"):
        assert sorted(announced[kind]) == sorted(buyers)  # each buyer once (no old class)
    assert await pool.fetchval("SELECT count(*) FROM outbox") == len(rows)


async def test_a_rescore_runs_on_its_own_connection_bound_by_its_own_timeout(
    pool: db.Pool, database_url: str
) -> None:
    """A re-score's statements are bound by SCORING_RESCORE_TIMEOUT_SECONDS, not by the
    pool's 60 s (at a million customers loading the population alone outlasted it), and its
    connection is closed when it fails: its lock goes with it, so the next run is not held."""
    await fold(pool, [buy("e1", "c1", "01T10:00", "10.00")], HISTORY)
    hurried = ScoringSettings(
        timezone="UTC", database_url=database_url, scoring_rescore_timeout_seconds=1e-6
    )
    with pytest.raises(TimeoutError):
        await rescore.rescore(hurried)
    assert await pool.fetchval("SELECT count(*) FROM score_runs") == 0
    patient = ScoringSettings(timezone="UTC", database_url=database_url)
    assert await rescore.rescore(patient) is not None  # the failed run's lock is gone
    assert await pool.fetchval("SELECT count(*) FROM score_runs") == 1
