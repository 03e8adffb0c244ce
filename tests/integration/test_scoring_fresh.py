"""Scores are current as soon as a customer's facts are applied (issue 16, item 5), through
scoring's HTTP API and projection on a real PostgreSQL and broker: a customer the last re-score
saw unchanged is answered from its snapshot; one with a fact applied after the re-score loaded
its population (even one dated before the re-score) or with no snapshot at all is scored from
their facts against that re-score's population.

Population (p-k, k = 1..5: k orders of 100, the last (60 - 10k) days ago; n = 5): recency
-days [-50 -40 -30 -20 -10], orders [1 2 3 4 5], spend [100 200 300 400 500]. Scores by hand,
score = 1 + floor(5 (worse + at_or_worse) / 2n), segment on the grid (R row, FM column,
FM = (F + M + 1) // 2):
- p-1 at the re-score: R 0,1 -> 1; F 0,1 -> 1; M 0,1 -> 1; R1 FM1: lost.
- p-1 after a purchase of 10 dated two days ago: R -2 -> 5,5 -> 5; F 2 -> 1,2 -> 1 + 15//10
  = 2; M 110 -> 1,1 -> 1 + 10//10 = 2; R5 FM2: potential_loyalist.
- new-1, a first purchase of 250 five days ago: R 5,5 -> 5; F 1 -> 0,1 -> 1; M 250 -> 2,2 ->
  1 + 20//10 = 3; R5 FM2: potential_loyalist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.scoring import rescore
from services.scoring.main import app as scoring_app
from services.scoring.projection import ScoringProjection
from services.scoring.settings import ScoringSettings
from shared import db
from shared.events import RECORDED, Event, validate_event
from shared.settings import CommonSettings
from tests.helpers import api_client, purchase, wait_until

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
Scoring = tuple[httpx.AsyncClient, db.Pool, ScoringSettings]


def bought(customer: str, amount: str, days_ago: float) -> Event:
    return validate_event(purchase(customer, amount, time=NOW - timedelta(days=days_ago)), RECORDED)


def population() -> list[Event]:
    return [bought(f"p-{k}", "100.00", 60 - 10 * k + n) for k in range(1, 6) for n in range(k)]


async def fold(pool: db.Pool, events: list[Event]) -> None:
    """As the consumer runtime applies a batch: the projection, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await ScoringProjection(ZoneInfo("UTC")).store(conn, events)


@pytest.fixture
async def scoring(settings: CommonSettings) -> AsyncIterator[Scoring]:
    """The service, whose own re-score (at start-up) finds nothing; the tests re-score."""
    fields = settings.model_dump() | {"timezone": "UTC", "scoring_rescore_seconds": 3600}
    scoring_settings = ScoringSettings(**fields)
    app = scoring_app(scoring_settings)
    async with app.router.lifespan_context(app):
        pool = await db.create_pool(settings.database_url, "scoring")
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://scoring") as http:
            yield http, pool, scoring_settings
        await pool.close()


async def rescored_population(pool: db.Pool, settings: ScoringSettings) -> int:
    """p-1..p-5 applied an hour ago (history, long committed), then a re-score (after the
    service's own at start-up, which found no buyer)."""
    await wait_until(lambda: pool.fetchval("SELECT count(*) FROM score_runs"), what="start-up")
    await fold(pool, population())
    await pool.execute("UPDATE purchases SET applied_at = applied_at - interval '1 hour'")
    run_id = await rescore.rescore(settings)
    assert run_id is not None
    return run_id


def rfm_of(scores: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("recency_score", "frequency_score", "monetary_score", "rfm_code", "segment")
    return tuple(scores[k] for k in keys)


async def test_a_changed_customer_is_scored_when_the_fact_is_applied(scoring: Scoring) -> None:
    http, pool, settings = scoring
    run_id = await rescored_population(pool, settings)
    before = (await http.get("/v1/customers/p-1")).json()["scores"]
    assert rfm_of(before) == (1, 1, 1, "111", "lost")
    assert (before["source"], before["run_id"], before["orders"]) == ("re-score", run_id, 1)

    # Dated two days ago, before the re-score's as_of, but applied after it.
    await fold(pool, [bought("p-1", "10.00", 2)])
    after = (await http.get("/v1/customers/p-1")).json()["scores"]
    assert rfm_of(after) == (5, 2, 2, "522", "potential_loyalist")
    assert (after["source"], after["run_id"], after["orders"]) == ("live", run_id, 2)
    assert after["reference_customers"] == 5
    assert after["segment_label_en"] == "Potential Loyalist"
    rfm = (await http.get("/v1/customers/p-1/rfm")).json()
    assert (rfm["scores"]["code"], rfm["reference"]["run_id"]) == ("522", run_id)


async def test_a_new_customer_is_scored_with_the_first_purchase(scoring: Scoring) -> None:
    http, pool, settings = scoring
    run_id = await rescored_population(pool, settings)
    assert (await http.get("/v1/customers/new-1/rfm")).status_code == 404

    await fold(pool, [bought("new-1", "250.00", 5)])
    rfm = (await http.get("/v1/customers/new-1/rfm")).json()
    assert (rfm["frequency"], rfm["monetary"]) == (1, "250.00")
    assert {k: rfm["scores"][k] for k in ("recency", "frequency", "monetary", "code")} == {
        "recency": 5,
        "frequency": 1,
        "monetary": 3,
        "code": "513",
    }
    assert rfm["scores"]["segment"] == "potential_loyalist"
    assert (rfm["reference"]["run_id"], rfm["reference"]["customers"]) == (run_id, 5)
    view = (await http.get("/v1/customers/new-1")).json()["scores"]
    assert rfm_of(view) == (5, 1, 3, "513", "potential_loyalist")
    assert (view["source"], view["run_id"], view["orders"]) == ("live", run_id, 1)
    # No re-score ran: the fold stored the new customer's row, beside the run's five.
    assert await pool.fetchval("SELECT max(run_id) FROM score_runs") == run_id
    stored = await pool.fetch("SELECT customer_id, source FROM customer_scores ORDER BY 1")
    assert [tuple(r) for r in stored] == [("new-1", "live")] + [
        (f"p-{k}", "re-score") for k in range(1, 6)
    ]
