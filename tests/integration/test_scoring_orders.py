"""What counts as a purchase (issue 14, item 8), through scoring's store on a real PostgreSQL,
against a history worked out by hand: refunds net out, an order refunded in full is no
purchase, value-0 orders count only by a setting, an order sent again counts once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.scoring import rescore, store
from services.scoring.domain import PurchaseSummary, summarise
from services.scoring.main import SPEC
from services.scoring.population import SimpleClvBase
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


def order(
    eid: str, subject: str, order_id: str, when: str, amount: str, refund: bool = False
) -> Event:
    kind = "crm.purchase.refunded" if refund else "crm.purchase.completed"
    data: dict[str, Any] = {"order_id": order_id, "amount": amount, "currency": "USD"}
    raw = event(kind, subject, data, time=at(when), event_id=eid) | {"source": "shop"}
    return validate_event(raw, RECORDED)


# a: o1 100 on 03-01, sent again under another event id an hour later; o2 50 on 03-03,
# refunded in full on 03-04; o3 80 on 03-05, 30 of it refunded on 03-06; o4 of value 0 on
# 03-08. b: o5 40 on 03-02, refunded in full on 03-03.
HISTORY = [
    order("a1", "a", "o1", "01T10:00", "100.00"),
    order("a1-again", "a", "o1", "01T11:00", "100.00"),
    order("a2", "a", "o2", "03T10:00", "50.00"),
    order("a2-refund", "a", "o2", "04T10:00", "50.00", refund=True),
    order("a3", "a", "o3", "05T10:00", "80.00"),
    order("a3-refund", "a", "o3", "06T10:00", "30.00", refund=True),
    order("a4", "a", "o4", "08T10:00", "0.00"),
    order("b1", "b", "o5", "02T10:00", "40.00"),
    order("b1-refund", "b", "o5", "03T10:00", "40.00", refund=True),
]
AS_OF = at("10T00:00")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    found = await db.create_pool(database_url, "scoring")
    await db.migrate(found, "scoring", *SPEC.migration_directories())
    async with found.acquire() as conn, conn.transaction():
        await ScoringProjection(UTC).store(conn, HISTORY)
    yield found
    await found.close()


async def test_rfm_counts_orders_net_of_refunds(pool: db.Pool) -> None:
    rfm = await store.load_rfm(pool, "a", AS_OF, UTC, WINDOW)
    # Purchases o1 (once) and o3 (net 50); o2 refunded in full, o4 of value 0 are none.
    # Money: 100 + 50 + 80 + 0 - 50 - 30 = 150.
    assert rfm == PurchaseSummary("a", at("01T10:00"), at("05T10:00"), 2, Decimal("150.00"))
    with_zero = await store.load_rfm(pool, "a", AS_OF, UTC, WINDOW, count_zero_value=True)
    assert with_zero == PurchaseSummary("a", at("01T10:00"), at("08T10:00"), 3, Decimal("150.00"))


async def test_an_order_refunded_in_full_makes_no_customer(pool: db.Pool) -> None:
    assert await store.load_rfm(pool, "b", AS_OF, UTC, WINDOW) is None
    population = await store.load_population(pool, AS_OF, UTC, WINDOW)
    assert population.customer_id.tolist() == ["a"]
    # Before its refund (03-03 10:00) b's order was a purchase.
    before = await store.load_rfm(pool, "b", at("03T09:00"), UTC, WINDOW)
    assert before == PurchaseSummary("b", at("02T10:00"), at("02T10:00"), 1, Decimal("40.00"))


async def test_population_reads_net_order_values(pool: db.Pool) -> None:
    population = await store.load_population(pool, AS_OF, UTC, WINDOW)
    row = {name: float(getattr(population, name)[0]) for name in store.POPULATION_FIELDS}
    assert row["orders"] == 2
    assert row["purchase_days"] == 2
    assert row["net_spent"] == 150.0
    assert row["days_since_first"] == 9  # 03-01 to 03-10
    assert row["span_days"] == 4  # 03-01 to 03-05
    assert row["days_since_last"] == pytest.approx(4 + 14 / 24)  # 03-05 10:00 to 03-10 00:00
    assert row["repeat_spend"] == 50.0  # o3 net of its refund, the only repeat day


async def test_the_summary_view_and_the_offline_definition_agree(pool: db.Pool) -> None:
    rows = await pool.fetch(
        "SELECT customer_id, purchase_count, total_spent FROM purchase_summaries"
    )
    found = {r["customer_id"]: (r["purchase_count"], r["total_spent"]) for r in rows}
    assert found == {"a": (2, Decimal("150.00")), "b": (0, Decimal("0.00"))}
    for customer in ("a", "b"):
        offline = summarise(customer, [e for e in HISTORY if e.subject == customer])
        assert (offline.purchase_count, offline.total_spent) == found[customer]


async def test_a_rescore_keeps_the_simple_clv_averages_for_live_scores(
    pool: db.Pool, database_url: str
) -> None:
    assert await rescore.rescore(ScoringSettings(timezone="UTC", database_url=database_url), AS_OF)
    found = await store.latest_reference(pool)
    assert found is not None
    # One buyer, a: 2 orders for 150 over 9 days, observed for the 90-day minimum: 2 orders
    # in 90 / 7 weeks; 75 an order; no ended lifetime, so the default 156 weeks.
    assert found[2].simple == SimpleClvBase(
        order_value=75.0, weekly_rate=2 / (90 / 7), lifespan_weeks=156.0, measured=False
    )
    simple = await pool.fetchval("SELECT simple_clv FROM customer_scores WHERE customer_id = 'a'")
    assert simple == pytest.approx(2 / (90 / 7) * 75 * 156)
