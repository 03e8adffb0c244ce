"""Strategic value, the customer attribute of the customer events, in the value classes
(issue 14, item 13), through the HTTP API on a real PostgreSQL.

Five buyers with no service costs, spends 10, 20, 40, 300 and 1000: the top ceil(0.2 x 5) = 1
by net value is MVC, so b (1000) is MVC. The account team then gives w (40 spent) a
strategic value of 2000 (a reference account): w's net value is 40 + 2000 = 2040, so w is
MVC and b is second-tier. A later update sets it to 0: b is MVC again. As of any instant the
value of the latest event up to then counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.scoring.main import app as scoring_app
from services.scoring.projection import ScoringProjection
from services.scoring.settings import ScoringSettings
from shared import db
from shared.events import RECORDED, Event, validate_event
from shared.settings import CommonSettings
from tests.helpers import api_client, event

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
SPENT = {"p": 10, "z": 20, "w": 40, "a": 300, "b": 1000}
GIVEN, CLEARED = NOW - timedelta(days=3), NOW - timedelta(days=1)


def history() -> list[Event]:
    raw = []
    for customer, amount in SPENT.items():
        data = {"order_id": f"{customer}-1", "amount": f"{amount}.00", "currency": "USD"}
        raw.append(event("crm.purchase.completed", customer, data, time=NOW - timedelta(days=5)))
        raw.append(
            event(
                "crm.customer.registered",
                customer,
                {"name": customer},
                time=NOW - timedelta(days=6),
            )
        )
    raw.append(event("crm.customer.updated", "w", {"strategic_value": "2000.00"}, time=GIVEN))
    raw.append(event("crm.customer.updated", "w", {"phone": "1"}, time=GIVEN + timedelta(hours=1)))
    raw.append(event("crm.customer.updated", "w", {"strategic_value": "0"}, time=CLEARED))
    return [validate_event(r, RECORDED) for r in raw]


@pytest.fixture
async def http(settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    scoring_settings = ScoringSettings(**(settings.model_dump() | {"timezone": "UTC"}))
    app = scoring_app(scoring_settings)
    async with app.router.lifespan_context(app):
        pool = await db.create_pool(settings.database_url, "scoring")
        async with pool.acquire() as conn, conn.transaction():
            await ScoringProjection(ZoneInfo("UTC")).store(conn, history())
        await pool.close()
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://scoring") as client:
            yield client


async def value_classes(http: httpx.AsyncClient, as_of: datetime) -> dict[str, str]:
    found = {}
    for customer in SPENT:
        body = (
            await http.get(f"/v1/customers/{customer}/score", params={"as_of": as_of.isoformat()})
        ).json()
        found[customer] = body["value_class"]
        if customer == "w":
            numbers = body["explanations"]["value_class"]["numbers"]
            found["w strategic"] = numbers["strategic_value"]
    return found


async def test_strategic_value_from_the_customer_events_moves_the_value_class(
    http: httpx.AsyncClient,
) -> None:
    before = await value_classes(http, GIVEN - timedelta(hours=1))
    assert before == {
        "p": "stc",
        "z": "stc",
        "w": "stc",
        "w strategic": 0.0,
        "a": "stc",
        "b": "mvc",
    }
    # An update that does not name strategic_value leaves it as it was.
    given = await value_classes(http, GIVEN + timedelta(hours=2))
    assert given == {
        "p": "stc",
        "z": "stc",
        "w": "mvc",
        "w strategic": 2000.0,
        "a": "stc",
        "b": "stc",
    }
    cleared = await value_classes(http, CLEARED + timedelta(hours=1))
    assert cleared == before
    view = (await http.get("/v1/customers/w")).json()
    assert view["profile"]["strategic_value"] == "0"
