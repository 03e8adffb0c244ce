"""A purchase history posted through ingest comes back as the expected scores."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from services.scoring.clv import BgNbdParams, GammaGammaParams
from services.scoring.population import Models, Population, Reference, ScoringConfig, score
from services.scoring.store import POPULATION_FIELDS
from shared.events import Topic
from tests.e2e.conftest import Stack
from tests.helpers import api_client, event, purchase, read_topic, wait_until

pytestmark = pytest.mark.e2e

TODAY = datetime.now(UTC).date()
AS_OF_DAY = TODAY - timedelta(days=1)
AS_OF = datetime.combine(AS_OF_DAY + timedelta(days=1), time(), UTC) - timedelta(microseconds=1)
WINDOW = 90


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {"SCORING_RESCORE_SECONDS": "1", "TIMEZONE": "UTC"}


def history(customers: int, seed: int) -> list[dict[str, Any]]:
    """Purchases over the last year, each customer with their own rate and basket."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=365)
    events = []
    for c in range(customers):
        rate = rng.choice([0.005, 0.02, 0.05, 0.1])
        basket = rng.uniform(10, 300)
        first = rng.randrange(0, 300)
        for day in range(first, 365):
            if day == first or rng.random() < rate:
                when = start + timedelta(days=day, minutes=rng.randrange(600))
                events.append(
                    purchase(f"s-{c}", f"{basket * rng.uniform(0.5, 1.5):.2f}", time=when)
                )
    return events


def offline_population(events: list[dict[str, Any]], as_of: datetime) -> Population:
    """The statistics the service computes in SQL, computed here by hand from the events."""
    by_customer: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for raw in events:
        when = datetime.fromisoformat(raw["time"])
        if when <= as_of:
            by_customer[raw["subject"]].append((when, float(raw["data"]["amount"])))
    ids = sorted(by_customer)
    rows = []
    as_of_day = as_of.date()
    for cid in ids:
        purchases = by_customer[cid]
        daily: dict[Any, float] = defaultdict(float)
        for when, amount in purchases:
            daily[when.date()] += amount
        days = sorted(daily)
        recent = [d for d in days if (as_of_day - d).days < WINDOW]
        previous = [d for d in days if WINDOW <= (as_of_day - d).days < 2 * WINDOW]
        repeat = (sum(daily.values()) - daily[days[0]]) / (len(days) - 1) if len(days) > 1 else 0
        rows.append(
            [
                (as_of - max(w for w, _ in purchases)).total_seconds() / 86400,
                (as_of_day - days[0]).days,
                len(purchases),
                sum(a for _, a in purchases),
                len(days),
                (days[-1] - days[0]).days,
                repeat,
                len(recent),
                len(previous),
                sum(daily[d] for d in recent),
                sum(daily[d] for d in previous),
                0,
                0,
                0,
                0,
                0,  # strategic value: no customer event sets one
            ]
        )
    values = np.array(rows, dtype=np.float64)
    return Population(
        as_of=as_of,
        customer_id=np.array(ids, dtype=object),
        **{n: values[:, i].copy() for i, n in enumerate(POPULATION_FIELDS)},
    )


async def post_all(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 500):
        response = await client.post("/v1/events", json=events[start : start + 500])
        assert response.status_code == 202, response.text


