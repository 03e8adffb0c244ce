"""Scores appear when the events do (issue 16, item 5): a customer's RFM scores and their
customer view are current as soon as their purchase is applied, ranked against the last
re-score's population, with no wait for the next re-score.

The re-score runs at start-up only (SCORING_RESCORE_SECONDS is an hour): every score read
after it that reflects a later purchase is the read's own. Expected scores are counted by
hand from the populations below with the mid-rank quintile rule,
score = 1 + floor(5 (worse + at_or_worse) / 2n), and the segment grid (R row, FM column,
FM = (F + M + 1) // 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.helpers import api_client, event, purchase, wait_until

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC)


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {"SCORING_RESCORE_SECONDS": "3600", "TIMEZONE": "UTC"}


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def readme_purchase() -> dict[str, Any]:
    """The README's first example (dated yesterday, so it is never in the future)."""
    data = {"order_id": "1001", "amount": "59.90", "currency": "USD"}
    return event(
        "crm.purchase.completed", "customer-42", data, time=days_ago(1), event_id="order-1001"
    ) | {"source": "shop/web"}


def population() -> list[dict[str, Any]]:
    """p-k (k = 1..5): k orders of 100 each, the last one (60 - 10k) days ago, so that
    recency, frequency and spend all rank p-1 < ... < p-5."""
    return [
        purchase(f"p-{k}", "100.00", order=f"p-{k}-{n}", time=days_ago(60 - 10 * k + n))
        for k in range(1, 6)
        for n in range(k)
    ]


async def post(ingest: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await ingest.post("/v1/events", json=events)
    assert response.status_code == 202, response.text


async def found(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    return response.json() if response.status_code == 200 else None


def rfm_of(scores: dict[str, Any]) -> dict[str, Any]:
    keys = ("recency", "frequency", "monetary", "code", "segment")
    return {k: scores[k] for k in keys}


def view_rfm_of(scores: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("recency_score", "frequency_score", "monetary_score", "rfm_code", "segment")
    return tuple(scores[k] for k in keys)


async def test_scores_appear_with_the_first_purchase(stack: Stack) -> None:
    async with (
        api_client(base_url=stack.url("ingest"), timeout=30) as ingest,
        api_client(base_url=stack.url("scoring"), timeout=30) as scoring,
    ):
        # The README's flow on a fresh deployment: the start-up re-score saw no buyer, so the
        # customer is ranked against themselves alone: worse 0, at or worse 1, n 1 -> 3 each;
        # R3 FM3 is need_attention.
        await post(ingest, [readme_purchase()])
        rfm = await wait_until(
            lambda: found(scoring, "/v1/customers/customer-42/rfm"), what="customer-42's RFM"
        )
        assert (rfm["frequency"], rfm["monetary"]) == (1, "59.90")
        assert rfm_of(rfm["scores"]) == {
            "recency": 3,
            "frequency": 3,
            "monetary": 3,
            "code": "333",
            "segment": "need_attention",
        }
        assert rfm["reference"] == {"run_id": None, "as_of": None, "customers": 0}
        view = (await scoring.get("/v1/customers/customer-42")).json()
        assert view["scores"] is not None
        assert view_rfm_of(view["scores"]) == (3, 3, 3, "333", "need_attention")
        assert (view["scores"]["source"], view["scores"]["reference_customers"]) == ("live", 0)

        # A population of six (customer-42 and p-1..p-5), re-scored at start-up.
        await post(ingest, population())
        for k in range(1, 6):

            async def applied(k: int = k) -> bool:
                rfm = await found(scoring, f"/v1/customers/p-{k}/rfm")
                return rfm is not None and rfm["frequency"] == k

            await wait_until(applied, what=f"p-{k}'s purchases applied")
        stack.services["scoring"].stop()
        await stack.restart("scoring")

        async def rescored() -> Any:
            page = await found(scoring, "/v1/customers?limit=10")
            return page if page and len(page["items"]) == 6 else None

        await wait_until(rescored, what="the start-up re-score of six buyers")
        # Reference: recency -days [-50 -40 -30 -20 -10 -1], orders [1 1 2 3 4 5],
        # spend [59.9 100 200 300 400 500]. p-1 (50 days, 1 order, 100): R worse 0, at or
        # worse 1 -> 1 + 5*1//12 = 1; F 0, 2 -> 1; M 1, 2 -> 1 + 15//12 = 2; R1 FM2 hibernating.
        p1 = (await scoring.get("/v1/customers/p-1")).json()["scores"]
        # (Applied seconds before the re-score loaded them, p-1's facts may be scored live:
        # the same scores.)
        assert view_rfm_of(p1) == (1, 1, 2, "112", "hibernating")
        run_id = p1["run_id"]

        # A new customer's first purchase: 250 five days ago. R: worse 5, at or worse 5 ->
        # 1 + 50//12 = 5; F (1 order): 0, 2 -> 1; M: 3, 3 -> 1 + 30//12 = 3; R5 FM2
        # potential_loyalist.
        await post(ingest, [purchase("fresh-1", "250.00", time=days_ago(5))])
        rfm = await wait_until(
            lambda: found(scoring, "/v1/customers/fresh-1/rfm"), what="fresh-1's RFM"
        )
        expected = {
            "recency": 5,
            "frequency": 1,
            "monetary": 3,
            "code": "513",
            "segment": "potential_loyalist",
        }
        assert rfm_of(rfm["scores"]) == expected
        assert (rfm["reference"]["run_id"], rfm["reference"]["customers"]) == (run_id, 6)
        view = (await scoring.get("/v1/customers/fresh-1")).json()
        assert view["scores"] is not None, view
        assert view_rfm_of(view["scores"]) == (5, 1, 3, "513", "potential_loyalist")
        assert (view["scores"]["source"], view["scores"]["run_id"]) == ("live", run_id)

        # A changed customer: p-1 buys 10 two days ago (now 2 orders, 110). R: -2 -> worse 5,
        # at or worse 5 -> 5; F: 2 in [1 1 2 3 4 5] -> 2, 3 -> 1 + 25//12 = 3; M: 110 -> 2, 2
        # -> 1 + 20//12 = 2; R5 FM3 loyal.
        await post(ingest, [purchase("p-1", "10.00", time=days_ago(2))])

        async def rescored_live() -> Any:
            scores = (await scoring.get("/v1/customers/p-1")).json()["scores"]
            return scores if scores["orders"] == 2 else None

        p1 = await wait_until(rescored_live, what="p-1's second purchase in their view")
        assert view_rfm_of(p1) == (5, 3, 2, "532", "loyal")
        assert (p1["source"], p1["run_id"]) == ("live", run_id)
        assert (await found(scoring, "/v1/customers?limit=10"))["items"][0]["run_id"] == run_id
