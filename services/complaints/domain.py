"""Complaints' workflow, pure: a complaint's state is the fold of its events ordered by time,
and an agent's command is checked against that state before it becomes an event.

Ordering by (time, event id) rather than arrival makes a late event re-derive the state it
belongs to, and makes the result the same whatever order the broker delivered in.

The states follow the seven steps of complaint handling: opened -> acknowledged
(first response: listen, thank, apologise) -> investigating (details collected) -> solution
proposed (with a promised date) -> resolved -> closed after the customer's feedback; besides
them waiting (on the customer: pauses the SLA clocks), escalated (level 1..n) and reopened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from services.complaints import sla
from services.complaints.sla import copy_with
from shared.events import (
    ComplaintClosed,
    ComplaintCustomerReplied,
    ComplaintEscalated,
    ComplaintEvent,
    ComplaintFeedback,
    ComplaintOpened,
    ComplaintPriorityChanged,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintResponded,
    ComplaintSolutionProposed,
    ComplaintWaiting,
    Event,
    EventData,
    SlaEscalation,
)

ACTIVE = frozenset(
    {
        "opened",
        "acknowledged",
        "investigating",
        "waiting",
        "solution_proposed",
        "escalated",
        "reopened",
    }
)
DONE = frozenset({"resolved", "closed"})


@dataclass(frozen=True)
class Complaint:
    complaint_id: str
    customer_id: str
    status: str = "opened"
    channel: str | None = None
    category: str | None = None
    priority: str | None = None
    product: str | None = None
    opened_at: datetime | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    escalation_level: int = 0
    feedback_score: int | None = None
    promised_at: datetime | None = None
    reopen_count: int = 0
    before_waiting: str | None = None  # the status a customer's reply returns to


def apply(state: Complaint, event: Event) -> Complaint:
    step = _step_for(type(event.data))
    return state if step is None else step(state, event.data, event.time)


Step = Callable[[Complaint, Any, datetime], Complaint]


def _opened(state: Complaint, data: ComplaintOpened, at: datetime) -> Complaint:
    return copy_with(
        state,
        status="opened",
        channel=data.channel,
        category=data.category,
        priority=data.priority,
        product=data.product,
        opened_at=at,
    )


def _waiting(state: Complaint, data: ComplaintWaiting, at: datetime) -> Complaint:
    if state.status in DONE or state.status == "waiting":
        return state
    return copy_with(state, status="waiting", before_waiting=state.status)


def _customer_replied(state: Complaint, data: ComplaintCustomerReplied, at: datetime) -> Complaint:
    if state.status != "waiting":
        return state
    return copy_with(state, status="investigating", before_waiting=None)


def _escalated(
    state: Complaint, data: ComplaintEscalated | SlaEscalation, at: datetime
) -> Complaint:
    level = max(state.escalation_level, data.level)
    return _active(state, "escalated", escalation_level=level)


def _reopened(state: Complaint, data: ComplaintReopened, at: datetime) -> Complaint:
    return copy_with(
        state,
        status="reopened",
        resolved_at=None,
        closed_at=None,
        reopen_count=state.reopen_count + 1,
    )


# Event data type -> its effect (matched as isinstance, in this order, once per type: checks
# against pydantic models go through ABCMeta and cost more than the step itself).
_STEPS: tuple[tuple[type[EventData], Step], ...] = (
    (ComplaintOpened, _opened),
    (ComplaintResponded, lambda state, data, at: _responded(state, at)),
    (ComplaintWaiting, _waiting),
    (ComplaintCustomerReplied, _customer_replied),
    (
        ComplaintSolutionProposed,
        lambda state, data, at: _active(state, "solution_proposed", promised_at=data.promised_at),
    ),
    (ComplaintEscalated, _escalated),
    (SlaEscalation, _escalated),
    (
        ComplaintResolved,
        lambda state, data, at: copy_with(
            state, status="resolved", resolved_at=at, before_waiting=None
        ),
    ),
    (ComplaintReopened, _reopened),
    (ComplaintClosed, lambda state, data, at: copy_with(state, status="closed", closed_at=at)),
    (ComplaintFeedback, lambda state, data, at: copy_with(state, feedback_score=data.score)),
    (ComplaintPriorityChanged, lambda state, data, at: copy_with(state, priority=data.priority)),
)
_STEP_OF_TYPE: dict[type, Step | None] = {}


def _step_for(kind: type) -> Step | None:
    if kind not in _STEP_OF_TYPE:
        _STEP_OF_TYPE[kind] = next((s for t, s in _STEPS if issubclass(kind, t)), None)
    return _STEP_OF_TYPE[kind]


def _responded(state: Complaint, at: datetime) -> Complaint:
    first = state.first_response_at or at
    if state.status == "opened":
        return copy_with(state, status="acknowledged", first_response_at=first)
    if state.status in ("acknowledged", "reopened"):
        return copy_with(state, status="investigating", first_response_at=first)
    return copy_with(state, first_response_at=first)  # waiting stays waiting: not the customer


def _active(state: Complaint, status: str, **changes: Any) -> Complaint:
    """A step that applies only to an open complaint (a late event after closing is kept in
    the history but does not reopen it)."""
    if state.status in DONE:
        return copy_with(state, **{k: v for k, v in changes.items() if k != "status"})
    return copy_with(state, status=status, before_waiting=None, **changes)


def derive(complaint_id: str, customer_id: str, events: Iterable[Event]) -> Complaint:
    state = Complaint(complaint_id, customer_id)
    for event in sorted(events, key=lambda e: (e.time, e.id)):
        state = apply(state, event)
    return state


def complaint_id_of(event: Event) -> str | None:
    data = event.data
    return cast(ComplaintEvent, data).complaint_id if is_complaint_data(type(data)) else None


_COMPLAINT_TYPES: dict[type, bool] = {}


def is_complaint_data(kind: type) -> bool:
    """issubclass(kind, ComplaintEvent), remembered per type (ABCMeta checks are slow)."""
    if kind not in _COMPLAINT_TYPES:
        _COMPLAINT_TYPES[kind] = issubclass(kind, ComplaintEvent)
    return _COMPLAINT_TYPES[kind]


# ---- agent commands -----------------------------------------------------------------------


class Rejected(Exception):
    """A command the complaint's current state does not allow (HTTP 409)."""


