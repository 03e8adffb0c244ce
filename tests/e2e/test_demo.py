"""`crm demo` against the four services: loaded once and again, then every view shows it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.helpers import TEST_TOKEN, api_client, wait_until
from tooling import demo

pytestmark = pytest.mark.e2e

CUSTOMERS = 200
SEED = 3
# A week back: every complaint the history leaves unanswered has by now waited more than any
# first-response target (at most 8 business hours; a week holds five working days).
UNTIL = datetime.now(UTC).date() - timedelta(days=7)
FIRST_REPLIES = {
    "crm.complaint.step_done",
    "crm.complaint.responded",
    "crm.complaint.solution_proposed",
    "crm.complaint.resolved",
}


@pytest.fixture
def stack_env() -> dict[str, str]:
    # Re-score every few seconds so that tiers follow the load; judge the crisis hours only
    # at start-up, so that the test decides when detection runs: after the load is applied
    # (it judges each hour once).
    return {"SCORING_RESCORE_SECONDS": "3", "CRISIS_CHECK_SECONDS": "3600"}


async def crm_demo(
    stack: Stack, data_dir: Path, customers: int = CUSTOMERS
) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "CRM_API_KEY")
    }
    command = [
        *(sys.executable, "-m", "tooling.cli", "demo"),
        *("--customers", str(customers), "--seed", str(SEED), "--until", UNTIL.isoformat()),
        *("--url", stack.url("ingest"), "--api-key", TEST_TOKEN),
    ]
    return await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "CRM_DATA_DIR": str(data_dir)},  # no dev stack there
    )


def history() -> list[dict[str, Any]]:
    """What `crm demo` sends with these options (its unit tests judge the simulation)."""
    until = datetime.combine(UNTIL, datetime.min.time(), UTC)
    return demo.simulate(demo.DemoParams(until=until, customers=CUSTOMERS, seed=SEED))


def unanswered(events: list[dict[str, Any]]) -> set[str]:
    """Complaints without a first reply at the end of the history."""
    opened = {e["data"]["complaint_id"] for e in events if e["type"] == "crm.complaint.opened"}
    replied = {e["data"]["complaint_id"] for e in events if e["type"] in FIRST_REPLIES}
    return opened - replied


async def all_pages(client: httpx.AsyncClient, url: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        more = {"limit": 500} if cursor is None else {"limit": 500, "cursor": cursor}
        response = await client.get(url, params={**params, **more})
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_demo_loads_once_and_fills_every_view(stack: Stack, tmp_path: Path) -> None:
    events = history()
    first = await crm_demo(stack, tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"stored {len(events):,} events, already there 0," in first.stdout
    again = await crm_demo(stack, tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"stored 0 events, already there {len(events):,}," in again.stdout
    other = await crm_demo(stack, tmp_path, customers=CUSTOMERS - 50)  # other marketing spend
    assert other.returncode == 1
    assert other.stderr.strip().endswith("use the same options again, or another --seed")
    assert "Traceback" not in other.stderr

    async with api_client(timeout=30) as client:
        await sales_add_up(stack, client, events)
        await customers_scored_in_tiers(stack, client, events)
        await late_complaints_breached(stack, client, events)
        await crisis_detected(stack, client, events)  # waits for every complaint
        await plain_complaints_judged(stack, client, events)


async def sales_add_up(
    stack: Stack, client: httpx.AsyncClient, events: list[dict[str, Any]]
) -> None:
    orders = [e for e in events if e["type"] == "crm.purchase.completed"]
    refunds = [e for e in events if e["type"] == "crm.purchase.refunded"]
    net = sum(Decimal(e["data"]["amount"]) for e in orders) - sum(
        Decimal(e["data"]["amount"]) for e in refunds
    )
    span = {"from": (UNTIL - timedelta(weeks=105)).isoformat(), "to": UNTIL.isoformat()}

    async def daily() -> bool:
        rows = (await client.get(f"{stack.url('reporting')}/v1/kpis/daily", params=span)).json()
        counted = sum(r["orders"] for r in rows), sum(Decimal(str(r["revenue"])) for r in rows)
        return counted == (len(orders), net)

    await wait_until(daily, timeout=180, what="every order and dollar in the daily KPIs")
    monthly = await client.get(
        f"{stack.url('reporting')}/v1/kpis",
        params={**span, "granularity": "month", "metrics": "nps,csat,marketing_spend,cac"},
    )
    rows = monthly.json()["rows"]
    for metric in ("nps", "csat", "marketing_spend", "cac"):
        assert any(row[metric] not in (None, 0, "0.00") for row in rows), metric


async def customers_scored_in_tiers(
    stack: Stack, client: httpx.AsyncClient, events: list[dict[str, Any]]
) -> None:
    # A customer whose every order was refunded bought nothing that counts.
    refunded = {e["data"]["order_id"] for e in events if e["type"] == "crm.purchase.refunded"}
    buyers = {
        e["subject"]
        for e in events
        if e["type"] == "crm.purchase.completed" and e["data"]["order_id"] not in refunded
    }

    async def tiers() -> dict[str, Any] | None:
        body = (await client.get(f"{stack.url('scoring')}/v1/segments")).json()
        scored = sum(group["customers"] for group in body["tiers"].values())
        return body if scored == len(buyers) else None

    body = await wait_until(tiers, timeout=180, what="every buyer scored in a tier")
    assert len([t for t, g in body["tiers"].items() if g["customers"]]) >= 3
    # The re-score fitted its model on whatever had arrived; a fit now sees every buyer.
    fitted = await client.post(f"{stack.url('scoring')}/v1/models/clv/fit", json={})
    assert fitted.status_code == 200, fitted.text
    model = (await client.get(f"{stack.url('scoring')}/v1/models/clv")).json()
    assert model["customers"] == len(buyers)
    assert model["gamma_gamma"] is not None


async def late_complaints_breached(
    stack: Stack, client: httpx.AsyncClient, events: list[dict[str, Any]]
) -> None:
    waiting = unanswered(events)
    assert waiting  # the crisis wave leaves some in the queue

    async def breached() -> bool:
        items = await all_pages(client, f"{stack.url('complaints')}/v1/complaints", breached=True)
        return waiting <= {item["complaint_id"] for item in items}

    await wait_until(breached, timeout=180, what="every unanswered complaint breached")


# The built-in standard policy (customers without a tier), business hours: first response,
# resolution by priority; the default calendar: Monday-Friday 09:00-12:00 and 13:00-18:00 UTC.
TARGET_HOURS = {"low": (8, 40), "medium": (4, 24), "high": (2, 16), "urgent": (1, 8)}


def business_hours(start: datetime, end: datetime) -> float:
    """Working minutes between two instants, counted one by one."""
    minute = start.replace(second=0)
    minutes = 0
    while minute < end:
        if minute.weekday() < 5 and (9 <= minute.hour < 12 or 13 <= minute.hour < 18):
            minutes += 1
        minute += timedelta(minutes=1)
    return minutes / 60


def plain_complaints(events: list[dict[str, Any]]) -> dict[str, bool]:
    """Complaints closed within the history with no wait, escalation or reopening (so two
    clocks only: first response and resolution), and whether either missed its target."""
    by_complaint: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for e in events:
        if "complaint_id" in e["data"]:
            by_complaint[e["data"]["complaint_id"]][e["type"].rsplit(".", 1)[1]] = e
    verdicts = {}
    for complaint, steps in by_complaint.items():
        if "closed" not in steps or {"waiting", "escalated", "reopened"} & steps.keys():
            continue
        opened = datetime.fromisoformat(steps["opened"]["time"])
        first = datetime.fromisoformat(
            min(e["time"] for e in events if e["id"] == f"{complaint}:step_listen")
        )
        resolved = datetime.fromisoformat(steps["resolved"]["time"])
        first_target, resolution_target = TARGET_HOURS[steps["opened"]["data"]["priority"]]
        # A clock is breached once real time passes its deadline, the instant its business
        # time reaches the target: a reply on Saturday misses a deadline of Friday 18:00.
        verdicts[complaint] = (
            business_hours(opened, first) >= first_target
            or business_hours(opened, resolved) >= resolution_target
        )
    return verdicts


async def plain_complaints_judged(
    stack: Stack, client: httpx.AsyncClient, events: list[dict[str, Any]]
) -> None:
    expected = plain_complaints(events)
    assert any(expected.values())
    assert not all(expected.values())
    url = f"{stack.url('complaints')}/v1/complaints"
    shown = {item["complaint_id"]: item["breached"] for item in await all_pages(client, url)}
    assert {c: shown.get(c) for c in expected} == expected


async def crisis_detected(
    stack: Stack, client: httpx.AsyncClient, events: list[dict[str, Any]]
) -> None:
    complaints = len({e["data"]["complaint_id"] for e in events if "complaint_id" in e["data"]})

    async def applied() -> bool:
        items = await all_pages(client, f"{stack.url('complaints')}/v1/complaints")
        return len(items) == complaints

    await wait_until(applied, timeout=180, what="every complaint in the complaints service")
    stack.services["complaints"].stop()
    await stack.restart("complaints")  # detection judges the closed hours at start-up

    async def alert() -> list[dict[str, Any]]:
        items = await all_pages(client, f"{stack.url('complaints')}/v1/alerts")
        return [
            a for a in items if a["dimension"] == "product" and a["value"] == demo.CRISIS_PRODUCT
        ]

    found = await wait_until(alert, timeout=120, what="the crisis alert on the product")
    wave_start = datetime.combine(UNTIL, datetime.min.time(), UTC) - timedelta(
        hours=demo.CRISIS_HOURS
    )
    assert all(datetime.fromisoformat(a["window_end"]) > wave_start for a in found)
