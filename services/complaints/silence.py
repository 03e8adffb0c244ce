"""Silence after a complaint: a churn signal. Pure.

"A relationship is going downhill when the customer stops complaining": after a complaint
is resolved, a customer who neither buys nor contacts the company for ``silent_days`` days
(default 30) is silent, and the service says so once with a derived event.

What breaks the silence, from the customer's side only (the team's own outbound contacts
and the complaint workflow's steps do not): a completed purchase, an inbound interaction,
a survey answer, a new complaint, a reply to the team (customer_replied) or feedback on a
complaint's handling. Only activity after the resolution and up to the end of the window
counts; a customer who comes back later was still silent for the whole window.

Each resolution opens a window. A later resolution (of the same or another complaint)
replaces the windows still running when it comes, so one silence gives one signal; a window
that had ended silent before it is still signalled. A reopen of the complaint ends its
window (the complaint is not resolved any more); so does the customer's erasure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.events import (
    ERASED_TYPE,
    ComplaintCustomerReplied,
    ComplaintFeedback,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintResolved,
    Event,
    InteractionLogged,
    PurchaseCompleted,
    SurveyCsat,
    SurveyNps,
)

DEFAULT_SILENT_DAYS = 30

# Events that are the customer's own doing: any of them breaks a silence.
_CUSTOMER_ACTS = (
    PurchaseCompleted,
    SurveyNps,
    SurveyCsat,
    ComplaintOpened,
    ComplaintCustomerReplied,
    ComplaintFeedback,
)


@dataclass(frozen=True)
class Watch:
    """The window after one resolution, while it may still end in silence."""

    complaint_id: str
    resolved_at: datetime
    first_activity_after: datetime | None = None  # the first act after the resolution
    last_activity_before: datetime | None = None  # the last act up to the resolution

    def due_at(self, silent_days: int) -> datetime:
        return self.resolved_at + timedelta(days=silent_days)


@dataclass(frozen=True)
class CustomerSilence:
    """What the rule keeps per customer: the time of their latest act, their latest
    resolution, and the watches still open (neither broken, ended nor signalled)."""

    last_activity: datetime | None = None
    latest_resolution: datetime | None = None
    watches: tuple[Watch, ...] = ()


def is_activity(event: Event) -> bool:
    if isinstance(event.data, InteractionLogged):
        return event.data.direction == "inbound"
    return isinstance(event.data, _CUSTOMER_ACTS)


def fold(state: CustomerSilence, events: Iterable[Event], silent_days: int) -> CustomerSilence:
    """Apply one customer's events (in any order across calls; time order within one)."""
    for event in sorted(events, key=lambda e: (e.time, e.id)):
        state = _apply(state, event, silent_days)
    return state


def _apply(state: CustomerSilence, event: Event, silent_days: int) -> CustomerSilence:
    if event.type == ERASED_TYPE:
        kept = tuple(w for w in state.watches if w.resolved_at > event.time)
        return replace(state, watches=kept)
    if isinstance(event.data, ComplaintResolved):
        return _resolved(state, event.data.complaint_id, event.time, silent_days)
    if isinstance(event.data, ComplaintReopened):
        reopened = event.data.complaint_id
        kept = tuple(
            w
            for w in state.watches
            if not (w.complaint_id == reopened and w.resolved_at < event.time)
        )
        state = replace(state, watches=kept)
    if is_activity(event):
        state = _acted(state, event.time, silent_days)
    return state


def _resolved(
    state: CustomerSilence, complaint_id: str, at: datetime, silent_days: int
) -> CustomerSilence:
    """A new window. It replaces the windows still running at its start (one silence, one
    signal); a window that had ended by then is judged on its own. A resolution older than
    the latest one (arriving late) changes nothing."""
    if state.latest_resolution is not None and at <= state.latest_resolution:
        return state
    last = state.last_activity
    # Acts folded before this resolution arrived may lie after it (topics are not in step).
    after = last if last is not None and last > at else None
    before = last if last is not None and last <= at else None
    ended = tuple(w for w in state.watches if w.due_at(silent_days) <= at)
    watch = Watch(complaint_id, at, after, before)
    return CustomerSilence(last, at, (*ended, *_unbroken([watch], silent_days)))


def _acted(state: CustomerSilence, at: datetime, silent_days: int) -> CustomerSilence:
    last = at if state.last_activity is None else max(state.last_activity, at)
    watches = []
    for watch in state.watches:
        if at > watch.resolved_at:
            first = watch.first_activity_after
            watch = replace(watch, first_activity_after=at if first is None else min(first, at))
        elif watch.last_activity_before is None or at > watch.last_activity_before:
            watch = replace(watch, last_activity_before=at)
        watches.append(watch)
    return replace(state, last_activity=last, watches=_unbroken(watches, silent_days))


def _unbroken(watches: Iterable[Watch], silent_days: int) -> tuple[Watch, ...]:
    """The watches whose window has no act of the customer in it (yet)."""
    return tuple(
        w
        for w in watches
        if w.first_activity_after is None or w.first_activity_after > w.due_at(silent_days)
    )


def is_silent(watch: Watch, silent_days: int, now: datetime) -> bool:
    """Whether the watch's window has passed by `now` without an act of the customer in it."""
    due = watch.due_at(silent_days)
    if now < due:
        return False
    first = watch.first_activity_after
    return first is None or first > due


def signal_id(customer_id: str, watch: Watch) -> str:
    """Deterministic: the same silence is the same event, however often it is found."""
    return f"silence:{customer_id}:{watch.complaint_id}:{watch.resolved_at.isoformat()}"


def take_due(
    state: CustomerSilence, silent_days: int, now: datetime
) -> tuple[list[Watch], CustomerSilence]:
    """The windows that had ended in silence by `now` (to be signalled), and the state
    without every window that had ended (signalled or not, it is done)."""
    ended = [w for w in state.watches if w.due_at(silent_days) <= now]
    silent = [w for w in ended if is_silent(w, silent_days, now)]
    running = tuple(w for w in state.watches if w.due_at(silent_days) > now)
    return silent, replace(state, watches=running)
