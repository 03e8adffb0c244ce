"""The Python client's typed reads of scoring and reporting, on the services' real apps and
a real PostgreSQL: the unified customer view as typed members, leads and campaign lists
followed by cursor, and reporting's crisis alerts paged by cursor (issue 17 item 7).

Expectations are written out by hand from the events stored here: the MAN table, the
survey counts of the answers sent, and the alerts in the order the API promises (newest
detected first, then by id), computed from the list of alerts posted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jsonschema_rs
import pytest
from crm_client import CrmClient, ProblemError
from crm_client.operations import Service
from fastapi import FastAPI

from services.reporting.main import app as reporting_app
from services.reporting.projection import ReportingProjection
from services.reporting.settings import ReportingSettings
from services.scoring import rescore
from services.scoring.main import app as scoring_app
from services.scoring.projection import ScoringProjection
from services.scoring.settings import ScoringSettings
from shared import db
from shared.events import RECORDED, validate_event
from shared.http import encode_cursor
from shared.settings import CommonSettings
from tests.helpers import AUTH, TEST_TOKEN, event, purchase, wait_until
from tests.integration.test_scoring_view import LEADS, MAN_ACTIONS, history

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def closed(schema: Any) -> Any:
    """The schema with every object closed to members it does not declare."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    found = {k: closed(v) for k, v in schema.items()}
    if "properties" in found and "additionalProperties" not in found:
        found["additionalProperties"] = False
    return found


@dataclass
class Api:
    """A service's app through the client, and raw, with its OpenAPI document."""

    crm: CrmClient
    raw: httpx.AsyncClient
    document: dict[str, Any]

    async def conforming(self, path: str, **params: Any) -> Any:
        """GET `path`: the body, checked against the documented 200 answer of the route
        `path` matches, with every object closed (a member sent must be declared, typed)."""
        answer = await self.raw.get(path, params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        route = next(
            r
            for r in self.document["paths"]
            if len(r.split("/")) == len(path.split("/"))
            and all(
                a == b or a.startswith("{")
                for a, b in zip(r.split("/"), path.split("/"), strict=True)
            )
        )
        schema = self.document["paths"][route]["get"]["responses"]["200"]["content"]
        root = closed(
            schema["application/json"]["schema"] | {"components": self.document["components"]}
        )
        errors = [
            f"{e.instance_path}: {e.message}"
            for e in jsonschema_rs.validator_for(root).iter_errors(body)
        ]
        assert not errors, "\n".join(errors)
        return body


async def api(app: FastAPI, service: Service) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=app)
    base = f"http://{service}"
    async with (
        CrmClient(TEST_TOKEN, urls={service: base}, transport=transport) as crm,
        httpx.AsyncClient(transport=transport, base_url=base, headers=AUTH) as raw,
    ):
        yield Api(crm, raw, app.openapi())


@pytest.fixture
async def scoring(settings: CommonSettings) -> AsyncIterator[Api]:
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
        async for found in api(app, "scoring"):
            yield found


async def test_the_customer_view_reads_as_typed_members(scoring: Api) -> None:
    view = await scoring.crm.get_customer("buyer")
    assert view.counts.purchases == 3
    assert view.counts.surveys == 3
    assert view.scores is not None
    assert view.scores.net_spent == Decimal("120")  # 30 + 40 + 50
    assert view.scores.lifetime_values.historical.amount == 120.0
    assert view.scores.lifetime_values.predictive.discounted is True
    assert view.scores.lifetime_values.simple.discounted is False
    # NPS 9 then 3 (the latest: a detractor); one CSAT of 4 (satisfied).
    assert view.surveys.nps is not None
    assert view.surveys.csat is not None
    assert (view.surveys.nps.responses, view.surveys.nps.promoters) == (2, 1)
    assert (view.surveys.nps.latest_score, view.surveys.nps.latest_category) == (3, "detractor")
    assert view.surveys.csat.satisfied == 1
    assert [p.amount for p in view.latest_purchases] == [Decimal(50), Decimal(40), Decimal(30)]
    assert view.lead is not None
    assert view.lead.man_class == "M+A+N"
    assert view.lead.action == MAN_ACTIONS["M+A+N"]
    assert view.explanations["tier"].code == view.scores.tier
    assert view.explanations["man"].numbers == {"money": True, "authority": True, "need": True}

    prospect = await scoring.crm.get_customer("prospect")
    assert prospect.scores is None
    assert prospect.surveys.nps is None
    assert prospect.profile.name == "P"
    assert prospect.profile.email is None
    assert prospect.lifecycle == "prospect"


async def test_leads_and_prospects_follow_their_cursors(scoring: Api) -> None:
    # The latest assessment of each lead counts; "prospect" was assessed M+a+N.
    latest = {customer: codes[-1] for customer, codes in LEADS.items()} | {"prospect": "M+a+N"}
    leads = [lead async for lead in scoring.crm.list_leads(page_size=2)]
    assert [lead.customer_id for lead in leads] == sorted(latest)
    for lead in leads:
        assert lead.man_class == latest[lead.customer_id], lead.customer_id
        assert lead.action == MAN_ACTIONS[lead.man_class], lead.customer_id
        assert lead.has_bought == (lead.customer_id == "buyer")
    nurture = [lead.customer_id async for lead in scoring.crm.list_leads(action="nurture")]
    assert nurture == sorted(c for c, code in latest.items() if MAN_ACTIONS[code] == "nurture")

    # Known to the customer events, no purchase that counts ("refunded" was refunded in full).
    expected = sorted({*LEADS, "prospect", "refunded"} - {"buyer"})
    prospects = [c async for c in scoring.crm.list_customers(lifecycle="prospect", page_size=3)]
    assert [p.customer_id for p in prospects] == expected
    assert all(p.lifecycle == "prospect" and p.tier is None for p in prospects)
    buyers = [c async for c in scoring.crm.list_customers(page_size=1)]
    assert [(b.customer_id, b.orders) for b in buyers] == [("buyer", 3)]


