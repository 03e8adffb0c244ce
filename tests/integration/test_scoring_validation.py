"""GET /v1/models/clv/validation on the CDNOW sample (issue 14, item 12), through the HTTP API
on a real PostgreSQL: the published calibration/holdout split of Fader, Hardie and Lee (2005),
39 weeks (1997-01-01 to 1997-09-30) and 39 weeks (1997-10-01 to 1998-06-30).

Oracles, none of them the code under test:
- the parameters fitted on the calibration period are the published ones (r = 0.243,
  alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4, [FHL05] section 4);
- each customer's calibration repeat purchases and holdout purchases are counted here from the
  raw file (distinct purchase days, the paper's convention);
- the predicted holdout purchases are recomputed here by quadrature, from the model's story
  rather than from eq. 10's hypergeometric closed form: given alive after x purchases in T
  weeks, lambda ~ Gamma(r + x, alpha + T) and p ~ Beta(a, b + x) independently, an alive
  customer makes (1 - e^(-lambda p t)) / p purchases in t weeks on average, so
  E[Y(t)] = P(alive) * integral_0^1 (1 - ((alpha + T) / (alpha + T + p t))^(r + x)) / p
  Beta(p; a, b + x) dp, with P(alive) of [FHL08].

CDNOW records eight $0.00 transactions as purchases, so zero-value orders count here
(SCORING_COUNT_ZERO_VALUE_ORDERS): the calibration summary then is the published one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from scipy import integrate, special

from services.scoring.main import app as scoring_app
from services.scoring.projection import ScoringProjection
from services.scoring.settings import ScoringSettings
from shared import db
from shared.events import RECORDED, Event, validate_event
from shared.settings import CommonSettings
from tests.helpers import api_client, event

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data" / "cdnow_sample_transactions.txt"
CALIBRATION_END = date(1997, 9, 30)
HOLDOUT_END = date(1998, 6, 30)
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def transactions() -> list[tuple[str, date, str]]:
    """(customer, day, dollars) per line of the raw file."""
    found = []
    for line in DATA.read_text().splitlines():
        _, sample_id, yyyymmdd, _, dollars = line.split()
        day = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
        found.append((f"cdnow-{sample_id}", day, dollars))
    return found


def purchase_events() -> list[Event]:
    found = []
    for number, (customer, day, dollars) in enumerate(transactions()):
        data = {"order_id": f"line-{number}", "amount": dollars, "currency": "USD"}
        when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        raw = event("crm.purchase.completed", customer, data, time=when, event_id=f"t{number}")
        found.append(validate_event(raw, RECORDED))
    return found


def purchase_days() -> dict[str, list[date]]:
    days: dict[str, set[date]] = defaultdict(set)
    for customer, day, _ in transactions():
        days[customer].add(day)
    return {customer: sorted(found) for customer, found in days.items()}


def expected_purchases(params: dict[str, float], t: float, x: int, t_x: float, age: float) -> float:
    """E[Y(t) | x, t_x, T] by quadrature (module docstring)."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    if x == 0:
        alive = 1.0
    else:
        alive = 1 / (1 + a / (b + x - 1) * ((alpha + age) / (alpha + t_x)) ** (r + x))

    def bought(p: float) -> float:
        if p == 0:
            return (r + x) * t / (alpha + age)  # the limit p -> 0
        return float((1 - ((alpha + age) / (alpha + age + p * t)) ** (r + x)) / p)

    # Weight p^(a-1) (1-p)^(b+x-1): the Beta density up to its normalising constant.
    integral, _ = integrate.quad(bought, 0, 1, weight="alg", wvar=(a - 1, b + x - 1))
    return float(alive * integral / math.exp(special.betaln(a, b + x)))