COMMANDS: dict[str, tuple[str, frozenset[str]]] = {
    # command: (event type, states it is allowed in)
    "respond": ("crm.complaint.responded", ACTIVE),
    "wait": ("crm.complaint.waiting", ACTIVE - {"opened", "waiting"}),
    # An agent records that the customer answered (phone, letter): ends a wait, and once the
    # first response is given the customer is owed a next response.
    "customer_reply": ("crm.complaint.customer_replied", ACTIVE),
    "propose": ("crm.complaint.solution_proposed", ACTIVE - {"opened"}),
    "escalate": ("crm.complaint.escalated", ACTIVE),
    "resolve": ("crm.complaint.resolved", ACTIVE),
    "reopen": ("crm.complaint.reopened", DONE),
    "close": ("crm.complaint.closed", frozenset({"resolved"})),
    "feedback": ("crm.complaint.feedback", DONE),
}

_WHY = {
    "wait": "a complaint waits on the customer only after a first response",
    "propose": "a solution is proposed after the first response",
    "close": "a complaint is closed after it is resolved",
    "reopen": "only a resolved or closed complaint can be reopened",
    "customer_reply": "a customer's answer to a resolved complaint is recorded by reopening it",
    "feedback": "feedback is collected once the complaint is resolved",
}


def decide(state: Complaint, command: str, data: EventData) -> str:
    """The event type the command becomes, or Rejected with the reason."""
    event_type, allowed = COMMANDS[command]
    if state.status not in allowed:
        reason = _WHY.get(command, f"the complaint is {state.status}")
        raise Rejected(f"cannot {command} a complaint that is {state.status}: {reason}")
    if isinstance(data, ComplaintEscalated) and data.level <= state.escalation_level:
        raise Rejected(f"already at escalation level {state.escalation_level}")
    return event_type


# ---- the SLA fold's view of the events ----------------------------------------------------

_SLA_KINDS: dict[type[EventData], sla.EventKind] = {
    ComplaintOpened: sla.EventKind.OPENED,
    ComplaintResponded: sla.EventKind.RESPONDED,
    ComplaintCustomerReplied: sla.EventKind.CUSTOMER_REPLIED,
    ComplaintWaiting: sla.EventKind.WAITING,
    ComplaintSolutionProposed: sla.EventKind.SOLUTION_PROPOSED,
    ComplaintEscalated: sla.EventKind.ESCALATED,
    ComplaintResolved: sla.EventKind.RESOLVED,
    ComplaintReopened: sla.EventKind.REOPENED,
    ComplaintClosed: sla.EventKind.CLOSED,
    ComplaintPriorityChanged: sla.EventKind.PRIORITY_CHANGED,
}


def sla_event(event: Event) -> sla.ComplaintEvent | None:
    """The SLA fold's event for a complaint event (None for events without an SLA effect)."""
    kind = _SLA_KINDS.get(type(event.data))
    if kind is None:
        return None
    data = event.data
    priority = getattr(data, "priority", None)
    level = cast(ComplaintEscalated, data).level if kind is sla.EventKind.ESCALATED else None
    return sla.ComplaintEvent(event.id, kind, event.time, priority=priority, level=level)


def tier_event(event_id: str, at: datetime, tier: str) -> sla.ComplaintEvent:
    known = tier if tier in sla.Tier.__members__.values() else sla.Tier.UNKNOWN
    return sla.ComplaintEvent(event_id, sla.EventKind.TIER_CHANGED, at, tier=sla.Tier(known))