async def test_no_clv_model_is_a_problem_not_an_empty_answer(scoring: Api) -> None:
    with pytest.raises(ProblemError) as refused:
        await scoring.crm.get_clv_model()  # four customers: too few for the app to fit one
    assert refused.value.status == 404


async def test_every_scoring_read_declares_every_member_it_sends(scoring: Api) -> None:
    yesterday = (NOW - timedelta(days=1)).date().isoformat()
    for customer in ("buyer", "prospect", "refunded", "lead-2"):
        await scoring.conforming(f"/v1/customers/{customer}")
    await scoring.conforming("/v1/customers/buyer/score")
    await scoring.conforming("/v1/customers/buyer/score", as_of=yesterday)
    await scoring.conforming("/v1/customers/buyer/score", horizon_weeks=10)
    await scoring.conforming("/v1/customers", limit=1)
    await scoring.conforming("/v1/customers", lifecycle="prospect")
    await scoring.conforming("/v1/leads", limit=3)
    await scoring.conforming("/v1/segments")


def crisis(series: tuple[str, str], detected: datetime, event_id: str) -> dict[str, Any]:
    dimension, value = series
    data = {
        "dimension": dimension,
        "value": value,
        "window_start": (detected - timedelta(hours=6)).isoformat(),
        "window_end": detected.isoformat(),
        "count": 10,
        "baseline": 2.0,
        "score": 12.5,
        "decision_interval": 12,
    }
    return event(
        "crm.crisis.detected", f"crisis:{dimension}:{value}", data, time=detected, event_id=event_id
    )


# (series, hours ago, id): two alerts detected at the same instant (ordered by id), a
# series alerted twice while open, and alerts closed long ago (REPORTING_CRISIS_OPEN_HOURS 24).
ALERTS = [
    (("category", "delivery"), 1, "a-07"),
    (("category", "delivery"), 3, "a-03"),
    (("channel", "hotline"), 3, "a-09"),
    (("channel", "hotline"), 3, "a-05"),
    (("category", "billing"), 10, "a-01"),
    (("category", "delivery"), 50, "a-02"),
    (("channel", "email"), 72, "a-04"),
]


@pytest.fixture
async def reporting(settings: CommonSettings) -> AsyncIterator[Api]:
    app = reporting_app(ReportingSettings(**settings.model_dump()))
    async with app.router.lifespan_context(app):
        pool = await db.create_pool(settings.database_url, "reporting")
        raw = [crisis(series, NOW - timedelta(hours=hours), eid) for series, hours, eid in ALERTS]
        raw += [purchase("c-1", "12.50", time=NOW - timedelta(days=2)), purchase("c-2", "7")]
        events = [validate_event(r, RECORDED) for r in raw]
        async with pool.acquire() as conn, conn.transaction():
            await ReportingProjection(ZoneInfo("UTC")).store(conn, events)
        await pool.close()
        async for found in api(app, "reporting"):
            yield found


@pytest.mark.parametrize("page_size", [1, 2, 3, 100])
async def test_crisis_alerts_page_by_cursor_newest_first(reporting: Api, page_size: int) -> None:
    newest_first = sorted(ALERTS, key=lambda a: (-a[1], a[2]), reverse=True)
    every = [a async for a in reporting.crm.list_crisis_alerts(status="all", page_size=page_size)]
    assert [a.id for a in every] == [eid for _, _, eid in newest_first]
    assert [a.open for a in every] == [hours <= 24 for _, hours, _ in newest_first]
    # Open: the latest alert of each series whose window ended within 24 hours.
    open_ids = [a.id async for a in reporting.crm.list_crisis_alerts(page_size=page_size)]
    assert open_ids == ["a-07", "a-09", "a-01"]


async def test_a_cursor_from_elsewhere_is_refused(reporting: Api) -> None:
    with pytest.raises(ProblemError) as refused:
        await reporting.crm.list_crisis_alerts_page(cursor="not-a-cursor")
    assert refused.value.status == 422
    assert [e.field for e in refused.value.errors] == ["query.cursor"]
    # A cursor of this API's shape whose time no alert can have (out of a float's integers).
    with pytest.raises(ProblemError) as beyond:
        await reporting.crm.list_crisis_alerts_page(cursor=encode_cursor(float("inf"), "a-01"))
    assert beyond.value.status == 422


async def test_every_reporting_read_declares_every_member_it_sends(reporting: Api) -> None:
    """KPI rows too, which the service writes itself (not through its response model)."""
    await reporting.conforming("/v1/alerts", status="all", limit=2)
    table = await reporting.conforming("/v1/kpis")
    assert sum(row["orders"] for row in table["rows"]) == 2
    assert {row["revenue"] for row in table["rows"]} >= {"12.50", "7.00"}
    for by in ("tier", "segment", "channel", "category"):
        await reporting.conforming("/v1/kpis", by=by, granularity="week")
    await reporting.conforming("/v1/kpis/summary")
    await reporting.conforming("/v1/kpis/metrics")
