"""One complaint's folded state, pure: the workflow (`domain.py`) and the SLA clocks
(`sla.py`) after its events and its customer's tier changes, in (time, id) order.

The state is kept between batches. Steps that come after the last one applied (the common
case: a consumer reads a complaint's events in the order they happened) are applied to it;
a step that sorts before it (a late event) makes the caller re-derive the complaint from
its whole history instead. Both give the same state: applying in order is exactly what the
full fold does after its sort.

The SLA events a state owes (warnings, breaches, escalations, clocks stopped) are built here
too; the sweeper emits them (`projection.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.complaints import sla
from services.complaints.domain import (
    Complaint,
    apply,
    complaint_id_of,
    is_complaint_data,
    sla_event,
    tier_event,
)
from shared.events import (
    Event,
    SlaClockStopped,
    SlaEscalation,
    SlaEventData,
    SlaWaitExpired,
    new_event,
)

SOURCE = "crm/complaints"

Position = tuple[datetime, str]


@dataclass(frozen=True)
class TierChange:
    """A customer's tier change (scoring's derived event): it retargets the SLA clocks."""

    customer_id: str
    time: datetime
    event_id: str
    tier: str

    @property
    def step_id(self) -> str:
        return f"tier:{self.event_id}"


Step = Event | TierChange


def position_of(step: Step) -> Position:
    """Where a step sorts in a complaint's fold."""
    if isinstance(step, TierChange):
        return (step.time, step.step_id)
    return (step.time, step.id)


@dataclass(frozen=True)
class Folded:
    """A complaint after the steps applied so far; `last` is the latest of them."""

    complaint: Complaint
    clocks: sla.SlaState
    last: Position | None = None


def new_folded(
    complaint_id: str,
    customer_id: str,
    emitted: Iterable[str] = (),
    breaches: Iterable[tuple[str, datetime]] = (),
) -> Folded:
    """Nothing applied yet; `emitted` keys SLA events already published and `breaches` the
    (key, instant) of the breaches among them (kept on rebuild: a published breach stands)."""
    clocks = sla.new_state(complaint_id, frozenset(emitted), frozenset(breaches))
    return Folded(sla.copy_with(_BLANK, complaint_id=complaint_id, customer_id=customer_id), clocks)


_BLANK = Complaint("", "")  # copied from: faster than a frozen dataclass's __init__


def derive(
    start: Folded, events: Iterable[Event], tiers: Iterable[TierChange], config: sla.SlaConfig
) -> Folded:
    """The full fold: every step of the complaint, sorted, from `start` (a `new_folded`)."""
    steps: list[Step] = [*events, *tiers]
    steps.sort(key=position_of)
    return _apply_sorted(start, steps, config)


def apply_in_order(
    folded: Folded, events: Sequence[Event], tiers: Sequence[TierChange], config: sla.SlaConfig
) -> Folded | None:
    """`folded` with new steps applied, or None when one sorts before the last step applied
    (the complaint must then be re-derived from its history)."""
    steps: list[Step] = [*events, *tiers]
    steps.sort(key=position_of)
    if steps and folded.last is not None and position_of(steps[0]) <= folded.last:
        return None
    return _apply_sorted(folded, steps, config)


def _apply_sorted(folded: Folded, steps: list[Step], config: sla.SlaConfig) -> Folded:
    if not steps:
        return folded
    complaint, clocks = folded.complaint, folded.clocks
    for step in steps:
        clock_step: sla.ClockEvent | None
        if isinstance(step, TierChange):
            clock_step = tier_event(step.step_id, step.time, step.tier)
        else:
            complaint = apply(complaint, step)
            clock_step = sla_event(step)
        if clock_step is not None:
            clocks = sla.apply_event(clocks, clock_step, config)
    return Folded(complaint, clocks, position_of(steps[-1]))


# ---- the SLA events a state owes ----------------------------------------------------------


def sla_events_due(
    complaint: Complaint, state: sla.SlaState, now: datetime, config: sla.SlaConfig
) -> list[Event]:
    """Warnings, breaches and escalations due by now, and clocks that stopped, as events (ids
    are the deterministic keys, so a replay or a second instance emits nothing twice)."""
    found = [_sla_event(complaint, state, e) for e in sla.due_sla_events(state, now, config)]
    for clock in sla.with_published_breaches(state).clocks:
        key = sla.stopped_key(complaint.complaint_id, clock)
        if clock.phase is sla.Phase.STOPPED and key not in state.emitted:
            found.append(_stopped_event(complaint, state, clock, key))
    return found


def emitted_key(event: Event) -> str:
    return event.id.removeprefix("sla:")


def mark_published(state: sla.SlaState, events: Iterable[Event]) -> sla.SlaState:
    """The state with the SLA events of `sla_events_due` recorded as published."""
    kind = "crm.complaint."
    published = [(emitted_key(e), e.type.removeprefix(kind), e.time) for e in events]
    return sla.mark_published(state, published)


def _common(
    complaint: Complaint, state: sla.SlaState, metric: str, cycle: int, target: timedelta
) -> dict[str, Any]:
    return {
        "complaint_id": complaint.complaint_id,
        "metric": metric,
        "cycle": cycle,
        "target_seconds": target.total_seconds(),
        "priority": state.priority.value,
        "tier": str(state.tier),  # a tier or "unknown"
        "category": complaint.category,
        "channel": complaint.channel,
    }


def _sla_event(complaint: Complaint, state: sla.SlaState, due: sla.SlaEvent) -> Event:
    common = _common(complaint, state, due.metric.value, due.cycle, due.target)
    data: SlaEventData
    if due.kind is sla.SlaEventKind.ESCALATED_AUTO:
        data = SlaEscalation(**common, level=due.level or 1)
    elif due.kind is sla.SlaEventKind.SLA_WAIT_EXPIRED:
        data = SlaWaitExpired(**common, waiting_since=due.waiting_since)
    else:
        data = SlaEventData(**common)
    return new_event(
        f"crm.complaint.{due.kind.value}",
        complaint.customer_id,
        data,
        source=SOURCE,
        event_id=f"sla:{due.key}",
        time=due.at,
    )


def _stopped_event(complaint: Complaint, state: sla.SlaState, clock: sla.Clock, key: str) -> Event:
    stopped_at = clock.segments[-1].end or clock.segments[-1].start
    data = SlaClockStopped(
        **_common(complaint, state, clock.metric.value, clock.cycle, clock.target),
        outcome="breached" if clock.breached_at else "met",
        elapsed_seconds=clock.accumulated.total_seconds(),
    )
    return new_event(
        "crm.complaint.sla_clock_stopped",
        complaint.customer_id,
        data,
        source=SOURCE,
        event_id=f"sla:{key}",
        time=stopped_at,
    )


def complaint_of(event: Event) -> str | None:
    """The complaint an event is a step of: the complaint topic's events and the service's
    own automatic escalations, which come back from crm.derived."""
    kind = type(event.data)
    if kind not in _STEP_TYPES:
        own_escalation = issubclass(kind, SlaEscalation)
        derived = issubclass(kind, SlaEventData) and not own_escalation  # warnings, breaches
        _STEP_TYPES[kind] = is_complaint_data(kind) and not derived
    return complaint_id_of(event) if _STEP_TYPES[kind] else None


# Whether events with data of a type are complaint steps: the complaint topic's types, and
# SlaEscalation of the derived ones (by type: cheaper than the topic, which parses the type).
_STEP_TYPES: dict[type, bool] = {}
