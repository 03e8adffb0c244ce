"""Erasure on a deployment that reports in CNY, end to end (issue 13, item 6).

Erasure reads the customer's stored events back and rewrites them redacted. If that read
judged them again with a reporting currency other than the deployment's (as USD did once),
a CNY purchase stored without `reporting_amount` (valid here: it is the deployment's
currency) fails on the way back and the erasure is answered 500.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.helpers import api_client, caught_up, event, model_differences, wait_until
from tooling.devstack import SERVICES

pytestmark = [pytest.mark.e2e]

CUSTOMER = "cust-cny-erase"
# The customer's personal values; none may be readable anywhere after the erasure.
NAME, EMAIL, PHONE = "Wang Fang", "wang.fang@example.cn", "+86 10 5555 0199"
ADDRESS, COMPLAINT = "88 Jianguo Road, Beijing", "Wang Fang was charged twice at 88 Jianguo"
PERSONAL = (NAME, EMAIL, PHONE, ADDRESS, COMPLAINT, "Jianguo")


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {"REPORTING_CURRENCY": "CNY"}


def money(
    type_name: str, order: str, amount: str, currency: str, at: datetime, **extra: str
) -> dict[str, Any]:
    data = {"order_id": order, "amount": amount, "currency": currency, **extra}
    return event(type_name, CUSTOMER, data, time=at)


def history(at: datetime) -> list[dict[str, Any]]:
    """A registration with personal data, a complaint in free text, and purchases in the
    deployment's currency (with and without the optional reporting_amount) and in USD
    (where reporting_amount is required)."""
    profile = {"name": NAME, "email": EMAIL, "phone": PHONE, "address": ADDRESS}
    complaint = {
        "complaint_id": "cmp-cny-erase",
        "channel": "email",
        "category": "price_billing",
        "description": COMPLAINT,
    }
    purchase = "crm.purchase.completed"
    return [
        event("crm.customer.registered", CUSTOMER, profile, time=at),
        money(purchase, "cny-1", "100.00", "CNY", at + timedelta(minutes=1)),
        money(
            purchase, "cny-2", "50.00", "CNY", at + timedelta(minutes=2), reporting_amount="50.00"
        ),
        money(
            purchase, "usd-1", "10.00", "USD", at + timedelta(minutes=3), reporting_amount="72.50"
        ),
        money("crm.purchase.refunded", "cny-1", "20.00", "CNY", at + timedelta(minutes=4)),
        event("crm.complaint.opened", CUSTOMER, complaint, time=at + timedelta(minutes=5)),
    ]


def personal(text: str) -> list[str]:
    return [value for value in PERSONAL if value in text]


async def api_views(stack: Stack, client: httpx.AsyncClient) -> dict[str, httpx.Response]:
    """Every read API that can show this customer or their complaint."""
    scoring, complaints = stack.url("scoring"), stack.url("complaints")
    paths = {
        "customer": f"{scoring}/v1/customers/{CUSTOMER}",
        "rfm": f"{scoring}/v1/customers/{CUSTOMER}/rfm",
        "score": f"{scoring}/v1/customers/{CUSTOMER}/score",
        "customers": f"{scoring}/v1/customers?limit=1000",
        "complaint": f"{complaints}/v1/complaints/cmp-cny-erase",
        "queue": f"{complaints}/v1/complaints?limit=500",
        "kpi summary": f"{stack.url('reporting')}/v1/kpis/summary",
    }
    return {name: await client.get(url) for name, url in paths.items()}


async def database_text(stack: Stack) -> dict[str, str]:
    """Every row of every table of the services (event stores, outboxes, read models,
    failed batches), as text: personal data must be in none of them."""
    tables = await stack.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE'",
        [name for name, _ in SERVICES],
    )
    found = {}
    for t in tables:
        name = f'"{t["table_schema"]}"."{t["table_name"]}"'
        rows = await stack.fetch(f"SELECT row_to_json(t)::text AS row FROM {name} t")
        found[name] = "\n".join(r["row"] for r in rows)
    return found


async def test_erasure_on_a_cny_deployment_redacts_everything_and_keeps_the_aggregates(
    stack: Stack,
) -> None:
    at = datetime.now(UTC) - timedelta(hours=2)
    async with api_client(timeout=10) as client:
        ingest = f"{stack.url('ingest')}/v1/events"
        usd_unconverted = money("crm.purchase.completed", "usd-2", "5.00", "USD", at)
        rejected = await client.post(ingest, json=usd_unconverted)
        assert rejected.status_code == 422, "the deployment must judge amounts against CNY"
        assert "reporting_amount" in rejected.text

        accepted = await client.post(ingest, json=history(at))
        assert accepted.status_code == 202, accepted.text

        async def known() -> bool:
            views = await api_views(stack, client)
            return NAME in views["customer"].text and COMPLAINT in views["complaint"].text

        await wait_until(known, timeout=60, what="the customer's data in scoring and complaints")

        erasure = event("crm.customer.erased", CUSTOMER, {"reason": "customer request"})
        erased = await client.post(ingest, json=erasure)
        assert erased.status_code == 202, erased.text

        async def forgotten() -> dict[str, httpx.Response]:
            views = await api_views(stack, client)
            return {} if any(personal(r.text) for r in views.values()) else views

        views = await wait_until(forgotten, timeout=60, what="personal data gone from the APIs")
        assert {name: r.status_code for name, r in views.items()} == dict.fromkeys(views, 200)
        customer = views["customer"].json()
        assert customer["profile"] == {}
        assert views["complaint"].json()["category"] == "price_billing"

        urls = [stack.url(name) for name, _ in SERVICES]
        await wait_until(lambda: caught_up(urls), timeout=60, what="every service caught up")
        leaks = {table: personal(text) for table, text in (await database_text(stack)).items()}
        assert {table: values for table, values in leaks.items() if values} == {}

        stored = await stack.fetch(
            "SELECT type, body::jsonb ->> 'redacted' AS redacted FROM ingest.events "
            "WHERE subject = $1",
            CUSTOMER,
        )
        marks = sorted((r["type"] == "crm.customer.erased", r["redacted"]) for r in stored)
        assert marks == [(False, "erasure")] * 6 + [(True, None)]  # redacted in place

        # The aggregates stay, in CNY: 100.00 + 50.00 (its own reporting_amount) + 72.50
        # (the USD order's converted amount) by hand; the 20.00 refund is part of order cny-1.
        summary = await stack.fetch(
            "SELECT purchase_count, total_spent FROM scoring.purchase_summaries "
            "WHERE customer_id = $1",
            CUSTOMER,
        )
        assert summary[0]["purchase_count"] == 3
        assert summary[0]["total_spent"] == Decimal("202.50")
        # A moment when the models equal the offline fold of the redacted store (the SLA sweeper
        # may be emitting, and the complaints fold applying, an escalation meanwhile).
        await wait_until(
            lambda: _no_differences(stack.database_url), timeout=30, what="models equal to the fold"
        )

        for name, service in stack.services.items():  # no failure, nothing personal logged
            log = (service.log_dir / f"{name}.log").read_text(errors="replace")
            assert '"level":"ERROR"' not in log, service.log_tail()
            assert "Traceback" not in log, service.log_tail()
            assert personal(log) == [], name


async def _no_differences(dsn: str) -> bool:
    return not await model_differences(dsn)
