"""Complaints' fold, pure: a complaint's state is the fold of its events ordered by time.

Ordering by (time, event id) rather than arrival makes a late event re-derive the state it
belongs to, and makes the result the same whatever order the broker delivered in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from shared.events import (
    ComplaintClosed,
    ComplaintEscalated,
    ComplaintEvent,
    ComplaintFeedback,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintResponded,
    ComplaintWaiting,
    Event,
)


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


def apply(state: Complaint, event: Event) -> Complaint:
    data, at = event.data, event.time
    match data:
        case ComplaintOpened():
            return replace(
                state,
                status="opened",
                channel=data.channel,
                category=data.category,
                priority=data.priority,
                product=data.product,
                opened_at=at,
            )
        case ComplaintResponded():
            first = state.first_response_at or at
            status = "acknowledged" if state.status in ("opened", "waiting") else state.status
            return replace(state, status=status, first_response_at=first)
        case ComplaintWaiting():
            return replace(state, status="waiting")
        case ComplaintEscalated():
            return replace(state, status="escalated", escalation_level=data.level)
        case ComplaintResolved():
            return replace(state, status="resolved", resolved_at=at)
        case ComplaintReopened():
            return replace(state, status="reopened", resolved_at=None, closed_at=None)
        case ComplaintClosed():
            return replace(state, status="closed", closed_at=at)
        case ComplaintFeedback():
            return replace(state, feedback_score=data.score)
    return state


def derive(complaint_id: str, customer_id: str, events: Iterable[Event]) -> Complaint:
    ordered = sorted(events, key=lambda e: (e.time, e.id))
    state = Complaint(complaint_id, customer_id)
    for event in ordered:
        state = apply(state, event)
    return state


def complaint_id_of(event: Event) -> str | None:
    return event.data.complaint_id if isinstance(event.data, ComplaintEvent) else None
