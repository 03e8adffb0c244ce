"""SLA deadlines are stored, not kept in memory: breaches that fall due while the service is
down are emitted after the restart, once each, with the time they actually happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from crm_client import ProblemError

from shared.events import Topic
from tests.e2e.conftest import Stack
from tests.e2e.crm import crm_client, found
from tests.helpers import event, read_topic, wait_until

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
    async with crm_client(stack, timeout=10) as crm:
        posted = await crm.post_events(events)
        assert (posted.accepted, posted.duplicates) == (2, [])

        async def known() -> bool:
            return all([await found(crm.get_complaint(cid)) for cid in opened_at])

        await wait_until(known, what="both complaints in the complaints service")

    async def warned() -> bool:
        rows = await stack.fetch("SELECT count(*) n FROM complaints.outbox")
        sent = [await derived(stack, "sla_warning", cid) for cid in opened_at]
        return rows[0]["n"] == 0 and all(sent)

    # The warnings (at 80 % of the hour: due already) go out before the kill, and the kill
    # waits for the relay to have them acknowledged: a kill between the broker's
    # acknowledgement and the outbox's delete would publish them again (at least once).
    await wait_until(warned, what="both warnings published")
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

    async with crm_client(stack, timeout=10) as crm:

        async def escalated() -> Any:
            body = await crm.get_complaint("sla-1")
            return body if body.escalation_level == 1 else None

        body = await wait_until(escalated, what="the automatic escalation folded back")
        assert body.status == "escalated"
        assert body.breached is True
        clock = next(c for c in body.clocks if c.metric == "first_response")
        assert clock.status == "breached"
        assert clock.breached_at == due["sla-1"]
        # The whole queue, one complaint a page: the cursor carries the order across pages.
        queue = [i.complaint_id async for i in crm.list_complaints(breached=True, page_size=1)]
        assert queue == ["sla-1", "sla-2"]


def _hours(minutes: int) -> float:
    return minutes * 60 / 3600


async def test_steps_sent_through_ingest_and_an_agent_s_follow_up_in_the_durations(
    stack: Stack,
) -> None:
    """Another system sends a complaint's first six steps through ingest (times fixed, in
    minutes after the opening); an agent cannot close it before the follow-up, does the
    follow-up, and closes it. The durations report holds the hand-counted step times."""
    opened = datetime(2026, 1, 5, 10, tzinfo=UTC)
    timeline = [
        ("opened", 0, {"channel": "chat", "category": "delivery"}),
        *[("step_done", m, {"step": s}) for s, m in [("listen", 6), ("thank", 7)]],
        *[("step_done", m, {"step": s}) for s, m in [("apologise", 8), ("promise", 30)]],
        ("solution_proposed", 90, {"promised_at": (opened + timedelta(days=1)).isoformat()}),
        ("resolved", 330, {}),
    ]
    events = [
        event(
            f"crm.complaint.{kind}",
            "cust-steps",
            {"complaint_id": "steps-1", **data},
            time=opened + timedelta(minutes=minutes),
        )
        for kind, minutes, data in timeline
    ]
    async with crm_client(stack, timeout=10) as crm:
        posted = await crm.post_events(events)
        assert (posted.accepted, posted.duplicates) == (len(timeline), [])

        async def resolved() -> Any:
            body = await found(crm.get_complaint("steps-1"))
            return body if body is not None and body.status == "resolved" else None

        body = await wait_until(resolved, what="the six steps folded")
        assert body.next_step == "follow_up"
        with pytest.raises(ProblemError) as refused:
            await crm.command("steps-1", "close")
        assert refused.value.status == 409
        assert refused.value.errors[0].field == "steps.follow_up"
        followed = await crm.command("steps-1", "follow_up")
        assert (followed.type, followed.status_before) == ("crm.complaint.step_done", "resolved")
        closed = await crm.command("steps-1", "close")
        assert (closed.type, closed.status_before) == ("crm.complaint.closed", "resolved")

        report = await crm.get_step_durations(start=opened, end=opened + timedelta(days=1))
        # Each step from the one before it: 6, 1, 1, 22, 60 and 240 minutes; the follow-up,
        # done now, lies outside the period.
        expected = [6, 1, 1, 22, 60, 240]
        steps = report.steps
        assert [(s.step, s.count, s.mean_hours, s.p90_hours) for s in steps] == [
            *[
                (step, 1, _hours(m), _hours(m))
                for step, m in zip(
                    ["listen", "thank", "apologise", "promise", "propose", "carry_out"],
                    expected,
                    strict=True,
                )
            ],
            ("follow_up", 0, None, None),
        ]
