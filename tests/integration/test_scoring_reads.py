"""Scoring's reads are lookups of stored rows, and each answer equals the one computed from
the event history (issue 16, items 1-2), on a real broker and PostgreSQL: the events go
through the topics to the service's own consumer, which folds (and scores) them.

The oracle: the statistics of every customer computed here from the events the test sent
(`offline_population`, plain Python), scored with the pure domain function `score` against
`Reference.of` the offline population of the re-score's instant, with the model parameters
the re-score fitted (read from its row, an input like the settings). Nothing of the store
computes an expectation.

Story (now = N): history up to N-5d; run 1 as of N-4d; more purchases (one customer new,
one refunded in full) folded and scored then; run 2 as of N-2d; run 3 one second later
(nothing changed: few rows written); then reads live, as of each snapshot, between
snapshots, and before the first run (recomputed, with a note).
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from services.scoring import rescore, stored
from services.scoring.clv import BgNbdParams, GammaGammaParams
from services.scoring.main import app as scoring_app
from services.scoring.population import Models, Population, Reference, score
from services.scoring.settings import ScoringSettings
from services.scoring.store import POPULATION_FIELDS
from shared import db, kafka
from shared.events import Topic
from shared.outbox import relay_headers
from shared.settings import CommonSettings
from tests.helpers import api_client, event, purchase, wait_until

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
RUN_1, RUN_2 = NOW - timedelta(days=4), NOW - timedelta(days=2)
RUN_3 = RUN_2 + timedelta(seconds=1)
WINDOW = 90  # SCORING_TREND_WINDOW_DAYS' default
Scoring = tuple[httpx.AsyncClient, db.Pool, ScoringSettings, CommonSettings]


def first_history(customers: int = 30, seed: int = 16) -> list[dict[str, Any]]:
    """Purchases over the year before N-5d, each customer with their own rate and basket,
    and `gone`'s one order (refunded in full later)."""
    rng = random.Random(seed)
    start = RUN_1 - timedelta(days=366)
    events = []
    for c in range(customers):
        rate, basket = rng.choice([0.01, 0.03, 0.08]), rng.uniform(10, 300)
        first = rng.randrange(0, 340)
        for day in range(first, 365):
            if day == first or rng.random() < rate:
                minutes, micros = rng.randrange(600), rng.randrange(10**6)
                when = start + timedelta(days=day, minutes=minutes, microseconds=micros)
                amount = f"{basket * rng.uniform(0.5, 1.5):.2f}"
                events.append(purchase(f"r-{c}", amount, time=when))
    events.append(purchase("gone", "50.00", order="gone-1", time=RUN_1 - timedelta(days=20)))
    return events


def second_history() -> list[dict[str, Any]]:
    """Between run 1 and run 2: two customers buy again, one buys for the first time, and
    `gone`'s order is refunded in full."""
    after = RUN_1 + timedelta(hours=6)
    refund = {"order_id": "gone-1", "amount": "50.00", "currency": "USD"}
    return [
        purchase("r-1", "80.00", time=after),
        purchase("r-2", "15.50", time=after + timedelta(hours=1)),
        purchase("new", "120.00", time=after + timedelta(hours=2)),
        event("crm.purchase.refunded", "gone", refund, time=after + timedelta(hours=3)),
    ]


def offline_population(events: list[dict[str, Any]], as_of: datetime) -> Population:
    """Each buyer's statistics as of `as_of` by hand (UTC days, no interactions): an order
    refunded in full up to `as_of` is no purchase and nets to zero."""
    refunded = {
        e["data"]["order_id"]
        for e in events
        if e["type"] == "crm.purchase.refunded" and datetime.fromisoformat(e["time"]) <= as_of
    }
    by_customer: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for raw in events:
        when = datetime.fromisoformat(raw["time"])
        counts = raw["type"] == "crm.purchase.completed" and raw["data"]["order_id"] not in refunded
        if counts and when <= as_of:
            by_customer[raw["subject"]].append((when, float(raw["data"]["amount"])))
    ids = sorted(by_customer)
    rows, firsts = [], []
    for cid in ids:
        purchases = by_customer[cid]
        daily: dict[date, float] = defaultdict(float)
        for when, amount in purchases:
            daily[when.date()] += amount
        days = sorted(daily)
        recent = [d for d in days if (as_of.date() - d).days < WINDOW]
        previous = [d for d in days if WINDOW <= (as_of.date() - d).days < 2 * WINDOW]
        repeat = (sum(daily.values()) - daily[days[0]]) / (len(days) - 1) if len(days) > 1 else 0
        rows.append(
            [
                (as_of - max(w for w, _ in purchases)).total_seconds() / 86400,
                (as_of.date() - days[0]).days,
                len(purchases),
                sum(a for _, a in purchases),
                len(days),
                (days[-1] - days[0]).days,
                repeat,
                len(recent),
                len(previous),
                sum(daily[d] for d in recent),
                sum(daily[d] for d in previous),
                *[0] * 5,  # interactions (recent, previous, all), complaints, strategic value
            ]
        )
        firsts.append(min(w for w, _ in purchases).timestamp())
    values = np.array(rows, dtype=np.float64).reshape(len(ids), len(POPULATION_FIELDS))
    columns: dict[str, Any] = {n: values[:, i].copy() for i, n in enumerate(POPULATION_FIELDS)}
    return Population(
        as_of=as_of,
        customer_id=np.array(ids, dtype=object),
        first_purchase_epoch=np.array(firsts, dtype=np.float64),
        **columns,
    )


