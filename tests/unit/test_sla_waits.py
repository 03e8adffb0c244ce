"""Issue 15 item 1: a clock cannot stay paused for good. Every step that gives the complaint
back to the team ends a wait, agents can record a customer's reply, and a wait longer than
the maximum resumes the paused clocks by itself. Expected instants are counted by hand on
the office calendar (Mon-Fri 09:00-12:00 and 13:00-18:00 UTC, 8 business hours a day)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.complaints import fold as complaint_fold
from services.complaints.business_time import Calendar
from services.complaints.domain import Complaint, Rejected, decide
from services.complaints.settings import ComplaintsSettings
from services.complaints.sla import (
    ClockEvent,
    ClockStatus,
    EventKind,
    Metric,
    Priority,
    SlaConfig,
    SlaEventKind,
    SlaState,
    Tier,
    apply_event,
    clock_views,
    due_sla_events,
    expired_waits,
    fold_events,
    mark_published,
    schedule,
    state_from_json,
    state_to_json,
    stopped_key,
)
from shared.events import (
    ComplaintCustomerReplied,
    Event,
    SlaWaitExpired,
    ValidationContext,
    validate_event,
)
from tests.helpers import event

CONTEXT = ValidationContext(future_tolerance=timedelta(days=3650))

OFFICE = SlaConfig(calendar=Calendar.from_hours("UTC", "09:00-12:00,13:00-18:00"))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """An instant in January 2026: the 5th is a Monday, the 10th and 11th a weekend."""
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def step(name: str, kind: EventKind, when: datetime) -> ClockEvent:
    priority = Priority.MEDIUM if kind is EventKind.OPENED else None
    tier = Tier.DEVELOPING if kind is EventKind.OPENED else None
    return ClockEvent(name, kind, when, priority, tier)


# Medium priority, standard tier: first response 4h, next response 8h, resolution 24h.
OPENED = step("e0", EventKind.OPENED, at(5, 9))
RESPONDED = step("e1", EventKind.RESPONDED, at(5, 10))
WAITING = step("e2", EventKind.WAITING, at(5, 11))  # resolution has counted 2h


def fold(*events: ClockEvent, config: SlaConfig = OFFICE) -> SlaState:
    return fold_events("c1", events, config)


def test_an_escalation_while_waiting_resumes_the_resolution_clock() -> None:
    escalated = step("e3", EventKind.ESCALATED, at(6, 10))
    state = fold(OPENED, RESPONDED, WAITING, escalated)
    # 22h left from Tuesday 10:00: Tue 7h (15 left), Wed 8h (7 left), Thu 09-12 3h, 13-17 4h.
    resolution = clock_views(state, at(5, 9) + timedelta(days=30), OFFICE)[Metric.RESOLUTION]
    assert resolution.status is ClockStatus.BREACHED
    assert resolution.breached_at == at(8, 17)
    assert [(s.start, s.end) for s in resolution.segments] == [
        (at(5, 9), at(5, 11)),
        (at(6, 10), None),
    ]


def test_a_solution_proposed_while_waiting_resumes_resolution_and_meets_the_next_response() -> None:
    state = fold(
        OPENED,
        RESPONDED,
        step("e2", EventKind.CUSTOMER_REPLIED, at(5, 10, 30)),  # next response owed
        step("e3", EventKind.WAITING, at(5, 11)),
        step("e4", EventKind.SOLUTION_PROPOSED, at(6, 9)),
    )
    views = clock_views(state, at(6, 12), OFFICE)
    # The wait ended at Tuesday 09:00: 2h before the wait and 3h since.
    assert views[Metric.RESOLUTION].status is ClockStatus.RUNNING
    assert views[Metric.RESOLUTION].elapsed == timedelta(hours=5)
    # 22h left from Tuesday 09:00: Tue 8h, Wed 8h, Thu 09-12 3h, 13-16 3h.
    assert views[Metric.RESOLUTION].due_at == at(8, 16)
    # The proposal is the reply the customer was owed: met after the 30 minutes before the wait.
    assert views[Metric.NEXT_RESPONSE].status is ClockStatus.MET
    assert views[Metric.NEXT_RESPONSE].elapsed == timedelta(minutes=30)


def test_an_agent_reminder_while_waiting_keeps_waiting_until_the_maximum() -> None:
    state = fold(OPENED, RESPONDED, WAITING, step("e3", EventKind.RESPONDED, at(6, 10)))
    assert clock_views(state, at(8, 10), OFFICE)[Metric.RESOLUTION].status is ClockStatus.PAUSED
    assert expired_waits(state, at(8, 10), OFFICE) == ()


def test_a_wait_longer_than_the_maximum_resumes_the_clocks_by_itself() -> None:
    state = fold(OPENED, RESPONDED, WAITING)  # no event after the wait at all
    assert OFFICE.max_wait == timedelta(hours=72)  # the documented default
    # 72 wall-clock hours after Monday 11:00: Thursday 11:00.
    before = clock_views(state, at(8, 10, 59), OFFICE)[Metric.RESOLUTION]
    assert (before.status, before.elapsed) == (ClockStatus.PAUSED, timedelta(hours=2))
    after = clock_views(state, at(8, 12), OFFICE)[Metric.RESOLUTION]
    assert (after.status, after.elapsed) == (ClockStatus.RUNNING, timedelta(hours=3))
    assert after.segments[-1].start == at(8, 11)
    assert expired_waits(state, at(8, 12), OFFICE) == ((at(5, 11), at(8, 11)),)
    # 22h left from Thursday 11:00: Thu 1h + 5h (16 left), Fri 8h (8 left), Mon 12th 8h.
    assert after.due_at == at(12, 18)
    # Warning at 80% (19.2h): 17.2h after the expiry, Mon 12th 09:00 + 3h + 12 min.
    due = due_sla_events(state, at(20, 9), OFFICE)
    resolution = [(e.kind, e.at) for e in due if e.metric is Metric.RESOLUTION]
    assert resolution == [
        (SlaEventKind.SLA_WAIT_EXPIRED, at(8, 11)),  # says so, at the expiry
        (SlaEventKind.SLA_WARNING, at(12, 13, 12)),
        (SlaEventKind.SLA_BREACHED, at(12, 18)),
        (SlaEventKind.ESCALATED_AUTO, at(12, 18)),
    ]


def test_the_queue_schedule_of_a_waiting_complaint_counts_the_expiry() -> None:
    state = fold(OPENED, RESPONDED, WAITING)
    met = state.current(Metric.FIRST_RESPONSE)
    assert met is not None  # its clock-stopped event is published: not owed any more
    state = mark_published(state, [(stopped_key("c1", met), "sla_clock_stopped", at(5, 10))])
    plan = schedule(state, at(6, 9), OFFICE)
    assert plan.next_due_at == at(12, 18)  # not None: the complaint does not sort last
    assert plan.breached is False
    assert plan.next_sla_at == at(8, 11)  # the sweeper wakes at the expiry to say so
    after = mark_published(
        state, [(e.key, e.kind, e.at) for e in due_sla_events(state, at(8, 12), OFFICE)]
    )
    assert schedule(after, at(8, 12), OFFICE).next_sla_at == at(12, 13, 12)  # then the warning


def test_the_maximum_wait_is_configurable() -> None:
    one_day = SlaConfig(calendar=OFFICE.calendar, max_wait=timedelta(hours=24))
    state = fold(OPENED, RESPONDED, WAITING, config=one_day)
    assert expired_waits(state, at(7, 9), one_day) == ((at(5, 11), at(6, 11)),)
    with pytest.raises(ValueError, match="max_wait"):
        SlaConfig(max_wait=timedelta(0))


def test_the_maximum_wait_setting_has_a_documented_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ComplaintsSettings().sla_config().max_wait == timedelta(hours=72)
    monkeypatch.setenv("SLA_MAX_WAIT_HOURS", "36")
    assert ComplaintsSettings().sla_config().max_wait == timedelta(hours=36)


def test_a_reply_after_the_expiry_starts_a_next_response_and_keeps_the_resolution_running() -> None:
    state = fold(OPENED, RESPONDED, WAITING)
    state = apply_event(state, step("e3", EventKind.CUSTOMER_REPLIED, at(9, 10)), OFFICE)
    assert state.waits_expired == ((at(5, 11), at(8, 11)),)  # folded into the state
    views = clock_views(state, at(9, 11), OFFICE)
    # Thursday 11:00-12:00 and 13:00-18:00, Friday 09:00-11:00, plus 2h before the wait.
    assert views[Metric.RESOLUTION].elapsed == timedelta(hours=2 + 6 + 2)
    assert [s.start for s in views[Metric.RESOLUTION].segments] == [at(5, 9), at(8, 11)]
    assert views[Metric.NEXT_RESPONSE].status is ClockStatus.RUNNING
    # A new wait after the expiry is a new wait, with its own maximum.
    state = apply_event(state, step("e4", EventKind.WAITING, at(9, 12)), OFFICE)
    assert clock_views(state, at(12, 9), OFFICE)[Metric.RESOLUTION].status is ClockStatus.PAUSED
    assert expired_waits(state, at(12, 13), OFFICE)[-1] == (at(9, 12), at(12, 12))


def test_a_repeated_wait_does_not_extend_the_wait() -> None:
    state = fold(OPENED, RESPONDED, WAITING, step("e3", EventKind.WAITING, at(7, 11)))
    assert expired_waits(state, at(8, 12), OFFICE) == ((at(5, 11), at(8, 11)),)


def test_states_stored_before_the_wait_fields_still_load_and_expire() -> None:
    state = fold(OPENED, RESPONDED, WAITING)
    assert state_from_json("c1", state_to_json(state)) == state
    old_format = orjson.dumps(orjson.loads(state_to_json(state))[:9])  # the nine first fields
    loaded = state_from_json("c1", old_format)
    assert loaded.waiting_since == at(5, 11)  # from the clocks the wait paused
    assert expired_waits(loaded, at(8, 12), OFFICE) == ((at(5, 11), at(8, 11)),)


def test_agents_can_record_a_customer_reply() -> None:
    reply = ComplaintCustomerReplied(complaint_id="c1")
    waiting = Complaint("c1", "cust", status="waiting")
    assert decide(waiting, "customer_reply", reply) == "crm.complaint.customer_replied"
    with pytest.raises(Rejected, match="reopening"):
        decide(Complaint("c1", "cust", status="resolved"), "customer_reply", reply)


def test_the_sweeper_publishes_the_expiry_of_each_clock_the_wait_paused() -> None:
    opened = complaint_event(
        "opened", at(5, 9), "k0", channel="email", category="delivery", priority="medium"
    )
    steps = [
        opened,
        complaint_event("responded", at(5, 10), "k1"),
        complaint_event("customer_replied", at(5, 10, 30), "k2"),  # a next response is owed
        complaint_event("waiting", at(5, 11), "k3"),
    ]
    folded = complaint_fold.derive(complaint_fold.new_folded("c1", "cust-1"), steps, [], OFFICE)
    found = complaint_fold.sla_events_due(folded.complaint, folded.clocks, at(8, 12), OFFICE)
    expired = [e for e in found if e.type == "crm.complaint.sla_wait_expired"]
    assert [(e.data.metric, e.time, e.data.waiting_since) for e in expired] == [
        ("next_response", at(8, 11), at(5, 11)),
        ("resolution", at(8, 11), at(5, 11)),
    ]
    assert all(isinstance(e.data, SlaWaitExpired) for e in expired)
    again = complaint_fold.mark_published(folded.clocks, found)
    assert complaint_fold.sla_events_due(folded.complaint, again, at(8, 12), OFFICE) == []


def complaint_event(kind: str, when: datetime, event_id: str, **data: Any) -> Event:
    raw = event(
        f"crm.complaint.{kind}",
        "cust-1",
        {"complaint_id": "c1", **data},
        time=when,
        event_id=event_id,
    )
    return validate_event(raw, CONTEXT)