@pytest.fixture
async def http(settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    scoring_settings = ScoringSettings(
        **(settings.model_dump() | {"timezone": "UTC", "scoring_count_zero_value_orders": True})
    )
    app = scoring_app(scoring_settings)
    async with app.router.lifespan_context(app):
        pool = await db.create_pool(settings.database_url, "scoring")
        async with pool.acquire() as conn, conn.transaction():
            await ScoringProjection(ZoneInfo("UTC")).store(conn, purchase_events())
        await pool.close()
        transport = httpx.ASGITransport(app=app)
        async with api_client(transport=transport, base_url="http://scoring") as client:
            yield client


async def test_validation_reproduces_the_cdnow_calibration_and_predicts_the_holdout(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(
        "/v1/models/clv/validation",
        params={"calibration_end": CALIBRATION_END.isoformat(), "holdout_end": "1998-06-30"},
    )
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["model"] == "bgnbd"
    assert got["time_unit"] == "week"
    assert got["calibration"] == {
        "start": "1997-01-01",
        "end": "1997-09-30",
        "days": 273,
        "weeks": 39.0,
    }
    assert got["holdout"] == {
        "start": "1997-10-01",
        "end": "1998-06-30",
        "days": 273,
        "weeks": 39.0,
    }
    params = got["parameters"]
    for name, value in PUBLISHED.items():
        assert params[name] == pytest.approx(value, abs=5e-4), name
    assert params["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    assert got["customers"] == 2357
    assert got["customers_new_in_holdout"] == 0

    # Brute force: each customer's calibration statistics and holdout purchases, by hand.
    groups: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    absolute_errors = []
    for days in purchase_days().values():
        calibration = [d for d in days if d <= CALIBRATION_END]
        holdout = sum(1 for d in days if CALIBRATION_END < d <= HOLDOUT_END)
        x = len(calibration) - 1
        t_x = (calibration[-1] - calibration[0]).days / 7
        age = (CALIBRATION_END - calibration[0]).days / 7
        predicted = expected_purchases(params, 39.0, x, t_x, age)
        group = groups[min(x, 7)]
        group["customers"] += 1
        group["actual"] += holdout
        group["predicted"] += predicted
        absolute_errors.append(abs(predicted - holdout))

    assert [g["label"] for g in got["groups"]] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    for found in got["groups"]:
        expected = groups[found["repeat_purchases"]]
        assert found["customers"] == expected["customers"]
        assert found["actual_total"] == expected["actual"]
        assert found["actual_mean"] == pytest.approx(expected["actual"] / expected["customers"])
        assert found["predicted_total"] == pytest.approx(expected["predicted"], rel=1e-6)
    errors = got["errors"]
    actual_total = sum(g["actual"] for g in groups.values())
    predicted_total = sum(g["predicted"] for g in groups.values())
    assert errors["actual_total"] == actual_total
    assert errors["predicted_total"] == pytest.approx(predicted_total, rel=1e-6)
    assert errors["total_error"] == pytest.approx(
        (predicted_total - actual_total) / actual_total, rel=1e-5
    )
    assert errors["mean_absolute_error"] == pytest.approx(
        sum(absolute_errors) / len(absolute_errors), rel=1e-6
    )

    # By default the split is the middle day of the history: here the paper's 39 + 39 weeks.
    default = await http.get("/v1/models/clv/validation", params={"holdout_end": "1998-06-30"})
    assert default.status_code == 200, default.text
    assert default.json()["calibration"]["end"] == "1997-09-30"
    assert default.json()["groups"] == got["groups"]

    # Fewer groups: the last one, 3+, holds every customer with 3 or more repeat purchases.
    params = {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30", "top_group": 3}
    coarse = (await http.get("/v1/models/clv/validation", params=params)).json()["groups"]
    assert [g["label"] for g in coarse] == ["0", "1", "2", "3+"]
    assert coarse[3]["customers"] == sum(groups[k]["customers"] for k in range(3, 8))
    assert coarse[3]["actual_total"] == sum(groups[k]["actual"] for k in range(3, 8))


async def test_validation_refuses_a_split_outside_the_history(http: httpx.AsyncClient) -> None:
    for params in (
        {"calibration_end": "1998-07-01", "holdout_end": "1998-06-30"},
        {"calibration_end": "1996-12-31", "holdout_end": "1998-06-30"},
        {"holdout_end": "2999-01-01"},
    ):
        response = await http.get("/v1/models/clv/validation", params=params)
        assert response.status_code == 422, (params, response.text)