def expected(
    events: list[dict[str, Any]],
    customer: str,
    at: datetime,
    reference_at: datetime,
    models: Models | None,
    settings: ScoringSettings,
) -> dict[str, Any] | None:
    """The customer's row as of `at`, ranked against the population as of `reference_at`
    (None: no purchase counts)."""
    config = settings.scoring_config()
    reference = Reference.of(offline_population(events, reference_at), config)
    everyone = offline_population(events, at)
    ids = everyone.customer_id.tolist()
    if customer not in ids:
        return None
    scores = score(everyone, reference, models, config)
    return stored.one_row(scores, everyone, ids.index(customer))


def assert_answer(answer: dict[str, Any], row: dict[str, Any] | None, at: datetime) -> None:
    """A GET /score answer equals the offline row: classes exactly, the model's figures to
    what the run history keeps (4 significant digits, probabilities 4 decimals)."""
    assert row is not None
    assert datetime.fromisoformat(answer["as_of"]) == at
    rfm = answer["rfm"]
    assert (rfm["recency"], rfm["frequency"], rfm["monetary"], rfm["segment"]) == (
        row["recency_score"],
        row["frequency_score"],
        row["monetary_score"],
        row["segment"],
    )
    for name in ("tier", "value_class", "lifecycle", "churn_level"):
        assert answer[name] == row[name], name
    assert (answer["orders"], answer["net_spent"]) == (
        row["orders"],
        pytest.approx(row["net_spent"]),
    )
    since_last = (at - row["last_purchase_at"]).total_seconds() / 86_400
    assert answer["recency_days"] == pytest.approx(since_last, abs=1e-6)
    lifetime = answer["lifetime"]
    figures = {**lifetime, "churn_risk": answer["churn_risk"]}
    for name in stored.MODEL_FIGURES:
        assert figures[name] == pytest.approx(row[name], rel=1e-3, abs=1e-4, nan_ok=True), name


async def models_of(pool: db.Pool, version: int | None) -> Models | None:
    """The parameters the re-score fitted (an input of the oracle, like the settings)."""
    if version is None:
        return None
    row = await pool.fetchrow("SELECT * FROM clv_models WHERE version = $1", version)
    assert row is not None
    gamma = GammaGammaParams(row["p"], row["q"], row["gamma"]) if row["p"] else None
    return Models(
        version, row["time_unit"], BgNbdParams(row["r"], row["alpha"], row["a"], row["b"]), gamma
    )


async def run_model(pool: db.Pool, run_id: int | None) -> int | None:
    version: int | None = await pool.fetchval(
        "SELECT model_version FROM score_runs WHERE run_id = $1", run_id
    )
    return version


@pytest.fixture
async def scoring(settings: CommonSettings) -> AsyncIterator[Scoring]:
    """The service with its consumer on the broker; its own re-score (at start-up) finds
    nothing, the test re-scores as of the instants of its story."""
    fields = settings.model_dump() | {"timezone": "UTC", "scoring_rescore_seconds": 86400}
    scoring_settings = ScoringSettings(**fields)
    app = scoring_app(scoring_settings)
    async with app.router.lifespan_context(app):
        pool = await db.create_pool(settings.database_url, "scoring")
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://scoring") as http:
            yield http, pool, scoring_settings, settings
        await pool.close()


_SEQ = itertools.count(1)


