"""Scoring's answers label every code in English and Chinese, and value classes weigh the
margin against the cost to serve (issue 14, items 4 and 5), through the HTTP API on a real
PostgreSQL and broker.

Five customers, each distinct in recency, orders and spend, so that their RFM scores and
classes can be worked out by hand (score = 1 + floor(5 (below + below_or_equal) / 2n): with
five distinct values a customer's score is its rank, 1-5; defaults: margin 1.0, 25 a complaint,
2 an interaction, the top ceil(0.2 x 5) = 1 customer by net value is MVC):

| customer | orders, spend | last bought | R F M | tier | net value | class |
| p | 1, 10   | 1 day ago  | 5 1 1 | potential (R >= 3, F and M < 3)    | 10               | stc |
| z | 2, 20   | 2 days ago | 4 2 2 | potential                          | 20 - 25 = -5     | bz  |
| w | 3, 40   | 3 days ago | 3 3 3 | developing (R >= 3, F >= 3)        | 40 - 25 - 2 = 13 | stc |
| a | 4, 300  | 4 days ago | 2 4 4 | forgotten (R <= 2)                 | 300              | stc |
| b | 5, 1000 | 5 days ago | 1 5 5 | forgotten                          | 1000             | mvc |

z and w made one complaint each, w also one interaction: w is the 40-spender whom one
complaint must not make below-zero.
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
from tests.helpers import api_client, event, wait_until

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
# customer: (orders, total spend, days ago of the last order, complaints, interactions)
CUSTOMERS = {
    "p": (1, 10, 1, 0, 0),
    "z": (2, 20, 2, 1, 0),
    "w": (3, 40, 3, 1, 1),
    "a": (4, 300, 4, 0, 0),
    "b": (5, 1000, 5, 0, 0),
}
EXPECTED = {  # worked out by hand in the module docstring
    "p": ("potential", "stc"),
    "z": ("potential", "bz"),
    "w": ("developing", "stc"),
    "a": ("forgotten", "stc"),
    "b": ("forgotten", "mvc"),
}
# The names a Chinese-speaking sales team reads, written out here (not read from the code).
TIER_ZH = {
    "gold": "黄金客户",
    "developing": "发展客户",
    "potential": "潜力客户",
    "forgotten": "被遗忘客户",
}
VALUE_CLASS_ZH = {"mvc": "最有价值客户", "stc": "二级客户", "bz": "负值客户"}
CODED = ("tier", "value_class", "lifecycle", "churn_level")


def history(customer: str) -> list[Event]:
    orders, spend, last_days_ago, complaints, interactions = CUSTOMERS[customer]
    found = []
    for k in range(orders):  # equal orders, ten days apart, the last one last_days_ago
        when = NOW - timedelta(days=last_days_ago + 10 * k, hours=1)
        data = {"order_id": f"{customer}-{k}", "amount": f"{spend / orders:.2f}", "currency": "USD"}
        found.append(event("crm.purchase.completed", customer, data, time=when))
    for k in range(complaints):
        data = {"complaint_id": f"{customer}-c{k}", "channel": "hotline", "category": "delivery"}
        found.append(event("crm.complaint.opened", customer, data, time=NOW - timedelta(hours=2)))
    for _ in range(interactions):
        data = {"channel": "phone", "direction": "inbound"}
        found.append(event("crm.interaction.logged", customer, data, time=NOW - timedelta(hours=3)))
    return [validate_event(raw, RECORDED) for raw in found]


@pytest.fixture
async def scoring(settings: CommonSettings) -> AsyncIterator[tuple[httpx.AsyncClient, db.Pool]]:
    scoring_settings = ScoringSettings(**(settings.model_dump() | {"timezone": "UTC"}))
    app = scoring_app(scoring_settings)
    async with app.router.lifespan_context(app):
        pool = await db.create_pool(settings.database_url, "scoring")
        async with pool.acquire() as conn, conn.transaction():
            events = [e for customer in CUSTOMERS for e in history(customer)]
            await ScoringProjection(ZoneInfo("UTC")).store(conn, events)

        async def rescored_everyone() -> bool:
            await rescore.rescore(scoring_settings)
            count = await pool.fetchval("SELECT count(*) FROM customer_scores")
            return bool(count == len(CUSTOMERS))

        await wait_until(rescored_everyone, what="a re-score of the five customers")
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://scoring") as http:
            yield http, pool
        await pool.close()


def assert_labelled(body: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Each coded field keeps its code and carries a non-empty English and Chinese label."""
    for name in fields:
        assert isinstance(body[name], str)
        assert body[f"{name}_label_en"]
        assert body[f"{name}_label_en"].isascii()
        assert not body[f"{name}_label_zh"].isascii()


async def test_every_code_in_scoring_answers_carries_its_english_and_chinese_label(
    scoring: tuple[httpx.AsyncClient, db.Pool],
) -> None:
    http, _ = scoring
    # As of an instant, the customer and the population are taken at the same time, so the
    # ranks are exactly those of the table (live, the population is a moment older).
    as_of = {"as_of": (NOW - timedelta(minutes=30)).isoformat()}
    for customer, (tier, value_class) in EXPECTED.items():
        got = (await http.get(f"/v1/customers/{customer}/score", params=as_of)).json()
        assert (got["tier"], got["value_class"]) == (tier, value_class), str(got)
        assert_labelled(got, CODED)
        assert_labelled(got["rfm"], ("segment",))
        assert got["tier_label_zh"] == TIER_ZH[tier]
        assert got["value_class_label_zh"] == VALUE_CLASS_ZH[value_class]

    potential = (await http.get("/v1/customers/p/score", params=as_of)).json()
    assert (potential["tier_label_en"], potential["tier_label_zh"]) == ("Potential", "潜力客户")
    assert potential["tier_playbook"]["name_zh"] == "潜力客户"
    below_zero = (await http.get("/v1/customers/z/score", params=as_of)).json()
    assert below_zero["value_class_label_en"] == "Below-zero customer"

    page = (await http.get("/v1/customers", params={"limit": 10})).json()
    assert {i["customer_id"]: (i["tier"], i["value_class"]) for i in page["items"]} == EXPECTED
    for item in page["items"]:
        assert_labelled(item, ("segment", *CODED))
        assert item["tier_label_zh"] == TIER_ZH[item["tier"]]

    view = (await http.get("/v1/customers/p")).json()
    assert_labelled(view["scores"], ("segment", *CODED))
    assert view["scores"]["tier_label_zh"] == "潜力客户"

    today = NOW.date().isoformat()
    for groups in (
        (await http.get("/v1/segments")).json(),
        (await http.get("/v1/segments", params={"as_of": today})).json(),
    ):
        assert set(groups["tiers"]) == {"potential", "developing", "forgotten"}
        for tier, stats in groups["tiers"].items():
            assert stats["label_zh"] == TIER_ZH[tier]
            assert stats["label_en"].isascii()
        for stats in groups["segments"].values():
            assert stats["label_en"]
            assert not stats["label_zh"].isascii()