async def test_scores_of_a_posted_history(stack: Stack) -> None:
    events = history(customers=80, seed=5)
    profile = event(
        "crm.customer.registered",
        "s-1",
        {"name": "Li Wei", "kind": "individual", "preferred_contact": "email"},
    )
    lead = event("crm.lead.assessed", "s-1", {"money": True, "authority": False, "need": True})
    talk = event("crm.interaction.logged", "s-1", {"channel": "chat", "direction": "inbound"})
    async with api_client(base_url=stack.url("ingest"), timeout=30) as ingest:
        await post_all(ingest, [*events, profile, lead, talk])
    customers = {e["subject"] for e in events}

    async with api_client(base_url=stack.url("scoring"), timeout=30) as scoring:

        async def scored_everyone() -> Any:
            page = (await scoring.get("/v1/customers", params={"limit": 1000})).json()
            model = await scoring.get("/v1/models/clv")
            done = {i["customer_id"] for i in page["items"]} == customers
            return model.json() if done and model.status_code == 200 else None

        model = await wait_until(scored_everyone, timeout=90, what="a re-score of everyone")
        models = Models(
            model["version"],
            model["time_unit"],
            BgNbdParams(**{k: model["bgnbd"][k] for k in ("r", "alpha", "a", "b")}),
            GammaGammaParams(**{k: model["gamma_gamma"][k] for k in ("p", "q", "gamma")}),
        )
        population = offline_population(events, AS_OF)
        config = ScoringConfig()
        expected = score(population, Reference.of(population, config), models, config)

        for i in (0, 7, 33, 61):
            cid = str(population.customer_id[i])
            got = (
                await scoring.get(
                    f"/v1/customers/{cid}/score", params={"as_of": AS_OF_DAY.isoformat()}
                )
            ).json()
            want = expected.row(i)
            assert (got["rfm"]["recency"], got["rfm"]["frequency"], got["rfm"]["monetary"]) == (
                want["recency_score"],
                want["frequency_score"],
                want["monetary_score"],
            )
            assert got["rfm"]["segment"] == want["segment"]
            assert got["tier"] == want["tier"]
            assert got["lifecycle"] == want["lifecycle"]
            assert got["lifetime"]["p_alive"] == pytest.approx(want["p_alive"], rel=1e-9)
            assert got["lifetime"]["predicted_clv"] == pytest.approx(
                want["predicted_clv"], rel=1e-9
            )
            assert got["lifetime"]["simple_clv"] == pytest.approx(want["simple_clv"], rel=1e-9)
            assert got["horizon_weeks"] == config.horizon_weeks

        # A horizon asked for is in weeks, and said so in the answer.
        cid = str(population.customer_id[7])
        half_year = score(
            population, Reference.of(population, config), models, config, horizon_weeks=26
        ).row(7)
        got = (
            await scoring.get(
                f"/v1/customers/{cid}/score",
                params={"as_of": AS_OF_DAY.isoformat(), "horizon_weeks": 26},
            )
        ).json()
        assert got["horizon_weeks"] == 26
        assert got["lifetime"]["expected_purchases"] == pytest.approx(
            half_year["expected_purchases"], rel=1e-9
        )

        view = (await scoring.get("/v1/customers/s-1")).json()
        assert view["profile"]["name"] == "Li Wei"
        assert view["lead"]["class"] == "M+a+N"
        assert view["counts"]["interactions"] == 1
        assert view["counts"]["purchases"] == sum(e["subject"] == "s-1" for e in events)
        assert view["scores"]["tier"] in {"gold", "developing", "potential", "forgotten"}

        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 7, "sort": "churn_risk"}
            if cursor:
                params["cursor"] = cursor
            page = (await scoring.get("/v1/customers", params=params)).json()
            seen += [i["customer_id"] for i in page["items"]]
            risks = [i["churn_risk"] for i in page["items"]]
            assert risks == sorted(risks, reverse=True)
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(customers)

        segments = (await scoring.get("/v1/segments")).json()
        assert sum(s["customers"] for s in segments["tiers"].values()) == len(customers)
        future = (TODAY + timedelta(days=3)).isoformat()
        refused = await scoring.get("/v1/customers/s-1/score", params={"as_of": future})
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "query.as_of"

    derived = await read_topic(stack.broker.bootstrap, Topic.DERIVED)
    tier_events = [orjson.loads(r.value) for r in derived]
    first_tiers = {e["subject"] for e in tier_events if e["type"] == "crm.customer.tier_changed"}
    assert first_tiers == customers