async def send(settings: CommonSettings, pool: db.Pool, events: list[dict[str, Any]]) -> None:
    """Through the topic, keyed by customer, as a relay publishes (its headers number the
    records of its log); back once the service has folded them all."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(
                Topic.PURCHASES,
                value=orjson.dumps(e),
                key=e["subject"].encode(),
                headers=relay_headers("test-reads", next(_SEQ), 1),
            )
    finally:
        await producer.stop()
    ids = [e["id"] for e in events]

    async def folded() -> bool:
        found = await pool.fetchval("SELECT count(*) FROM purchases WHERE event_id = ANY($1)", ids)
        return bool(found == len(ids))

    await wait_until(folded, timeout=60, what="the fold of the events sent")


async def test_every_read_equals_the_history_live_and_as_of(scoring: Scoring) -> None:
    http, pool, settings, common = scoring
    await wait_until(lambda: pool.fetchval("SELECT count(*) FROM score_runs"), what="start-up")
    events = first_history()
    await send(common, pool, events)
    run_1 = await rescore.rescore(settings, RUN_1)
    later = second_history()
    events += later
    await send(common, pool, later)
    customers = sorted({e["subject"] for e in events})

    # Live, after the fold, before run 2: r-1, r-2 and new scored by the fold (now), against
    # run 1's population; gone has no purchase that counts any more; the rest are run 1's.
    model_1 = await models_of(pool, await run_model(pool, run_1))
    for customer in customers:
        answer = await http.get(f"/v1/customers/{customer}/score")
        if customer == "gone":
            assert answer.status_code == 404
            assert (await http.get("/v1/customers/gone/rfm")).status_code == 404
            assert (await http.get("/v1/customers/gone")).json()["scores"] is None
            continue
        body = answer.json()
        at = datetime.fromisoformat(body["as_of"])
        fresh = customer in ("r-1", "r-2", "new")
        assert (body["source"], body["run_id"]) == ("live" if fresh else "re-score", run_1)
        assert (at > RUN_2) if fresh else (at == RUN_1)
        assert_answer(body, expected(events, customer, at, RUN_1, model_1, settings), at)
        rfm = (await http.get(f"/v1/customers/{customer}/rfm")).json()
        assert rfm["scores"]["code"] == body["rfm"]["code"]
        assert (rfm["frequency"], rfm["reference"]["run_id"]) == (body["orders"], run_1)
        view = (await http.get(f"/v1/customers/{customer}")).json()["scores"]
        assert (view["rfm_code"], view["tier"], view["source"]) == (
            body["rfm"]["code"],
            body["tier"],
            body["source"],
        )

    run_2 = await rescore.rescore(settings, RUN_2)
    run_3 = await rescore.rescore(settings, RUN_3)
    assert run_2 is not None
    assert run_3 is not None
    written = await pool.fetchval("SELECT count(*) FROM score_history WHERE run_id = $1", run_3)
    assert written < len(customers) // 2  # a second on: the rows stay as run 2 wrote them
    assert await pool.fetchval(
        "SELECT NOT present FROM score_history WHERE customer_id = 'gone' AND run_id = $1", run_2
    )

    # As of: on run 1's instant and between runs 1 and 2 -> run 1; after run 3 -> run 3.
    cases = [
        (RUN_1, run_1, RUN_1),
        (RUN_1 + timedelta(days=1), run_1, RUN_1),
        (RUN_3 + timedelta(hours=1), run_3, RUN_3),
    ]
    for asked, run, run_as_of in cases:
        models = await models_of(pool, await run_model(pool, run))
        for customer in customers:
            answer = await http.get(
                f"/v1/customers/{customer}/score", params={"as_of": asked.isoformat()}
            )
            row = expected(events, customer, run_as_of, run_as_of, models, settings)
            if row is None:
                assert answer.status_code == 404, customer
                continue
            body = answer.json()
            assert (body["source"], body["run_id"]) == ("snapshot", run), customer
            assert datetime.fromisoformat(body["run_as_of"]) == run_as_of
            assert_answer(body, row, run_as_of)

    # Before the first run: recomputed from the history as of then, and said so.
    before = RUN_1 - timedelta(days=2)
    for customer in ("r-0", "r-1", "gone"):
        body = (
            await http.get(f"/v1/customers/{customer}/score", params={"as_of": before.isoformat()})
        ).json()
        assert (body["source"], body["run_id"]) == ("recomputed", None)
        assert "before the first re-score" in body["note"]
        models = await models_of(pool, body["model_version"])
        assert_answer(body, expected(events, customer, before, before, models, settings), before)
