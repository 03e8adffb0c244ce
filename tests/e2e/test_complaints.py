"""SLA deadlines are stored, not kept in memory: breaches that fall due while the service is
down are emitted after the restart, once each, with the time they actually happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from shared.events import Topic
from tests.e2e.conftest import Stack
from tests.helpers import api_client, event, read_topic, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {"SLA_ALWAYS_OPEN": "true", "SLA_SWEEP_SECONDS": "0.5"}


async def derived(stack: Stack, kind: str, complaint: str) -> list[dict[str, Any]]:
    records = await read_topic(stack.broker.bootstrap, Topic.DERIVED)
    values = [orjson.loads(r.value) for r in records]
    return [
        v
        for v in values
        if v["type"] == f"crm.complaint.{kind}" and v["data"]["complaint_id"] == complaint
    ]


async def test_breaches_due_while_down_are_emitted_once_with_their_true_time(
    stack: Stack,
) -> None:
    # Urgent complaints of unknown-tier customers: first response within 1 business hour,
    # on a 24x7 calendar; opened so that the deadlines fall a few seconds from now.
    now = datetime.now(UTC)
    opened_at = {
        "sla-1": now - timedelta(hours=1) + timedelta(seconds=6),
        "sla-2": now - timedelta(hours=1) + timedelta(seconds=8),
    }
    events = [
        event(
            "crm.complaint.opened",
            "cust-sla",
            {
                "complaint_id": cid,
                "channel": "hotline",
                "category": "delivery",
                "priority": "urgent",
            },
            time=at,
        )
        for cid, at in opened_at.items()
    ]
    async with api_client(timeout=10) as client:
        posted = await client.post(f"{stack.url('ingest')}/v1/events", json=events)
        assert posted.status_code == 202

        async def known() -> bool:
            responses = [
                await client.get(f"{stack.url('complaints')}/v1/complaints/{cid}")
                for cid in opened_at
            ]
            return all(r.status_code == 200 for r in responses)

        await wait_until(known, what="both complaints in the complaints service")
    assert await derived(stack, "sla_breached", "sla-1") == []

    stack.services["complaints"].kill()
    due = {cid: at + timedelta(hours=1) for cid, at in opened_at.items()}

    async def deadlines_passed() -> bool:
        return datetime.now(UTC) > max(due.values()) + timedelta(seconds=1)

    await wait_until(deadlines_passed, what="the deadlines to pass while the service is down")
    await stack.restart("complaints")

    for cid, deadline in due.items():
        breaches = await wait_until(
            lambda cid=cid: derived(stack, "sla_breached", cid), what=f"the breach of {cid}"
        )
        assert len(breaches) == 1
        assert datetime.fromisoformat(breaches[0]["time"]) == deadline
        assert breaches[0]["data"]["metric"] == "first_response"
        escalations = await derived(stack, "escalated_auto", cid)
        assert [datetime.fromisoformat(e["time"]) for e in escalations] == [deadline]
        warnings = await derived(stack, "sla_warning", cid)
        assert len(warnings) == 1

    async with api_client(timeout=10) as client:

        async def escalated() -> Any:
            body = (await client.get(f"{stack.url('complaints')}/v1/complaints/sla-1")).json()
            return body if body["escalation_level"] == 1 else None

        body = await wait_until(escalated, what="the automatic escalation folded back")
        assert body["status"] == "escalated"
        assert body["breached"] is True
        clock = next(c for c in body["clocks"] if c["metric"] == "first_response")
        assert clock["status"] == "breached"
        assert datetime.fromisoformat(clock["breached_at"]) == due["sla-1"]
        queue = (
            await client.get(
                f"{stack.url('complaints')}/v1/complaints", params={"breached": "true"}
            )
        ).json()
        assert [i["complaint_id"] for i in queue["items"]] == ["sla-1", "sla-2"]
