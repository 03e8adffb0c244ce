"""The unified customer view and the lead lists through the HTTP API on a real PostgreSQL
(issue 14, items 10, 11 and 13): money says its currency, horizon and discount rate; every
class says why; surveys, prospects and MAN lead lists with the MAN rule's action.

Expectations are written out here by hand: the MAN table as the course states it, the
survey counts of the answers sent, the weekly and yearly discount rates from the defaults
(0.0018 a week; (1.0018)^(365.25/7) - 1 a year).
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
MAN_ACTIONS = {
    "M+A+N": "pursue",
    "M+A+n": "contact_with_skill",
    "M+a+N": "find_decision_maker",
    "m+A+N": "check_credit",
    "m+a+N": "nurture",
    "m+A+n": "nurture",
    "M+a+n": "nurture",
    "m+a+n": "stop",
}
# lead: assessments in time order (the latest counts)
LEADS = {
    "lead-1": ["M+A+N"],
    "lead-2": ["m+a+n", "M+A+n"],
    "lead-3": ["m+A+N"],
    "lead-4": ["m+a+N"],
    "lead-5": ["M+a+n"],
    "buyer": ["M+A+N"],
}
CLASSES = ("segment", "tier", "value_class", "lifecycle", "churn_level")


def at(days_ago: float) -> datetime:
    return NOW - timedelta(days=days_ago)


def history() -> list[Event]:
    raw = []
    for k, (amount, days_ago) in enumerate(((30, 25), (40, 15), (50, 5))):
        data = {"order_id": f"b-{k}", "amount": f"{amount}.00", "currency": "USD"}
        raw.append(event("crm.purchase.completed", "buyer", data, time=at(days_ago)))
    for kind, score, days_ago in (("nps", 9, 3), ("csat", 4, 2), ("nps", 3, 1)):
        data = {"score": score, "survey_id": f"{kind}-{days_ago}", "comment": "private words"}
        raw.append(event(f"crm.survey.{kind}", "buyer", data, time=at(days_ago)))
    raw.append(event("crm.customer.registered", "prospect", {"name": "P"}, time=at(9)))
    # Registered, bought, refunded in full: no purchase counts, so still a prospect.
    raw.append(event("crm.customer.registered", "refunded", {"name": "R"}, time=at(9)))
    order = {"order_id": "r-1", "amount": "50.00", "currency": "USD"}
    raw.append(event("crm.purchase.completed", "refunded", order, time=at(8)))
    raw.append(event("crm.purchase.refunded", "refunded", order, time=at(7)))
    for customer, codes in LEADS.items():
        for k, code in enumerate(codes):
            money, authority, need = (letter.isupper() for letter in code.split("+"))
            data = {"money": money, "authority": authority, "need": need}
            raw.append(event("crm.lead.assessed", customer, data, time=at(8 - k)))
    raw.append(
        event(
            "crm.lead.assessed",
            "prospect",
            {"money": True, "authority": False, "need": True},
            time=at(7),
        )
    )
    return [validate_event(r, RECORDED) for r in raw]


@pytest.fixture
async def http(settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    scoring_settings = ScoringSettings(**(settings.model_dump() | {"timezone": "UTC"}))
    app = scoring_app(scoring_settings)
    async with app.router.lifespan_context(app):
        pool = await db.create_pool(settings.database_url, "scoring")
        async with pool.acquire() as conn, conn.transaction():
            await ScoringProjection(ZoneInfo("UTC")).store(conn, history())

        async def rescored() -> bool:  # the app's own re-score may hold the lock a moment
            return await rescore.rescore(scoring_settings) is not None

        await wait_until(rescored, what="a re-score after the history was stored")
        await pool.close()
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://scoring") as client:
            yield client


def assert_explained(explanations: dict[str, Any], codes: dict[str, Any]) -> None:
    for kind in CLASSES:
        found = explanations[kind]
        assert found["code"] == codes[kind], kind
        assert found["rule"].split(".")[0] in {kind, "value", "churn"}, found["rule"]
        assert found["numbers"]
        assert found["text_en"].isascii()
        assert not found["text_zh"].isascii()


async def test_the_view_says_what_its_money_means_and_why_each_class(
    http: httpx.AsyncClient,
) -> None:
    view = (await http.get("/v1/customers/buyer")).json()
    assert view["currency"] == "USD"
    scores = view["scores"]
    values = scores["lifetime_values"]
    assert set(values) == {"historical", "simple", "predictive"}
    assert values["historical"]["amount"] == 120.0  # 30 + 40 + 50
    for kind in values.values():
        assert kind["currency"] == "USD"
        assert kind["definition"]
    predictive = values["predictive"]
    assert predictive["horizon_weeks"] == 52
    assert predictive["discount_rate_per_week"] == pytest.approx(0.0018)
    assert predictive["annual_discount_rate"] == pytest.approx(1.0018 ** (365.25 / 7) - 1)
    assert values["simple"]["lifespan_weeks"] == 156  # the default until lifetimes end
    assert_explained(view["explanations"], scores)
    # The buyer bought on 3 days over 20 days: expected gap (20 + 60) / 3 = 26.7 days.
    tier = view["explanations"]["tier"]
    assert tier["numbers"]["expected_gap_days"] == pytest.approx(80 / 3)
    assert "last purchase 5 days ago" in tier["text_en"]
    assert view["lifecycle"] == scores["lifecycle"]

    score = (await http.get("/v1/customers/buyer/score", params={"horizon_weeks": 26})).json()
    assert score["currency"] == "USD"
    assert score["lifetime"]["currency"] == "USD"
    assert score["lifetime"]["horizon_weeks"] == 26
    assert score["lifetime"]["values"]["predictive"]["horizon_weeks"] == 26
    assert_explained(score["explanations"], score | {"segment": score["rfm"]["segment"]})

    page = (await http.get("/v1/customers")).json()
    assert (page["currency"], page["horizon_weeks"]) == ("USD", 52)
    assert (await http.get("/v1/segments")).json()["currency"] == "USD"
    assert (await http.get("/v1/customers/buyer/rfm")).json()["currency"] == "USD"


async def test_surveys_are_in_the_view_without_their_comments(http: httpx.AsyncClient) -> None:
    view = (await http.get("/v1/customers/buyer")).json()
    nps, csat = view["surveys"]["nps"], view["surveys"]["csat"]
    assert (nps["responses"], nps["latest_score"], nps["latest_category"]) == (2, 3, "detractor")
    assert (nps["promoters"], nps["detractors"], nps["average_score"]) == (1, 1, 6.0)
    assert (csat["responses"], csat["latest_score"], csat["satisfied"]) == (1, 4, 1)
    assert view["counts"]["surveys"] == 3
    assert [(s["kind"], s["score"]) for s in view["latest_surveys"]] == [
        ("nps", 3),
        ("csat", 4),
        ("nps", 9),
    ]
    assert "private words" not in str(view)


async def test_a_registered_customer_who_never_bought_is_a_prospect(
    http: httpx.AsyncClient,
) -> None:
    view = (await http.get("/v1/customers/prospect")).json()
    assert view["scores"] is None
    assert (view["lifecycle"], view["lifecycle_label_zh"]) == ("prospect", "潜在期")
    assert view["explanations"]["lifecycle"]["rule"] == "lifecycle.never_bought"
    assert view["lead"]["class"] == "M+a+N"
    assert view["lead"]["action"] == "find_decision_maker"
    assert view["explanations"]["man"]["code"] == "M+a+N"


async def test_lead_lists_by_class_and_action_with_the_man_rule_s_action(
    http: httpx.AsyncClient,
) -> None:
    latest = {customer: codes[-1] for customer, codes in LEADS.items()} | {"prospect": "M+a+N"}

    pages, cursor = [], None
    while True:  # two at a time: every lead once, in customer id order
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = (await http.get("/v1/leads", params=params)).json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    items = [item for page in pages for item in page]
    assert [i["customer_id"] for i in items] == sorted(latest)
    for item in items:
        assert item["class"] == latest[item["customer_id"]]
        assert item["action"] == MAN_ACTIONS[item["class"]]
        assert item["advice"]
        assert not item["advice_zh"].isascii()
        assert item["has_bought"] == (item["customer_id"] == "buyer")
        assert item["lifecycle"] == (None if item["customer_id"] == "buyer" else "prospect")

    ideal = (await http.get("/v1/leads", params={"class": "M+A+N"})).json()["items"]
    assert [i["customer_id"] for i in ideal] == ["buyer", "lead-1"]
    nurture = (await http.get("/v1/leads", params={"action": "nurture"})).json()["items"]
    assert [i["customer_id"] for i in nurture] == ["lead-4", "lead-5"]
    reassessed = (await http.get("/v1/leads", params={"class": "m+a+n"})).json()["items"]
    assert reassessed == []  # lead-2's first assessment no longer counts
    bad = await http.get("/v1/leads", params={"class": "X+A+N"})
    assert bad.status_code == 422


async def test_prospects_are_listed_in_lifecycle(http: httpx.AsyncClient) -> None:
    # Everyone the customer events know but the buyer (the refunded order does not count).
    expected = sorted({*LEADS, "prospect", "refunded"} - {"buyer"})
    found, cursor = [], None
    while True:
        params: dict[str, Any] = {"lifecycle": "prospect", "limit": 3}
        body = (
            await http.get("/v1/customers", params=params | ({"cursor": cursor} if cursor else {}))
        ).json()
        found += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [i["customer_id"] for i in found] == expected
    assert {(i["lifecycle"], i["lifecycle_label_zh"]) for i in found} == {("prospect", "潜在期")}
    registered = {i["customer_id"] for i in found if i["registered_at"] is not None}
    assert registered == {"prospect", "refunded"}
    refunded = (await http.get("/v1/customers/refunded")).json()
    assert (refunded["lifecycle"], refunded["scores"]) == ("prospect", None)
