"""A month of events posted through ingest comes back from reporting as the KPIs computed
offline, by plain arithmetic on the same events (JSON and CSV), on real processes, broker
and PostgreSQL.

Only ingest and reporting run here: scoring's re-scores and the complaints service's SLA
and crisis events would add derived events of their own; this test posts the derived events
(tier changes, tier summaries, SLA clock stops and breaches, crisis alerts) itself, exactly
as the contract in shared/events.py describes them.

SLA compliance counts each clock (complaint, metric, cycle) once: breached on the day of its
earliest breach whether or not it ever stops, otherwise its latest stop's outcome on the stop
day. The month holds clocks that tell the difference from counting stops: one abandoned
after its breach, breaches whose stop falls in a later week or month, a clock stopped twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.helpers import ServiceProcess, api_client, event, wait_until
from tooling.embedded import Broker, free_port, service_environment

pytestmark = pytest.mark.e2e

ZONE_NAME = "Asia/Shanghai"  # local days differ from UTC days: the fold must use local dates
ZONE = ZoneInfo(ZONE_NAME)
WINDOW = 30  # REPORTING_CHURN_AFTER_DAYS of these tests
MONTH = date(2025, 6, 1)
MONTH_END = date(2025, 6, 30)
CHANNELS = ("web", "app", "store")
CUSTOMERS = [f"cust-{i:03}" for i in range(60)]
D = Decimal
SLA_BREACHED = "crm.complaint.sla_breached"
SLA_STOPPED = "crm.complaint.sla_clock_stopped"
Clock = tuple[str, str, int]  # complaint, SLA metric, cycle
Add = Callable[[str, str, dict[str, Any], datetime], None]  # type, subject, data, time


@dataclass
class Reporting:
    """Ingest and reporting as processes, as `make run` starts them."""

    ingest: ServiceProcess
    reporting: ServiceProcess

    @property
    def url(self) -> str:
        return self.reporting.url

    async def post(self, events: list[dict[str, Any]]) -> None:
        async with api_client(base_url=self.ingest.url, timeout=60) as client:
            for start in range(0, len(events), 500):
                response = await client.post("/v1/events", json=events[start : start + 500])
                assert response.status_code == 202, response.text


@contextlib.asynccontextmanager
async def running_reporting(
    broker: Broker, database_url: str, log_dir: Path
) -> AsyncIterator[Reporting]:
    env = service_environment(
        broker,
        database_url,
        TOPIC_PARTITIONS="3",
        CONSUMER_SESSION_TIMEOUT_MS="6000",
        METADATA_MAX_AGE_MS="1000",
        TIMEZONE=ZONE_NAME,
        REPORTING_CHURN_AFTER_DAYS=str(WINDOW),
    )
    services = [
        ServiceProcess(name, env, log_dir, free_port()).start() for name in ("ingest", "reporting")
    ]
    try:
        await asyncio.gather(*(s.wait_ready() for s in services))
        yield Reporting(*services)
    finally:
        for service in services:
            service.stop()


@pytest.fixture
async def reporting(broker: Broker, database_url: str, tmp_path: Path) -> AsyncIterator[Reporting]:
    async with running_reporting(broker, database_url, tmp_path) as running:
        yield running


# --------------------------------------------------------------------------- the events


def _when(rng: random.Random, day: date, now: datetime) -> datetime:
    moment = datetime.combine(day, time(), ZONE) + timedelta(minutes=rng.randrange(24 * 60))
    return min(moment, now - timedelta(minutes=2 + rng.random()))


def month_of_events(first: date, last: date, seed: int = 1) -> list[dict[str, Any]]:
    """A reproducible month (first..last, local days) of every kind of event, with 100 days
    of purchase history before it, for 60 customers."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    history = [first - timedelta(days=i) for i in range(1, 101)]
    out: list[dict[str, Any]] = []

    def add(type_name: str, subject: str, data: dict[str, Any], when: datetime) -> None:
        out.append(event(type_name, subject, data, time=when, event_id=f"e-{seed}-{len(out)}"))

    for i, customer in enumerate(CUSTOMERS):
        profile: dict[str, Any] = {"name": customer, "acquisition_channel": CHANNELS[i % 3]}
        if i % 10 == 0:
            profile["reason"] = rng.choice(["price", "competitor"])
        add("crm.customer.registered", customer, profile, _when(rng, history[-1], now))
        add(
            "crm.customer.tier_changed",
            customer,
            {
                "new": rng.choice(["gold", "developing", "potential"]),
                "as_of": datetime.combine(first, time(), ZONE).isoformat(),
            },
            _when(rng, first, now),
        )
        if i % 2 == 0:  # half the customers have a history; the rest are new this month
            for day in rng.sample(history, rng.randrange(1, 4)):
                order = {"order_id": f"h-{customer}-{day}", "amount": f"{rng.randrange(5, 200)}.00"}
                add(
                    "crm.purchase.completed",
                    customer,
                    order | {"currency": "USD", "channel": rng.choice(CHANNELS)},
                    _when(rng, day, now),
                )
        for n in range(rng.choice([0, 0, 1, 1, 2, 3])):
            day = rng.choice(days)
            amount = D(rng.randrange(1000, 30000)) / 100
            when = _when(rng, day, now)
            items = [
                {
                    "sku": "a",
                    "category": rng.choice(["shoes", "bags"]),
                    "quantity": 1,
                    "unit_price": str(amount),
                }
            ]
            order_id = f"o-{customer}-{n}"
            add(
                "crm.purchase.completed",
                customer,
                {
                    "order_id": order_id,
                    "amount": str(amount),
                    "currency": "USD",
                    "channel": rng.choice(CHANNELS),
                    "items": items,
                },
                when,
            )
            if rng.random() < 0.15 and when + timedelta(days=2) < now:
                add(
                    "crm.purchase.refunded",
                    customer,
                    {
                        "order_id": order_id,
                        "amount": str(amount / 2),
                        "currency": "USD",
                        "reason": "product_quality",
                    },
                    when + timedelta(days=2),
                )
    for _ in range(40):
        add(
            "crm.survey.nps",
            rng.choice(CUSTOMERS),
            {"score": rng.randrange(11)},
            _when(rng, rng.choice(days), now),
        )
    for _ in range(30):
        add(
            "crm.survey.csat",
            rng.choice(CUSTOMERS),
            {"score": rng.randrange(1, 6)},
            _when(rng, rng.choice(days), now),
        )
    for n in range(120):
        # Every third contact by a bot; calls and chats synchronous, emails asynchronous,
        # every fifth contact without a recorded mode.
        channel = rng.choice(["email", "phone", "chat"])
        contact: dict[str, Any] = {"channel": channel, "direction": "inbound"}
        contact["handled_by"] = "bot" if n % 3 == 0 else "human"
        if n % 5:
            contact["synchronous"] = channel != "email"
        add(
            "crm.interaction.logged",
            rng.choice(CUSTOMERS),
            contact,
            _when(rng, rng.choice(days), now),
        )
    for n in range(20):
        customer, cid = rng.choice(CUSTOMERS), f"cmp-{seed}-{n}"
        opened = _when(rng, rng.choice(days[:-3]), now)
        category = rng.choice(["delivery", "price_billing", "product_quality"])
        add(
            "crm.complaint.opened",
            customer,
            {"complaint_id": cid, "channel": "hotline", "category": category},
            opened,
        )
        met = rng.random() < 0.7
        add(
            "crm.complaint.sla_clock_stopped",
            customer,
            {
                "complaint_id": cid,
                "metric": "first_response",
                "cycle": 0,
                "target_seconds": 14400,
                "outcome": "met" if met else "breached",
                "category": category,
                "elapsed_seconds": rng.randrange(600, 14000)
                if met
                else rng.randrange(14400, 60000),
            },
            min(opened + timedelta(hours=3), now - timedelta(minutes=1)),
        )
        if not met:
            add(
                "crm.complaint.sla_breached",
                customer,
                {
                    "complaint_id": cid,
                    "metric": "first_response",
                    "cycle": 0,
                    "target_seconds": 14400,
                    "category": category,
                },
                min(opened + timedelta(hours=2), now - timedelta(minutes=1)),
            )
        if rng.random() < 0.7:
            resolved = min(opened + timedelta(hours=rng.randrange(4, 48)), now)
            add("crm.complaint.resolved", customer, {"complaint_id": cid}, resolved)
            add(
                "crm.complaint.feedback",
                customer,
                {"complaint_id": cid, "score": rng.randrange(1, 6)},
                resolved,
            )
    for dimension, value in (("category", "delivery"), ("channel", "hotline")):
        end = _when(rng, rng.choice(days), now)
        add(
            "crm.crisis.detected",
            f"crisis:{dimension}:{value}",
            {
                "dimension": dimension,
                "value": value,
                "window_start": (end - timedelta(hours=6)).isoformat(),
                "window_end": end.isoformat(),
                "count": 15,
                "baseline": 3.5,
                "score": 14.0,
                "decision_interval": 12,
            },
            end,
        )
    add(
        "crm.marketing.spend",
        "marketing",
        {
            "amount": "3000.00",
            "currency": "USD",
            "channel": "web",
            "period_start": str(first),
            "period_end": str(last),
        },
        _when(rng, first, now),
    )
    add(
        "crm.marketing.spend",
        "marketing",
        {"amount": "450.00", "currency": "USD", "channel": "app"},
        _when(rng, days[3], now),
    )
    for week in range(0, len(days), 7):
        as_of = _when(rng, days[week], now)
        for tier, customers, equity in (
            ("gold", 12, "9000"),
            ("developing", 20, "6000"),
            ("potential", 28 - week // 7, "2800"),
        ):
            add(
                "crm.scoring.tier_summary",
                f"tier:{tier}",
                {
                    "as_of": as_of.isoformat(),
                    "tier": tier,
                    "customers": customers,
                    "customer_equity": equity,
                    "average_clv": str(round(D(equity) / customers, 2)),
                },
                as_of,
            )
    add_sla_stories(add, seed)
    return out


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A local time in 2025."""
    return datetime(2025, month, day, hour, minute, tzinfo=ZONE)


SLA_TARGETS = {"first_response": 14400, "resolution": 86400}  # business seconds


def add_sla_stories(add: Add, seed: int) -> None:
    """Clocks told by hand whose verdict day is not the day of a stop, so that counting stop
    events (the rule before issue 15 item 2) reads other figures for the month or its weeks:

    - abandoned: the first response breaches on Tuesday 10 June and never stops;
    - across weeks: the resolution breaches late on Sunday 15 June and stops, breached, on
      Monday 16 June (the next week): it counts in the week of 9 June;
    - across months: the first response breaches on Monday 30 June and stops, breached, on
      2 July: June counts it;
    - stopped twice: the resolution is met on Thursday 12 June, the complaint reopens and
      is met again on Tuesday 17 June: it counts once, in the week of 16 June.
    """
    customer = CUSTOMERS[7]

    def complaint(kind: str, cid: str, when: datetime, **more: Any) -> None:
        add(f"crm.complaint.{kind}", customer, {"complaint_id": cid} | more, when)

    def clock(kind: str, cid: str, metric: str, when: datetime, **more: Any) -> None:
        target = SLA_TARGETS[metric]
        data = {"metric": metric, "cycle": 0, "target_seconds": target, "category": "delivery"}
        complaint(kind, cid, when, **data, **more)

    def stop(cid: str, metric: str, when: datetime, outcome: str) -> None:
        elapsed = SLA_TARGETS[metric] + (3600 if outcome == "breached" else -3600)
        clock("sla_clock_stopped", cid, metric, when, outcome=outcome, elapsed_seconds=elapsed)

    def opened(cid: str, when: datetime) -> None:
        complaint("opened", cid, when, channel="hotline", category="delivery")

    abandoned = f"cmp-{seed}-abandoned"
    opened(abandoned, at(6, 10, 9))
    clock("sla_breached", abandoned, "first_response", at(6, 10, 13))

    across_weeks = f"cmp-{seed}-across-weeks"
    opened(across_weeks, at(6, 13, 10))
    clock("sla_breached", across_weeks, "resolution", at(6, 15, 23, 30))
    stop(across_weeks, "resolution", at(6, 16, 11), "breached")
    complaint("resolved", across_weeks, at(6, 16, 11))

    across_months = f"cmp-{seed}-across-months"
    opened(across_months, at(6, 30, 9))
    clock("sla_breached", across_months, "first_response", at(6, 30, 13))
    stop(across_months, "first_response", at(7, 2, 10), "breached")

    twice = f"cmp-{seed}-stopped-twice"
    opened(twice, at(6, 11, 10))
    stop(twice, "resolution", at(6, 12, 15), "met")
    complaint("resolved", twice, at(6, 12, 15))
    complaint("reopened", twice, at(6, 13, 9))
    stop(twice, "resolution", at(6, 17, 15), "met")
    complaint("resolved", twice, at(6, 17, 15))


# --------------------------------------------------------------------------- offline KPIs


def local_day(raw: dict[str, Any]) -> date:
    return datetime.fromisoformat(raw["time"]).astimezone(ZONE).date()


def week_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def per_clock(
    events: list[dict[str, Any]], kind: str, pick: Callable[..., dict[str, Any]]
) -> dict[Clock, dict[str, Any]]:
    """Per SLA clock, its `pick` (min: earliest, max: latest) event of a kind, in the order
    of the events' own times, then ids."""
    found: dict[Clock, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["type"] == kind:
            found[(e["data"]["complaint_id"], e["data"]["metric"], e["data"]["cycle"])].append(e)
    return {clock: pick(all_of, key=order_of) for clock, all_of in found.items()}


def order_of(raw: dict[str, Any]) -> tuple[datetime, str]:
    return datetime.fromisoformat(raw["time"]), raw["id"]


def sla_verdicts_by_hand(events: list[dict[str, Any]]) -> list[tuple[date, str]]:
    """Each SLA clock's (local day, outcome) for compliance: breached on its earliest
    breach's day whether it stopped or not; otherwise its latest stop's day and outcome. A
    clock running before its deadline has neither event, so no verdict."""
    verdicts = {
        clock: (local_day(e), "breached")
        for clock, e in per_clock(events, SLA_BREACHED, min).items()
    }
    for clock, e in per_clock(events, SLA_STOPPED, max).items():
        verdicts.setdefault(clock, (local_day(e), e["data"]["outcome"]))
    return list(verdicts.values())


def offline(events: list[dict[str, Any]], first: date, last: date) -> dict[str, Any]:
    """The KPIs of the period first..last, by plain arithmetic on the events."""
    within = [e for e in events if first <= local_day(e) <= last]

    def of(kind: str) -> list[dict[str, Any]]:
        return [e for e in within if e["type"] == kind]

    purchases = of("crm.purchase.completed")
    revenue = sum((D(e["data"]["amount"]) for e in purchases), D(0)) - sum(
        (D(e["data"]["amount"]) for e in of("crm.purchase.refunded")), D(0)
    )
    per_customer = Counter(e["subject"] for e in purchases)
    firsts: dict[str, date] = {}
    buy_days: dict[str, set[date]] = defaultdict(set)
    for e in events:
        if e["type"] == "crm.purchase.completed":
            day = local_day(e)
            firsts[e["subject"]] = min(firsts.get(e["subject"], day), day)
            buy_days[e["subject"]].add(day)
    new = {c for c, d in firsts.items() if first <= d <= last}

    def active(c: str, day: date) -> bool:
        return any(day - timedelta(days=WINDOW) < d <= day for d in buy_days[c])

    at_start = {c for c in buy_days if active(c, first - timedelta(days=1))}
    at_end = {c for c in buy_days if active(c, last)}
    won_back = {c for c in per_customer if c not in new and c not in at_start}
    lost = {
        c
        for c in at_start
        if any(not active(c, first + timedelta(days=i)) for i in range((last - first).days + 1))
    }
    nps = [e["data"]["score"] for e in of("crm.survey.nps")]
    csat = [e["data"]["score"] for e in of("crm.survey.csat")]
    contacts = [e["data"] for e in of("crm.interaction.logged")]
    by_bot = sum(c.get("handled_by") == "bot" for c in contacts)
    synchronous = sum(c.get("synchronous") is True for c in contacts)
    asynchronous = sum(c.get("synchronous") is False for c in contacts)
    complaints = len(of("crm.complaint.opened"))
    verdicts = [o for d, o in sla_verdicts_by_hand(events) if first <= d <= last]
    breached = [d for d, o in sla_verdicts_by_hand(events) if o == "breached"]
    return {
        "revenue": f"{revenue:.2f}",
        "orders": len(purchases),
        "buyers": len(per_customer),
        "new_buyers": len(new & set(per_customer)),
        "repeat_purchase_rate": round(
            sum(n >= 2 for n in per_customer.values()) / len(per_customer), 6
        )
        if per_customer
        else None,
        "nps": round(100 * (sum(s >= 9 for s in nps) - sum(s <= 6 for s in nps)) / len(nps), 4)
        if nps
        else None,
        "csat": round(100 * sum(s >= 4 for s in csat) / len(csat), 4) if csat else None,
        "complaints_opened": len(of("crm.complaint.opened")),
        "sla_compliance": round(verdicts.count("met") / len(verdicts), 6) if verdicts else None,
        "sla_breaches": sum(first <= d <= last for d in breached),
        "interactions": len(of("crm.interaction.logged")),
        "interactions_by_bot": by_bot,
        "interactions_by_human": len(contacts) - by_bot,
        "bot_share": round(by_bot / len(contacts), 6) if contacts else None,
        "interactions_synchronous": synchronous,
        "interactions_asynchronous": asynchronous,
        "synchronous_share": round(synchronous / (synchronous + asynchronous), 6)
        if synchronous + asynchronous
        else None,
        "complaints_per_1000_orders": round(complaints * 1000 / len(purchases), 4)
        if purchases
        else None,
        "crisis_alerts": len(of("crm.crisis.detected")),
        "customers_at_start": len(at_start),
        "customers_at_end": len(at_end),
        "lost_customers": len(lost),
        "churn_rate": round(len(lost) / len(at_start), 6) if at_start else None,
        "retention_rate": round((len(at_end) - len(new) - len(won_back)) / len(at_start), 6)
        if at_start
        else None,
    }


def month_of(day: date) -> date:
    return day.replace(day=1)


def cohorts_by_hand(
    events: list[dict[str, Any]], first: date, last: date, current: date
) -> list[dict[str, Any]]:
    """The cohort rows first..last (months): each customer's cohort is the local month of
    their first purchase; month k counts the cohort's customers who bought in it."""
    bought: dict[str, set[date]] = defaultdict(set)
    for e in events:
        if e["type"] == "crm.purchase.completed":
            bought[e["subject"]].add(month_of(local_day(e)))
    rows = []
    cohort = first
    while cohort <= last:
        members = [m for m in bought.values() if min(m) == cohort]
        months = []
        month = cohort
        while month <= current:
            months.append(month)
            month = month_of(month + timedelta(days=32))
        active = [sum(month in m for m in members) for month in months]
        rows.append(
            {
                "cohort": str(cohort),
                "customers": len(members),
                "active": active,
                "retention": [round(n / len(members), 6) if members else None for n in active],
            }
        )
        cohort = month_of(cohort + timedelta(days=32))
    return rows


METRICS = [
    "revenue",
    "orders",
    "buyers",
    "new_buyers",
    "repeat_purchase_rate",
    "nps",
    "csat",
    "complaints_opened",
    "sla_compliance",
    "sla_breaches",
    "interactions",
    "interactions_by_bot",
    "interactions_by_human",
    "bot_share",
    "interactions_synchronous",
    "interactions_asynchronous",
    "synchronous_share",
    "complaints_per_1000_orders",
    "crisis_alerts",
    "customers_at_start",
    "customers_at_end",
    "lost_customers",
    "churn_rate",
    "retention_rate",
]


def weeks(first: date, last: date) -> Iterator[tuple[date, date]]:
    start = week_of(first)
    while start <= last:
        yield start, start + timedelta(days=6)
        start += timedelta(days=7)


async def get_table(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/kpis", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --------------------------------------------------------------------------- the tests


async def test_a_month_of_events_reads_back_as_kpis(reporting: Reporting) -> None:
    events = month_of_events(MONTH, MONTH_END)
    await reporting.post(events)
    expected_month = offline(events, MONTH, MONTH_END)
    query = {"metrics": ",".join(METRICS), "from": str(MONTH), "to": str(MONTH_END)}
    async with api_client(base_url=reporting.url, timeout=30) as client:

        async def month_row() -> dict[str, Any] | None:
            body = await get_table(client, **query, granularity="month")
            row = body["rows"][0]
            return row if {m: row[m] for m in METRICS} == expected_month else None

        try:
            await wait_until(month_row, timeout=60, what="the month's KPIs")
        except AssertionError:
            row = (await get_table(client, **query, granularity="month"))["rows"][0]
            diff = {m: (row[m], expected_month[m]) for m in METRICS if row[m] != expected_month[m]}
            raise AssertionError(f"reporting vs offline: {diff}") from None

        weekly = await get_table(client, **query, granularity="week")
        assert [r["period"] for r in weekly["rows"]] == [str(s) for s, _ in weeks(MONTH, MONTH_END)]
        for row, (start, end) in zip(weekly["rows"], weeks(MONTH, MONTH_END), strict=True):
            assert {m: row[m] for m in METRICS} == offline(events, start, end), row["period"]

        # The same table as CSV, by content negotiation.
        response = await client.get(
            "/v1/kpis", params=query | {"granularity": "week"}, headers={"accept": "text/csv"}
        )
        assert response.headers["content-type"].startswith("text/csv")
        lines = list(csv.DictReader(io.StringIO(response.text)))
        assert [line["period"] for line in lines] == [r["period"] for r in weekly["rows"]]
        assert [line["revenue"] for line in lines] == [r["revenue"] for r in weekly["rows"]]
        assert [line["orders"] for line in lines] == [str(r["orders"]) for r in weekly["rows"]]

        # Sliced by purchase channel, the revenue adds up to the month's.
        by_channel = await get_table(
            client,
            metrics="revenue,cac",
            **{"from": str(MONTH), "to": str(MONTH_END)},
            granularity="month",
            by="channel",
        )
        total = sum(D(r["revenue"]) for r in by_channel["rows"])
        assert f"{total:.2f}" == expected_month["revenue"]
        assert {r["channel"] for r in by_channel["rows"]} == set(CHANNELS)
        by_tier = await get_table(
            client,
            metrics="customer_equity,average_clv",
            **{"from": str(MONTH), "to": str(MONTH_END)},
            granularity="month",
            by="tier",
        )
        # The last re-score of June (day 29): 12 gold, 20 developing, 28 - 4 potential.
        assert {r["tier"]: r["customer_equity"] for r in by_tier["rows"]} == {
            "developing": "6000.00",
            "gold": "9000.00",
            "potential": "2800.00",
        }
        assert {r["tier"]: r["average_clv"] for r in by_tier["rows"]}["potential"] == "116.67"

        # A late purchase corrects its own past week (and the customer base after it).
        late = event(
            "crm.purchase.completed",
            "cust-late",
            {"order_id": "late-1", "amount": "99.99", "currency": "USD", "channel": "web"},
            time=datetime.combine(date(2025, 6, 4), time(12), ZONE),
        )
        await reporting.post([late])
        expected_weeks = [offline([*events, late], s, e) for s, e in weeks(MONTH, MONTH_END)]

        async def corrected() -> bool:
            rows = (await get_table(client, **query, granularity="week"))["rows"]
            return [{m: r[m] for m in METRICS} for r in rows] == expected_weeks

        await wait_until(corrected, timeout=30, what="the late purchase in its own week")
        assert D(expected_weeks[1]["revenue"]) == D(weekly["rows"][1]["revenue"]) + D("99.99")
        assert [w["revenue"] for i, w in enumerate(expected_weeks) if i != 1] == [
            r["revenue"] for i, r in enumerate(weekly["rows"]) if i != 1
        ]

        # The cohort retention matrix, against the events' purchases month by month.
        cohorts = await client.get(
            "/v1/kpis/cohorts", params={"from": "2025-02-01", "to": str(MONTH)}
        )
        assert cohorts.status_code == 200, cohorts.text
        body = cohorts.json()
        assert body["cohorts"] == cohorts_by_hand(
            [*events, late], date(2025, 2, 1), MONTH, date.fromisoformat(body["current_month"])
        )
        assert body["current_month"] == str(datetime.now(ZONE).date().replace(day=1))
        assert "Fader" in body["definition"]["source"]

        # The headline cards, the alerts, the skeleton's daily endpoint and the page.
        summary = (
            await client.get("/v1/kpis/summary", params={"period": "month", "date": "2025-06-15"})
        ).json()
        cards = {c["name"]: c for c in summary["cards"]}
        assert cards["orders"]["value"] == expected_month["orders"] + 1
        assert cards["nps"]["value"] == expected_month["nps"]
        assert cards["revenue"]["previous"] is not None
        alerts = (await client.get("/v1/alerts", params={"status": "all"})).json()["items"]
        assert sorted((a["dimension"], a["value"]) for a in alerts) == [
            ("category", "delivery"),
            ("channel", "hotline"),
        ]
        assert not any(a["open"] for a in alerts)  # June's alerts closed long ago
        daily = (
            await client.get("/v1/kpis/daily", params={"from": "2025-06-01", "to": "2025-06-30"})
        ).json()
        assert sum(d["orders"] for d in daily) == expected_month["orders"] + 1
        page = await client.get("/")
        assert page.status_code == 200
        assert "uPlot.iife.min.js" in page.text
        assert (await client.get("/static/vendor/uPlot.iife.min.js")).status_code == 200


BAD_QUERIES = [
    ({"metrics": "revenue,bogus"}, "query.metrics"),
    ({"metrics": "cac", "by": "tier"}, "query.by"),
    ({"granularity": "quarter"}, "query.granularity"),
    ({"by": "colour"}, "query.by"),
    ({"from": "2025-06-30", "to": "2025-06-01"}, "query.to"),
    ({"from": "1960-01-01", "to": "2025-01-01", "granularity": "month"}, "query.from"),
    ({"to": "1960-02-01"}, "query.to"),
    ({"from": "0"}, "query.from"),
    ({"from": "2025-13-01"}, "query.from"),
    ({"to": "9999-12-31"}, "query.to"),
    ({"from": "2000-01-01", "to": "2025-01-01", "granularity": "day"}, "query.to"),
    ({"format": "xml"}, "query.format"),
]


async def test_bad_input_is_a_422_in_the_shared_format(reporting: Reporting) -> None:
    async with api_client(base_url=reporting.url, timeout=10) as client:
        for params, field in BAD_QUERIES:
            response = await client.get("/v1/kpis", params=params)
            assert response.status_code == 422, (params, response.text)
            body = response.json()
            assert body["detail"], params
            assert field in [e["field"] for e in body["errors"]], (params, body)
        for path, bad in (
            ("/v1/kpis/summary", {"period": "year"}),
            ("/v1/kpis/summary", {"date": "1900-01-01"}),
            ("/v1/kpis/summary", {"date": "0"}),
            ("/v1/kpis/daily", {"from": "0", "to": "2025-01-01"}),
            ("/v1/kpis/cohorts", {"to": "9999-01-01"}),
            ("/v1/kpis/cohorts", {"from": "1960-01-01", "to": "2025-01-01"}),
            ("/v1/kpis/cohorts", {"from": "2025-06-01", "to": "2025-01-01"}),
            ("/v1/kpis/cohorts", {"from": "2000-01-01", "to": "2025-01-01"}),  # 301 months
            ("/v1/alerts", {"limit": "0"}),
            ("/v1/alerts", {"status": "closed"}),
        ):
            other = await client.get(path, params=bad)
            assert other.status_code == 422, (path, bad, other.text)
            assert {"detail", "errors"} <= set(other.json())
        assert (await client.get("/static/../api.py")).status_code == 404
        assert (await client.get("/static/nothing.js")).status_code == 404
        # Empty slices and ranges without data are answers, not errors.
        empty = await get_table(client, by="tier", metrics="revenue", **{"from": "2024-01-01"})
        assert empty["rows"] == []
        plain = await get_table(
            client, metrics="revenue,nps", **{"from": "2024-01-01", "to": "2024-01-02"}
        )
        assert [(r["revenue"], r["nps"]) for r in plain["rows"]] == [("0.00", None)] * 2
