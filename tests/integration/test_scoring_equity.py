"""Customer equity before any lifetime-value model (issue 14, item 9), on a real PostgreSQL:
scoring's re-score publishes tier summaries whose equity is null, and reporting keeps it
null ("not enough data"), with no growth of -100% against a period whose equity was known."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from services.reporting import domain as reporting_domain
from services.reporting import store as reporting_store
from services.reporting.main import SPEC as REPORTING
from services.scoring import rescore
from services.scoring.main import SPEC as SCORING
from services.scoring.projection import ScoringProjection
from services.scoring.settings import ScoringSettings
from shared import db
from shared.events import RECORDED, Event, ValidationContext, validate_event
from tests.helpers import event
from tests.integration.test_reporting_store import FEBRUARY, MARCH, kpis

pytestmark = pytest.mark.integration

RESCORED_AT = datetime(2025, 3, 20, 12, tzinfo=UTC)


def buy(customer: str, day: int) -> Event:
    data = {"order_id": f"o-{customer}", "amount": "40.00", "currency": "USD"}
    when = datetime(2025, 3, day, 10, tzinfo=UTC)
    raw = event("crm.purchase.completed", customer, data, time=when, event_id=f"e-{customer}")
    return validate_event(raw, RECORDED)


def february_summary() -> Event:
    data: dict[str, Any] = {
        "as_of": "2025-02-27T10:00:00+00:00",
        "tier": "gold",
        "customers": 3,
        "customer_equity": "900.00",
        "average_clv": "300.00",
    }
    raw = event(
        "crm.scoring.tier_summary",
        "tier:gold",
        data,
        time=datetime(2025, 2, 27, 10, tzinfo=UTC),
        event_id="february",
    )
    return validate_event(raw, ValidationContext())


@pytest.fixture
async def pools(database_url: str) -> AsyncIterator[tuple[db.Pool, db.Pool]]:
    scoring = await db.create_pool(database_url, "scoring")
    await db.migrate(scoring, "scoring", *SCORING.migration_directories())
    reporting = await db.create_pool(database_url, "reporting")
    await db.migrate(reporting, "reporting", REPORTING.migrations, db.CONSUMER_MIGRATIONS)
    yield scoring, reporting
    await scoring.close()
    await reporting.close()


async def test_equity_without_a_model_is_null_from_scoring_to_reporting(
    pools: tuple[db.Pool, db.Pool], database_url: str
) -> None:
    scoring, reporting = pools
    async with scoring.acquire() as conn, conn.transaction():
        # Three buyers: too few to fit any model, so no predictive CLV.
        await ScoringProjection(ZoneInfo("UTC")).store(conn, [buy(c, 3) for c in "xyz"])
    assert await rescore.rescore(
        ScoringSettings(timezone="UTC", database_url=database_url), RESCORED_AT
    )
    bodies = await scoring.fetch(
        "SELECT body FROM events WHERE type = 'crm.scoring.tier_summary' ORDER BY subject"
    )
    summaries = [validate_event(orjson.loads(r["body"]), ValidationContext()) for r in bodies]
    assert summaries
    assert sum(s.data.customers for s in summaries) == 3  # type: ignore[attr-defined]
    for row, summary in zip(bodies, summaries, strict=True):
        # Not 0: absent (JSON leaves out unknown optional values), read back as None.
        assert orjson.loads(row["body"])["data"].get("customer_equity") is None
        assert summary.data.customer_equity is None  # type: ignore[attr-defined]

    async with reporting.acquire() as conn, conn.transaction():
        batch = reporting_domain.fold([february_summary(), *summaries], UTC)
        await reporting_store.write(conn, batch)
    names = ["customer_equity", "customer_equity_growth", "scored_customers"]
    found = await kpis(reporting, names, [FEBRUARY, MARCH])
    assert [found[(FEBRUARY, "")][n] for n in names[::2]] == ["900.00", 3]
    # March: 3 customers scored, equity not known: null, and no -100% against February.
    assert [found[(MARCH, "")][n] for n in names] == [None, None, 3]
