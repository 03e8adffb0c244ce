"""Issue 15 item 3: a reply that arrives after its breach was published, with a time before
the deadline, leaves breach and escalation consistent: the published breach stands (the
clock says breached, its stopped event too) and nothing is emitted twice. Instants are
counted by hand on the office calendar (Mon-Fri 09:00-12:00 and 13:00-18:00 UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.complaints import fold
from services.complaints.business_time import Calendar
from services.complaints.domain import derive
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
    event_key,
    fold_events,
    mark_emitted,
    state_from_json,
    state_to_json,
)
from shared.events import Event, SlaClockStopped, ValidationContext, validate_event
from tests.helpers import event

OFFICE = SlaConfig(calendar=Calendar.from_hours("UTC", "09:00-12:00,13:00-18:00"))
CONTEXT = ValidationContext(future_tolerance=timedelta(days=3650))


def at(hour: int, minute: int = 0) -> datetime:
    """Monday 5 January 2026."""
    return datetime(2026, 1, 5, hour, minute, tzinfo=UTC)


# Medium priority, standard tier: first response within 4 business hours of 09:00, i.e.
# 09:00-12:00 and 13:00-14:00: due at 14:00; the warning at 80% (3h12) at 13:12.
DEADLINE, WARNING = at(14), at(13, 12)
OPENED = ClockEvent("e0", EventKind.OPENED, at(9), Priority.MEDIUM, Tier.DEVELOPING)
LATE_REPLY = ClockEvent("e1", EventKind.RESPONDED, at(13, 30))  # before the deadline
BREACH_KEY = event_key("c1", Metric.FIRST_RESPONSE, 0, SlaEventKind.SLA_BREACHED)


def swept_at_three() -> SlaState:
    """The complaint opened, and the sweeper's pass at 15:00 published what fell due."""
    state = fold_events("c1", [OPENED], OFFICE)
    published = due_sla_events(state, at(15), OFFICE)
    assert [(e.kind, e.at) for e in published] == [
        (SlaEventKind.SLA_WARNING, WARNING),
        (SlaEventKind.SLA_BREACHED, DEADLINE),
        (SlaEventKind.ESCALATED_AUTO, DEADLINE),
    ]
    return mark_emitted(state, published)


def test_a_published_breach_stands_when_a_late_reply_is_before_the_deadline() -> None:
    state = apply_event(swept_at_three(), LATE_REPLY, OFFICE)
    first = clock_views(state, at(16), OFFICE)[Metric.FIRST_RESPONSE]
    assert first.status is ClockStatus.BREACHED
    assert first.breached_at == DEADLINE
    assert first.elapsed == timedelta(hours=3, minutes=30)  # 09-12 and 13:00-13:30: the truth
    assert first.remaining == timedelta(0)
    assert due_sla_events(state, at(16), OFFICE) == ()  # no second breach, no second escalation


def test_the_same_breach_fed_back_as_an_event_gives_the_same_clock() -> None:
    feedback = ClockEvent(BREACH_KEY, EventKind.SLA_BREACHED, DEADLINE)
    refolded = fold_events("c1", [feedback, LATE_REPLY, OPENED], OFFICE)  # any order
    first = clock_views(refolded, at(16), OFFICE)[Metric.FIRST_RESPONSE]
    assert (first.status, first.breached_at) == (ClockStatus.BREACHED, DEADLINE)
    assert state_from_json("c1", state_to_json(refolded)) == refolded  # kept between batches


def test_a_breach_not_yet_published_never_happens() -> None:
    state = fold_events("c1", [OPENED, LATE_REPLY], OFFICE)
    first = clock_views(state, at(16), OFFICE)[Metric.FIRST_RESPONSE]
    assert (first.status, first.breached_at) == (ClockStatus.MET, None)
    assert [e.kind for e in due_sla_events(state, at(16), OFFICE)] == [SlaEventKind.SLA_WARNING]


def complaint_event(kind: str, when: datetime, event_id: str, **data: Any) -> Event:
    raw = event(
        f"crm.complaint.{kind}",
        "cust-1",
        {"complaint_id": "c1", **data},
        time=when,
        event_id=event_id,
    )
    return validate_event(raw, CONTEXT)


def test_an_escalated_complaint_and_its_clock_agree_after_the_late_reply() -> None:
    """The projection's path: the sweeper's events are recorded as published, the automatic
    escalation comes back as a step, then the late reply makes the complaint re-derived."""
    opened = complaint_event(
        "opened", at(9), "k0", channel="email", category="delivery", priority="medium"
    )
    start = fold.new_folded("c1", "cust-1")
    before = fold.derive(start, [opened], [], OFFICE)
    swept = fold.sla_events_due(before.complaint, before.clocks, at(15), OFFICE)
    escalation = next(e for e in swept if e.type == "crm.complaint.escalated_auto")
    published = fold.mark_published(before.clocks, swept)
    assert published.published_breaches == {(BREACH_KEY, DEADLINE)}

    reply = complaint_event("responded", at(13, 30), "k1")
    again = fold.new_folded("c1", "cust-1", published.emitted, published.published_breaches)
    after = fold.derive(again, [opened, escalation, reply], [], OFFICE)
    assert (after.complaint.status, after.complaint.escalation_level) == ("escalated", 1)
    stopped = [
        e.data
        for e in fold.sla_events_due(after.complaint, after.clocks, at(16), OFFICE)
        if isinstance(e.data, SlaClockStopped)
    ]
    assert [(s.metric, s.outcome, s.elapsed_seconds) for s in stopped] == [
        ("first_response", "breached", 3.5 * 3600)
    ]
    assert derive("c1", "cust-1", [opened, escalation, reply]).escalation_level == 1
