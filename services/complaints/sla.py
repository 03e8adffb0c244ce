"""Complaint service levels: first response, next response and
resolution clocks in business time, as a pure left fold over a complaint's events.

How to use it
-------------
* ``fold_events(complaint_id, events, config)`` (or ``apply_event`` one at a time, in
  ``(at, event_id)`` order) gives an :class:`SlaState`.
* ``clock_views(state, now, config)`` gives, per metric, the status, elapsed and remaining
  business time, ``due_at``, ``warn_at`` and ``breached_at``, and the running segments.
* ``due_sla_events(state, now, config)`` gives the ``sla_warning``, ``sla_breached``,
  ``escalated_auto`` and ``sla_wait_expired`` events that have fallen due by ``now``, each
  stamped with the instant it really happened, minus those already emitted. Keys are
  deterministic; feed the published events back as complaint events (those kinds, with
  ``event_id`` = the key and ``at`` = the event's instant) or call ``mark_emitted`` /
  ``mark_published``, and replays emit each once. Published breaches are kept with their
  instant: they stand (see below).
* ``expired_waits(state, now, config)`` gives (waiting since, expired at) of every wait on
  the customer that reached the maximum by ``now``.

Policies (documented here, applied in the code below)
----------------------------------------------------
* ``opened`` starts the first-response and resolution clocks.
* ``responded`` and ``solution_proposed`` are agent replies: they stop the first-response
  clock and the running next-response clock.
* ``customer_replied`` (the customer answers; not in the original list, needed to say when a
  next response is owed) ends a wait and, once a first reply exists, starts a new
  next-response cycle unless one is already running.
* ``waiting`` pauses every running clock while the complaint waits on the customer. Every
  step that puts the complaint back in the team's hands ends the wait and resumes the paused
  clocks (``ENDS_WAITING``): ``customer_replied``, ``reopened``, ``escalated`` (someone above
  the agent now owns it) and ``solution_proposed`` (the team acts; as an agent reply it also
  meets the running response clocks). ``resolved`` and ``closed`` end it by stopping
  everything. An agent's plain ``responded`` while waiting does not end it: a reminder to the
  customer leaves the ball in the customer's court. A repeated ``waiting`` keeps the wait's
  start (re-sending it must not extend the wait).
* A wait is bounded: after ``SlaConfig.max_wait`` of wall-clock time (setting
  ``SLA_MAX_WAIT_HOURS``, default 72 hours) the paused clocks resume by themselves, at the
  instant the maximum is reached, with no event needed. Wall-clock rather than business time
  because a customer's silence is not bound to office hours, and so a long holiday cannot
  stretch a wait. Views, due SLA events and the schedule all see it (it happens in
  ``_advance``, the fold's time passing); ``expired_waits`` gives (waiting since, expired at)
  of every wait that expired, and the resumed segment starts at the expiry instant. A later
  ``waiting`` starts a new wait. ``due_sla_events`` gives an ``sla_wait_expired`` per clock
  the expiry resumed, at the expiry instant, so the sweeper publishes it.
* ``resolved`` stops every clock (a resolution is also a reply). ``reopened`` resumes the
  resolution clock with its accumulated time (the customer's problem was not solved, so the
  time already spent counts) and starts a next-response cycle. Each running stretch is kept
  as a :class:`Segment`, so every cycle stays visible.
* ``closed`` is final: later clock events are ignored.
* Targets and calendars come from ``SlaConfig.rules`` (``policies.PolicyBook``: versioned
  policies and calendars) when given: a complaint takes the rules in force when it was
  opened, for all its clocks, and each clock keeps the key of its calendar's version, so a
  policy change applies to complaints opened after its effective date only.
* ``priority_changed`` / ``tier_changed`` re-select the policy (among the rules of the
  opening) and give every clock that is not stopped its new target. A target is never
  applied retroactively: if the elapsed time already exceeds the new target, the breach
  happens at the change, not in the past. A policy on another calendar counts from the
  change on its own calendar: the running segment ends there and a new one starts.
* A clock is met when it stops at or before its deadline and breached once real time passes
  the deadline (a deadline at Friday 18:00 is breached at 18:00, not on Monday morning). A
  breach is a fact: it stays on the clock after it stops, reopens or gets a looser target.
* A published breach stands (``published_breaches``, from ``sla_breached`` fed back or
  ``mark_emitted``). Events can arrive late: a reply whose time is before the deadline may
  come after the sweeper already published ``sla_breached`` and ``escalated_auto``. The
  re-derived clock would then say met while the complaint stays escalated. The breach is
  kept rather than withdrawn: it was published and acted on (the escalation reached a team
  lead, reports counted it), the service could not see the reply when the deadline passed,
  and a backdated reply must not be able to erase a breach. So a clock whose breach was
  published reports ``breached`` at the published instant, its ``sla_clock_stopped`` says
  breached, and the escalation it caused stays consistent with it. A breach that was not yet
  published when the late event arrived never happens. The fold's own clocks stay derived
  from the history alone; the published breaches are laid over them when they are read
  (views, due events, schedule), so the fold stays order-free.
* Each breach escalates one level (``escalated_auto``), up to ``max_escalation_level``. A
  manual ``escalated`` event sets the level it names (``crm.complaint.escalated`` carries
  one), or goes one up when it names none. Levels follow from the event history and breach
  instants alone, so they are the same on every replay. Feed published automatic
  escalations back as ``escalated_auto``, not as ``escalated``, or they would count twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import product
from typing import Any, Protocol, TypeVar

import orjson

from services.complaints.business_time import (
    DEFAULT_CALENDAR,
    Calendar,
    add_business_time,
    add_business_times,
    business_elapsed,
)

# Re-exported: the SLA's callers name them here.
from shared.events import UNKNOWN_TIER as UNKNOWN_TIER
from shared.events import Priority as Priority
from shared.events import Tier as Tier
from shared.events import TierOrUnknown as TierOrUnknown

ZERO = timedelta(0)
_Frozen = TypeVar("_Frozen")


def copy_with(value: _Frozen, **changes: object) -> _Frozen:
    """A copy of a frozen dataclass with some fields changed: `dataclasses.replace` without
    its per-call field introspection and __init__ (it was most of the fold's CPU). Only for
    classes whose __post_init__ checks nothing the change could break."""
    copied = object.__new__(type(value))
    copied.__dict__.update(value.__dict__, **changes)
    return copied


class Metric(StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


# Policies select by a customer's tier or UNKNOWN_TIER (a customer scoring has not placed):
# policy files, the API, stored states and SLA events write it "unknown".
TIERS_OR_UNKNOWN: tuple[TierOrUnknown, ...] = (*Tier, UNKNOWN_TIER)


def tier_or_unknown(name: str) -> TierOrUnknown:
    """A tier from its name, or UNKNOWN_TIER from "unknown"; ValueError for anything else."""
    if name == UNKNOWN_TIER:
        return UNKNOWN_TIER
    try:
        return Tier(name)
    except ValueError:
        raise ValueError(f"{name!r} is not a tier ({', '.join(TIERS_OR_UNKNOWN)})") from None


class EventKind(StrEnum):
    OPENED = "opened"
    RESPONDED = "responded"
    CUSTOMER_REPLIED = "customer_replied"
    WAITING = "waiting"
    SOLUTION_PROPOSED = "solution_proposed"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    CLOSED = "closed"
    PRIORITY_CHANGED = "priority_changed"
    TIER_CHANGED = "tier_changed"
    # Our own output, fed back: it only records that the event was emitted.
    SLA_WARNING = "sla_warning"
    SLA_BREACHED = "sla_breached"
    ESCALATED_AUTO = "escalated_auto"
    SLA_WAIT_EXPIRED = "sla_wait_expired"


class SlaEventKind(StrEnum):
    SLA_WARNING = "sla_warning"
    SLA_BREACHED = "sla_breached"
    ESCALATED_AUTO = "escalated_auto"
    SLA_WAIT_EXPIRED = "sla_wait_expired"


class ClockStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    MET = "met"
    BREACHED = "breached"


class Phase(StrEnum):
    """Whether a clock counts; its verdict (met or breached) is separate."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


AGENT_REPLIES = frozenset({EventKind.RESPONDED, EventKind.SOLUTION_PROPOSED})
# Steps that put the complaint back in the team's hands: they end a wait (see the docstring).
ENDS_WAITING = frozenset(
    {
        EventKind.CUSTOMER_REPLIED,
        EventKind.REOPENED,
        EventKind.ESCALATED,
        EventKind.SOLUTION_PROPOSED,
    }
)
FEEDBACK_KINDS = frozenset(EventKind(kind.value) for kind in SlaEventKind)
# Events that still count before ``opened`` (they may share its timestamp and sort first).
BEFORE_OPENED = frozenset({EventKind.OPENED, EventKind.PRIORITY_CHANGED, EventKind.TIER_CHANGED})

# --------------------------------------------------------------------------- configuration

# Documented defaults; the service's settings override them from the environment.
DEFAULT_PRIORITY = Priority.MEDIUM  # when ``opened`` names none
DEFAULT_TIER: TierOrUnknown = UNKNOWN_TIER
DEFAULT_WARN_SHARE = 0.8  # warn at 80% of a target
DEFAULT_MAX_ESCALATION_LEVEL = 3  # agent (0) -> team lead -> supervisor -> manager
DEFAULT_MAX_WAIT = timedelta(hours=72)  # wall-clock: a wait on the customer resumes after it

# Business hours: first response, next response, resolution; gold customers are served first.
DEFAULT_TARGET_HOURS: Mapping[Priority, Mapping[str, tuple[float, float, float]]] = {
    Priority.URGENT: {"gold": (0.5, 1, 4), "standard": (1, 2, 8)},
    Priority.HIGH: {"gold": (1, 2, 8), "standard": (2, 4, 16)},
    Priority.MEDIUM: {"gold": (2, 4, 16), "standard": (4, 8, 24)},
    Priority.LOW: {"gold": (4, 8, 24), "standard": (8, 16, 40)},
}


@dataclass(frozen=True)
class Targets:
    first_response: timedelta
    next_response: timedelta
    resolution: timedelta

    def __post_init__(self) -> None:
        if min(self.first_response, self.next_response, self.resolution) <= ZERO:
            raise ValueError("SLA targets must be positive")

    @classmethod
    def from_hours(cls, first: float, following: float, resolution: float) -> Targets:
        return cls(timedelta(hours=first), timedelta(hours=following), timedelta(hours=resolution))

    def of(self, metric: Metric) -> timedelta:
        target: timedelta = getattr(self, metric)  # the fields are named after the metrics
        return target


@dataclass(frozen=True)
class Policy:
    """Targets for the complaints it matches; an empty set of priorities or tiers matches all."""

    name: str
    targets: Targets
    priorities: frozenset[Priority] = frozenset()
    tiers: frozenset[TierOrUnknown] = frozenset()

    def matches(self, priority: Priority, tier: TierOrUnknown) -> bool:
        return (not self.priorities or priority in self.priorities) and (
            not self.tiers or tier in self.tiers
        )


def default_policies() -> tuple[Policy, ...]:
    """Gold policies first (the first match wins), then one per priority for everyone else."""
    gold = tuple(
        Policy(
            f"gold-{p}", Targets.from_hours(*hours["gold"]), frozenset({p}), frozenset({Tier.GOLD})
        )
        for p, hours in DEFAULT_TARGET_HOURS.items()
    )
    standard = tuple(
        Policy(f"standard-{p}", Targets.from_hours(*hours["standard"]), frozenset({p}))
        for p, hours in DEFAULT_TARGET_HOURS.items()
    )
    return gold + standard


def select_policy(policies: Iterable[Policy], priority: Priority, tier: TierOrUnknown) -> Policy:
    """The first policy, in the given order, that matches."""
    for policy in policies:
        if policy.matches(priority, tier):
            return policy
    raise LookupError(f"no SLA policy matches priority={priority} tier={tier}")


class PolicyRules(Protocol):
    """Versioned policies and calendars (``policies.PolicyBook``): a complaint takes the rules
    in force when it was opened; a clock keeps the key of its calendar's version."""

    def choose(
        self, priority: Priority, tier: TierOrUnknown, opened_at: datetime
    ) -> tuple[Targets, str]:
        """Targets and calendar key for a complaint opened at ``opened_at``."""
        ...

    def calendar(self, key: str) -> Calendar:
        """The calendar of a version key (LookupError when unknown)."""
        ...


@dataclass(frozen=True)
class SlaConfig:
    """``rules``, when given, decides targets and calendars; without it every complaint gets
    ``policies`` on ``calendar`` (clocks stored before rules existed, with no calendar key,
    still count on ``calendar``)."""

    calendar: Calendar = DEFAULT_CALENDAR
    policies: tuple[Policy, ...] = field(default_factory=default_policies)
    warn_share: float = DEFAULT_WARN_SHARE
    max_escalation_level: int = DEFAULT_MAX_ESCALATION_LEVEL
    max_wait: timedelta = DEFAULT_MAX_WAIT
    rules: PolicyRules | None = None

    def __post_init__(self) -> None:
        if not 0 < self.warn_share < 1:
            raise ValueError("warn_share must lie strictly between 0 and 1")
        if self.max_wait <= ZERO:
            raise ValueError("max_wait must be positive")
        if self.max_escalation_level < 0:
            raise ValueError("max_escalation_level must not be negative")
        for priority, tier in product(Priority, TIERS_OR_UNKNOWN):
            select_policy(self.policies, priority, tier)  # every complaint needs a policy
        # Every event of every complaint looks its targets up: resolve each pair once.
        chosen = {
            (priority, tier): select_policy(self.policies, priority, tier).targets
            for priority, tier in product(Priority, TIERS_OR_UNKNOWN)
        }
        object.__setattr__(self, "_targets", chosen)

    def targets(self, priority: Priority, tier: TierOrUnknown) -> Targets:
        chosen: dict[tuple[Priority, TierOrUnknown], Targets] = self.__dict__["_targets"]
        return chosen[(priority, tier)]

    def choose(
        self, priority: Priority, tier: TierOrUnknown, opened_at: datetime
    ) -> tuple[Targets, str]:
        """Targets and calendar key of a complaint opened at ``opened_at``."""
        if self.rules is None:
            return self.targets(priority, tier), ""
        return self.rules.choose(priority, tier, opened_at)

    def calendar_of(self, clock: Clock) -> Calendar:
        """The calendar a clock counts on: the version it started with."""
        return self.calendar_by_key(clock.calendar)

    def calendar_by_key(self, key: str) -> Calendar:
        if not key or self.rules is None:
            return self.calendar
        return self.rules.calendar(key)


# --------------------------------------------------------------------------- events and state


@dataclass(frozen=True)
class ClockEvent:
    """One event of one complaint as the SLA clocks see it (``domain.sla_event`` derives it
    from the complaint's published event). ``priority`` / ``tier`` go with ``opened``
    (optional) and with ``priority_changed`` / ``tier_changed`` (required); ``level`` with
    ``escalated``."""

    event_id: str
    kind: EventKind
    at: datetime
    priority: Priority | None = None
    tier: TierOrUnknown | None = None
    level: int | None = None

    def __post_init__(self) -> None:
        # Accept plain strings from a decoder: the fold compares enum members by identity.
        if type(self.kind) is not EventKind:
            object.__setattr__(self, "kind", EventKind(self.kind))
        if self.priority is not None:
            object.__setattr__(self, "priority", Priority(self.priority))
        if self.tier is not None:
            object.__setattr__(self, "tier", tier_or_unknown(self.tier))
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("event time must be timezone-aware")
        if self.kind is EventKind.PRIORITY_CHANGED and self.priority is None:
            raise ValueError("priority_changed needs a priority")
        if self.kind is EventKind.TIER_CHANGED and self.tier is None:
            raise ValueError("tier_changed needs a tier")
        # Asked twice per fold step; not a field (equality stays on the fields).
        object.__setattr__(self, "_position", (self.at.astimezone(UTC), self.event_id))

    @property
    def position(self) -> tuple[datetime, str]:
        """The fold's order: time, then event id."""
        position: tuple[datetime, str] = self.__dict__["_position"]
        return position


@dataclass(frozen=True)
class Segment:
    """One stretch during which a clock counted. ``end`` is None while it still runs;
    ``elapsed`` is filled in when the segment closes."""

    start: datetime
    end: datetime | None = None
    elapsed: timedelta = ZERO
    ended_by: EventKind | None = None


@dataclass(frozen=True)
class Clock:
    """One SLA clock. next_response has one clock per cycle (1, 2, ...); the others cycle 0."""

    metric: Metric
    cycle: int
    target: timedelta
    phase: Phase
    segments: tuple[Segment, ...]
    warned_at: datetime | None = None
    breached_at: datetime | None = None
    calendar: str = ""  # the calendar version's key (PolicyRules); "": SlaConfig.calendar

    @property
    def accumulated(self) -> timedelta:
        """Business time of the closed segments."""
        total = ZERO
        for segment in self.segments:
            if segment.end is not None:
                total += segment.elapsed
        return total

    @property
    def running_since(self) -> datetime | None:
        return self.segments[-1].start if self.phase is Phase.RUNNING else None


class OutOfOrderEventError(ValueError):
    """An event sorts before one already folded: refold the complaint from its sorted events."""


@dataclass(frozen=True)
class SlaState:
    complaint_id: str
    priority: Priority = DEFAULT_PRIORITY
    tier: TierOrUnknown = DEFAULT_TIER
    opened_at: datetime | None = None
    waiting: bool = False
    closed: bool = False
    clocks: tuple[Clock, ...] = ()  # every clock ever started, in start order
    manual_escalations: tuple[tuple[datetime, int | None], ...] = ()  # (at, level named)
    emitted: frozenset[str] = frozenset()  # keys of SLA events already published
    position: tuple[datetime, str] | None = None  # the last folded event
    waiting_since: datetime | None = None  # when the current wait began (set while waiting)
    waits_expired: tuple[tuple[datetime, datetime], ...] = ()  # (waiting since, expired at)
    # (key, instant) of every sla_breached published: the breach stands (see the docstring)
    published_breaches: frozenset[tuple[str, datetime]] = frozenset()

    def current(self, metric: Metric) -> Clock | None:
        """The latest clock of a metric."""
        return next((c for c in reversed(self.clocks) if c.metric is metric), None)


# Prototypes to copy from: a frozen dataclass's __init__ sets each field through
# object.__setattr__, several times slower than copying a prototype's fields.
_BLANK_SEGMENT = Segment(datetime(1970, 1, 1, tzinfo=UTC))
_BLANK_CLOCK = Clock(Metric.RESOLUTION, 0, timedelta(1), Phase.RUNNING, ())
_BLANK_STATE = SlaState("")

# --------------------------------------------------------------------------- the fold


def new_state(
    complaint_id: str,
    emitted: frozenset[str] = frozenset(),
    published_breaches: frozenset[tuple[str, datetime]] = frozenset(),
) -> SlaState:
    """An empty state; ``emitted`` and ``published_breaches`` keep what was already published
    (a re-derived complaint keeps its record of them)."""
    return copy_with(
        _BLANK_STATE,
        complaint_id=complaint_id,
        emitted=emitted,
        published_breaches=published_breaches,
    )


def fold_events(complaint_id: str, events: Iterable[ClockEvent], config: SlaConfig) -> SlaState:
    """The state after all ``events``, sorted into ``(at, event_id)`` order first."""
    state = new_state(complaint_id)
    for event in sorted(events, key=lambda e: e.position):
        state = apply_event(state, event, config)
    return state


def apply_event(state: SlaState, event: ClockEvent, config: SlaConfig) -> SlaState:
    """Fold one event. Events must come in ``(at, event_id)`` order; the same event twice in a
    row is ignored, an earlier one raises :class:`OutOfOrderEventError`."""
    if event.kind in FEEDBACK_KINDS:  # order-free: only records what was published
        breaches = state.published_breaches
        if event.kind is EventKind.SLA_BREACHED:
            breaches = breaches | {(event.event_id, event.position[0])}
        return copy_with(
            state, emitted=state.emitted | {event.event_id}, published_breaches=breaches
        )
    if state.position is not None and event.position <= state.position:
        if event.position == state.position:
            return state
        raise OutOfOrderEventError(f"{event.position} after {state.position}")
    state = copy_with(state, position=event.position)
    if state.closed or (state.opened_at is None and event.kind not in BEFORE_OPENED):
        return state
    at = event.position[0]
    state = _advance(state, at, config)
    if event.kind in ENDS_WAITING:
        state = _end_wait(state, at)
    state = _HANDLERS[event.kind](state, event, at, config)
    return _settle(state, at, config)


def mark_emitted(state: SlaState, events: Iterable[SlaEvent]) -> SlaState:
    """Record published SLA events, for a service that keeps the state instead of refolding."""
    return mark_published(state, [(e.key, e.kind, e.at) for e in events])


def mark_published(state: SlaState, published: Iterable[tuple[str, str, datetime]]) -> SlaState:
    """Record published SLA events given as (key, kind, instant); breaches stand from now on."""
    published = list(published)
    breaches = {
        (key, at.astimezone(UTC))
        for key, kind, at in published
        if kind == SlaEventKind.SLA_BREACHED
    }
    return copy_with(
        state,
        emitted=state.emitted | {key for key, _, _ in published},
        published_breaches=state.published_breaches | breaches,
    )


# --------------------------------------------------------------------------- event handlers

Handler = Callable[[SlaState, ClockEvent, datetime, SlaConfig], SlaState]


def _on_opened(state: SlaState, event: ClockEvent, at: datetime, config: SlaConfig) -> SlaState:
    if state.opened_at is not None:  # a second ``opened`` changes nothing
        return state
    priority, tier = event.priority or state.priority, event.tier or state.tier
    targets, calendar = config.choose(priority, tier, at)
    clocks = (
        _start(Metric.FIRST_RESPONSE, 0, targets, at, calendar),
        _start(Metric.RESOLUTION, 0, targets, at, calendar),
    )
    return copy_with(state, opened_at=at, priority=priority, tier=tier, clocks=clocks)


def _on_agent_reply(
    state: SlaState, event: ClockEvent, at: datetime, config: SlaConfig
) -> SlaState:
    replied = (Metric.FIRST_RESPONSE, Metric.NEXT_RESPONSE)
    return _map_clocks(
        state, lambda c: _stop(c, at, event.kind, config) if c.metric in replied else c
    )


def _on_customer_replied(
    state: SlaState, event: ClockEvent, at: datetime, config: SlaConfig
) -> SlaState:
    first, resolution = state.current(Metric.FIRST_RESPONSE), state.current(Metric.RESOLUTION)
    answered = first is not None and first.phase is Phase.STOPPED
    active = resolution is not None and resolution.phase is not Phase.STOPPED
    return _open_next_response(state, at, config) if answered and active else state


def _on_waiting(state: SlaState, event: ClockEvent, at: datetime, config: SlaConfig) -> SlaState:
    state = _map_clocks(state, lambda c: _pause(c, at, event.kind, config))
    return copy_with(state, waiting=True, waiting_since=state.waiting_since or at)


def _on_escalated(state: SlaState, event: ClockEvent, at: datetime, config: SlaConfig) -> SlaState:
    escalation = (at, event.level)
    return copy_with(state, manual_escalations=(*state.manual_escalations, escalation))


def _on_resolved(state: SlaState, event: ClockEvent, at: datetime, config: SlaConfig) -> SlaState:
    state = _map_clocks(state, lambda c: _stop(c, at, event.kind, config))
    return copy_with(state, waiting=False, waiting_since=None)


def _on_reopened(state: SlaState, event: ClockEvent, at: datetime, config: SlaConfig) -> SlaState:
    resolution = state.current(Metric.RESOLUTION)
    if resolution is None or resolution.phase is not Phase.STOPPED:
        return state  # nothing was resolved: nothing to reopen
    state = _map_clocks(state, lambda c: _restart(c, at) if c is resolution else c)
    return _open_next_response(state, at, config)


def _on_closed(state: SlaState, event: ClockEvent, at: datetime, config: SlaConfig) -> SlaState:
    state = _map_clocks(state, lambda c: _stop(c, at, event.kind, config))
    return copy_with(state, waiting=False, waiting_since=None, closed=True)


def _on_priority_changed(
    state: SlaState, event: ClockEvent, at: datetime, config: SlaConfig
) -> SlaState:
    state = copy_with(state, priority=event.priority or state.priority)
    return _retarget(state, at, event.kind, config)


def _on_tier_changed(
    state: SlaState, event: ClockEvent, at: datetime, config: SlaConfig
) -> SlaState:
    return _retarget(copy_with(state, tier=event.tier or state.tier), at, event.kind, config)


_HANDLERS: Mapping[EventKind, Handler] = {
    EventKind.OPENED: _on_opened,
    **dict.fromkeys(AGENT_REPLIES, _on_agent_reply),
    EventKind.CUSTOMER_REPLIED: _on_customer_replied,
    EventKind.WAITING: _on_waiting,
    EventKind.ESCALATED: _on_escalated,
    EventKind.RESOLVED: _on_resolved,
    EventKind.REOPENED: _on_reopened,
    EventKind.CLOSED: _on_closed,
    EventKind.PRIORITY_CHANGED: _on_priority_changed,
    EventKind.TIER_CHANGED: _on_tier_changed,
}


# --------------------------------------------------------------------------- clock transitions


def _start(metric: Metric, cycle: int, targets: Targets, at: datetime, calendar: str) -> Clock:
    segment = copy_with(_BLANK_SEGMENT, start=at)
    return copy_with(
        _BLANK_CLOCK,
        metric=metric,
        cycle=cycle,
        target=targets.of(metric),
        segments=(segment,),
        calendar=calendar,
    )


def _close_segment(clock: Clock, at: datetime, reason: EventKind, config: SlaConfig) -> Clock:
    last = clock.segments[-1]
    elapsed = business_elapsed(config.calendar_of(clock), last.start, at)
    closed = copy_with(last, end=at, elapsed=elapsed, ended_by=reason)
    return copy_with(clock, segments=(*clock.segments[:-1], closed))


def _pause(clock: Clock, at: datetime, reason: EventKind, config: SlaConfig) -> Clock:
    if clock.phase is not Phase.RUNNING:
        return clock
    return copy_with(_close_segment(clock, at, reason, config), phase=Phase.PAUSED)


def _stop(clock: Clock, at: datetime, reason: EventKind, config: SlaConfig) -> Clock:
    if clock.phase is Phase.RUNNING:
        clock = _close_segment(clock, at, reason, config)
    return copy_with(clock, phase=Phase.STOPPED)


def _restart(clock: Clock, at: datetime) -> Clock:
    """Resume a paused or stopped clock: a new segment, the accumulated time carries on."""
    if clock.phase is Phase.RUNNING:
        return clock
    return copy_with(clock, phase=Phase.RUNNING, segments=(*clock.segments, Segment(at)))


def _map_clocks(state: SlaState, change: Callable[[Clock], Clock]) -> SlaState:
    clocks = [change(clock) for clock in state.clocks]
    if all(new is old for new, old in zip(clocks, state.clocks, strict=True)):
        return state  # most steps leave most clocks alone: keep the state as it is
    return copy_with(state, clocks=tuple(clocks))


def _end_wait(state: SlaState, at: datetime) -> SlaState:
    if not state.waiting:
        return state
    state = _map_clocks(state, lambda c: _restart(c, at) if c.phase is Phase.PAUSED else c)
    return copy_with(state, waiting=False, waiting_since=None)


def _wait_expiry(state: SlaState, config: SlaConfig) -> datetime | None:
    """When the current wait reaches the maximum; None when not waiting."""
    if not state.waiting or state.waiting_since is None:
        return None
    return state.waiting_since + config.max_wait


def _expire_wait(state: SlaState, expiry: datetime) -> SlaState:
    """End the current wait at ``expiry``, the maximum: the paused clocks resume by themselves."""
    since = state.waiting_since
    assert since is not None  # only called with a wait's expiry
    state = _end_wait(state, expiry)
    return copy_with(state, waits_expired=(*state.waits_expired, (since, expiry)))


def _open_next_response(state: SlaState, at: datetime, config: SlaConfig) -> SlaState:
    """Start a next-response cycle unless one is already counting."""
    latest = state.current(Metric.NEXT_RESPONSE)
    if latest is not None and latest.phase is not Phase.STOPPED:
        return state
    cycle = 1 if latest is None else latest.cycle + 1
    targets, calendar = config.choose(state.priority, state.tier, state.opened_at or at)
    clock = _start(Metric.NEXT_RESPONSE, cycle, targets, at, calendar)
    return copy_with(state, clocks=(*state.clocks, clock))


def _retarget(state: SlaState, at: datetime, reason: EventKind, config: SlaConfig) -> SlaState:
    """Every clock not stopped takes the targets of the complaint's new priority or tier, from
    the rules in force when it was opened. A policy on another calendar counts the time up to
    now on the old one: the running segment ends here and a new one starts on the new one."""
    if state.opened_at is None:
        return state  # no clock yet: ``opened`` chooses with the priority and tier it finds
    targets, calendar = config.choose(state.priority, state.tier, state.opened_at)

    def retarget(clock: Clock) -> Clock:
        if clock.phase is Phase.STOPPED:
            return clock
        moved = clock.calendar != calendar and (
            config.calendar_of(clock) != config.calendar_by_key(calendar)
        )
        if moved and clock.phase is Phase.RUNNING:
            clock = _close_segment(clock, at, reason, config)
            clock = copy_with(clock, segments=(*clock.segments, Segment(at)))
        return copy_with(clock, target=targets.of(clock.metric), calendar=calendar)

    return _map_clocks(state, retarget)


# --------------------------------------------------------------------------- time passing


def _warn_threshold(clock: Clock, config: SlaConfig) -> timedelta:
    return clock.target * config.warn_share


def _elapsed_at(clock: Clock, at: datetime, config: SlaConfig) -> timedelta:
    since = clock.running_since
    running = ZERO if since is None else business_elapsed(config.calendar_of(clock), since, at)
    return clock.accumulated + running


def _reached_at(clock: Clock, threshold: timedelta, config: SlaConfig) -> datetime | None:
    """When a running clock's elapsed time reaches ``threshold``; None unless running."""
    since = clock.running_since
    if since is None:
        return None
    need = max(threshold - clock.accumulated, ZERO)
    return add_business_time(config.calendar_of(clock), since, need)


def _warning_and_deadline(clock: Clock, config: SlaConfig) -> tuple[datetime, datetime]:
    """_reached_at of the warning threshold and of the target, for a running clock."""
    since, spent = clock.segments[-1].start, clock.accumulated
    needs = (max(_warn_threshold(clock, config) - spent, ZERO), max(clock.target - spent, ZERO))
    warn_at, due_at = add_business_times(config.calendar_of(clock), since, needs)
    return warn_at, due_at


def _advance_clock(clock: Clock, at: datetime, config: SlaConfig) -> Clock:
    """Record the warning and breach that happened strictly before ``at``."""
    if clock.warned_at is None:
        warn = _reached_at(clock, _warn_threshold(clock, config), config)
        if warn is not None and warn < at:
            clock = copy_with(clock, warned_at=warn)
    if clock.breached_at is None:
        due = _reached_at(clock, clock.target, config)
        if due is not None and due < at:
            clock = copy_with(clock, breached_at=due)
    return clock


def _advance(state: SlaState, at: datetime, config: SlaConfig) -> SlaState:
    """Time passes until ``at``: a wait that reaches its maximum before ``at`` ends there
    (paused clocks neither warn nor breach, so nothing is missed before it), then warnings
    and breaches strictly before ``at`` are recorded."""
    expiry = _wait_expiry(state, config)
    if expiry is not None and expiry < at:
        state = _expire_wait(state, expiry)
    return _map_clocks(state, lambda c: _advance_clock(c, at, config))


def _settle_clock(clock: Clock, at: datetime, config: SlaConfig) -> Clock:
    """After the events at ``at``: a clock not stopped whose elapsed time already reaches a
    threshold (a tighter target, or a deadline exactly now) crosses it now, not earlier."""
    if clock.phase is Phase.STOPPED or clock.breached_at is not None:
        return clock
    if clock.phase is Phase.RUNNING and len(clock.segments) == 1 and clock.segments[0].start == at:
        return clock  # started just now: nothing elapsed, and every threshold is positive
    elapsed = _elapsed_at(clock, at, config)
    if clock.warned_at is None and elapsed >= _warn_threshold(clock, config):
        clock = copy_with(clock, warned_at=at)
    if elapsed >= clock.target:
        clock = copy_with(clock, breached_at=at)
    return clock


def _settle(state: SlaState, at: datetime, config: SlaConfig) -> SlaState:
    return _map_clocks(state, lambda c: _settle_clock(c, at, config))


def _as_of(state: SlaState, now: datetime, config: SlaConfig) -> tuple[SlaState, datetime]:
    """The state advanced to ``now``. A ``now`` before the last folded event is taken as that
    event's time: folded events are facts, a lagging clock must not undo them."""
    moment = now.astimezone(UTC)
    if state.position is not None:
        moment = max(moment, state.position[0])
    return with_published_breaches(_advance(state, moment, config)), moment


def with_published_breaches(state: SlaState) -> SlaState:
    """The state with every published breach standing on its clock, at its published instant
    (a late event may have made the history's own clock met, or breach at another instant)."""
    if not state.published_breaches:
        return state
    published: dict[str, datetime] = {}
    for key, at in state.published_breaches:
        published[key] = min(at, published.get(key, at))

    def stand(clock: Clock) -> Clock:
        key = event_key(state.complaint_id, clock.metric, clock.cycle, SlaEventKind.SLA_BREACHED)
        at = published.get(key)
        return clock if at is None or clock.breached_at == at else copy_with(clock, breached_at=at)

    return _map_clocks(state, stand)


def expired_waits(
    state: SlaState, now: datetime, config: SlaConfig
) -> tuple[tuple[datetime, datetime], ...]:
    """(waiting since, expired at) of every wait that reached the maximum by ``now``."""
    return _as_of(state, now, config)[0].waits_expired


# --------------------------------------------------------------------------- read side


@dataclass(frozen=True)
class ClockView:
    """A clock as of ``now``. ``remaining`` is zero once breached (``elapsed`` shows by how
    much); ``due_at`` / ``warn_at`` are None while paused (they depend on when the wait ends)
    and once met before reaching them."""

    metric: Metric
    cycle: int
    status: ClockStatus
    target: timedelta
    elapsed: timedelta
    remaining: timedelta
    due_at: datetime | None
    warn_at: datetime | None
    breached_at: datetime | None
    segments: tuple[Segment, ...]


def clock_views(state: SlaState, now: datetime, config: SlaConfig) -> dict[Metric, ClockView]:
    """The latest clock of every metric that has started, as of ``now``."""
    advanced, moment = _as_of(state, now, config)
    views = {}
    for metric in Metric:
        clock = advanced.current(metric)
        if clock is not None:
            views[metric] = _view(clock, moment, config)
    return views


def all_clock_views(state: SlaState, now: datetime, config: SlaConfig) -> list[ClockView]:
    """Every clock ever started (every next-response cycle, every reopen), as of ``now``."""
    advanced, moment = _as_of(state, now, config)
    return [_view(clock, moment, config) for clock in advanced.clocks]


def _status(clock: Clock) -> ClockStatus:
    if clock.breached_at is not None:
        return ClockStatus.BREACHED
    return {
        Phase.STOPPED: ClockStatus.MET,
        Phase.PAUSED: ClockStatus.PAUSED,
        Phase.RUNNING: ClockStatus.RUNNING,
    }[clock.phase]


def _view(clock: Clock, now: datetime, config: SlaConfig) -> ClockView:
    elapsed = _elapsed_at(clock, now, config)
    segments = clock.segments
    if clock.phase is Phase.RUNNING:  # show the open segment's time so far
        open_part = copy_with(segments[-1], elapsed=elapsed - clock.accumulated)
        segments = (*segments[:-1], open_part)
    return ClockView(
        metric=clock.metric,
        cycle=clock.cycle,
        status=_status(clock),
        target=clock.target,
        elapsed=elapsed,
        # Zero once breached: a published breach stands even if a late event kept the
        # counted time under the target.
        remaining=ZERO if clock.breached_at is not None else max(clock.target - elapsed, ZERO),
        due_at=clock.breached_at or _reached_at(clock, clock.target, config),
        warn_at=clock.warned_at or _reached_at(clock, _warn_threshold(clock, config), config),
        breached_at=clock.breached_at,
        segments=segments,
    )


@dataclass(frozen=True)
class SlaEvent:
    """An SLA event to publish. ``at`` is when it happened (the warning or deadline instant),
    not when it was noticed. ``key`` is deterministic: use it as the event id."""

    key: str
    kind: SlaEventKind
    complaint_id: str
    metric: Metric
    cycle: int
    at: datetime
    target: timedelta
    level: int | None = None  # the new escalation level, for escalated_auto
    waiting_since: datetime | None = None  # when the wait began, for sla_wait_expired


def due_sla_events(state: SlaState, now: datetime, config: SlaConfig) -> tuple[SlaEvent, ...]:
    """SLA events that have happened by ``now`` and are not in ``state.emitted``, oldest first.
    Called late (after downtime), it returns the missed ones with their true times."""
    advanced, _ = _as_of(state, now, config)
    events = [
        event for clock in advanced.clocks for event in _clock_events(advanced.complaint_id, clock)
    ]
    breaches = [e for e in events if e.kind is SlaEventKind.SLA_BREACHED]
    events += _escalations(advanced, breaches, config)
    events += _wait_expiry_events(advanced)
    fresh = (e for e in events if e.key not in state.emitted)
    return tuple(sorted(fresh, key=_event_order))


_KIND_ORDER = {kind: n for n, kind in enumerate(SlaEventKind)}
_METRIC_ORDER = {metric: n for n, metric in enumerate(Metric)}


def _event_order(event: SlaEvent) -> tuple[datetime, int, int, int]:
    return (event.at, _METRIC_ORDER[event.metric], event.cycle, _KIND_ORDER[event.kind])


def event_key(complaint_id: str, metric: Metric, cycle: int, kind: SlaEventKind) -> str:
    return f"{complaint_id}:{metric}:{cycle}:{kind}"


def _clock_events(complaint_id: str, clock: Clock) -> list[SlaEvent]:
    marks = (
        (SlaEventKind.SLA_WARNING, clock.warned_at),
        (SlaEventKind.SLA_BREACHED, clock.breached_at),
    )
    return [
        SlaEvent(
            key=event_key(complaint_id, clock.metric, clock.cycle, kind),
            kind=kind,
            complaint_id=complaint_id,
            metric=clock.metric,
            cycle=clock.cycle,
            at=at,
            target=clock.target,
        )
        for kind, at in marks
        if at is not None
    ]


def _escalations(state: SlaState, breaches: list[SlaEvent], config: SlaConfig) -> list[SlaEvent]:
    """Walk manual escalations and breaches in time order (manual first on a tie): a breach
    escalates one level above the level reached by then, unless that is already the top."""
    escalations: list[SlaEvent] = []
    level = 0
    manual = list(state.manual_escalations)  # in time order, as folded
    for breach in sorted(breaches, key=_event_order):
        while manual and manual[0][0] <= breach.at:
            named = manual.pop(0)[1]
            level = level + 1 if named is None else named
        if level >= config.max_escalation_level:
            continue  # nobody left to escalate to
        level += 1
        key = event_key(
            state.complaint_id, breach.metric, breach.cycle, SlaEventKind.ESCALATED_AUTO
        )
        escalations.append(
            copy_with(breach, key=key, kind=SlaEventKind.ESCALATED_AUTO, level=level)
        )
    return escalations


def _wait_expiry_events(state: SlaState) -> list[SlaEvent]:
    """One ``sla_wait_expired`` per clock a wait paused and its expiry resumed: the segment
    that starts at an expiry instant after one the wait ended."""
    if not state.waits_expired:
        return []
    since_of = {expired_at: since for since, expired_at in state.waits_expired}
    found = []
    for clock in state.clocks:
        for n in range(1, len(clock.segments)):
            since = since_of.get(clock.segments[n].start)
            if since is None or clock.segments[n - 1].ended_by is not EventKind.WAITING:
                continue
            kind = SlaEventKind.SLA_WAIT_EXPIRED
            key = f"{event_key(state.complaint_id, clock.metric, clock.cycle, kind)}:{n}"
            found.append(
                SlaEvent(
                    key=key,
                    kind=kind,
                    complaint_id=state.complaint_id,
                    metric=clock.metric,
                    cycle=clock.cycle,
                    at=clock.segments[n].start,
                    target=clock.target,
                    waiting_since=since,
                )
            )
    return found


def stopped_key(complaint_id: str, clock: Clock) -> str:
    """The key of the event that reports a clock stopped (one per stop: reopened clocks stop
    again with more segments)."""
    return f"{complaint_id}:{clock.metric}:{clock.cycle}:stopped:{len(clock.segments)}"


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Schedule:
    """What the queue and the sweeper need of a state as of ``now``: whether the latest clock
    of a metric is breached, the earliest deadline of a latest clock still counting towards
    it, and the instant of the earliest SLA event not yet emitted (in the past when one is
    overdue: the sweeper emits it at once)."""

    breached: bool
    next_due_at: datetime | None
    next_sla_at: datetime | None


def schedule(state: SlaState, now: datetime, config: SlaConfig) -> Schedule:
    """The state's schedule as of ``now``: what ``clock_views`` and ``due_sla_events`` would
    give, computing each running clock's warning and deadline instants once."""
    moment = now.astimezone(UTC)
    if state.position is not None:
        moment = max(moment, state.position[0])
    expiry = _wait_expiry(state, config)
    if expiry is not None:  # a schedule assumes nothing else happens: the wait will expire
        state = _expire_wait(state, expiry)
    state = with_published_breaches(state)
    latest = {clock.metric: clock for clock in state.clocks}  # the last of each metric wins
    breached = False
    deadlines: list[datetime] = []
    pending = [e.at for e in _wait_expiry_events(state) if e.key not in state.emitted]
    for clock in state.clocks:
        warn_at, due_at = clock.warned_at, clock.breached_at
        if clock.phase is Phase.RUNNING and warn_at is None and due_at is None:
            warn_at, due_at = _warning_and_deadline(clock, config)
        elif clock.phase is Phase.RUNNING:
            warn_at = warn_at or _reached_at(clock, _warn_threshold(clock, config), config)
            due_at = due_at or _reached_at(clock, clock.target, config)
        key = f"{state.complaint_id}:{clock.metric}:{clock.cycle}:"
        if warn_at is not None and key + SlaEventKind.SLA_WARNING not in state.emitted:
            pending.append(warn_at)
        if due_at is not None and key + SlaEventKind.SLA_BREACHED not in state.emitted:
            pending.append(due_at)
        if clock.phase is Phase.STOPPED and stopped_key(state.complaint_id, clock) not in (
            state.emitted
        ):
            pending.append(clock.segments[-1].end or clock.segments[-1].start)
        if latest[clock.metric] is not clock:
            continue
        if clock.breached_at is not None or (due_at is not None and due_at < moment):
            breached = True
        elif clock.phase is Phase.RUNNING and due_at is not None:
            deadlines.append(due_at)
    return Schedule(breached, min(deadlines, default=None), min(pending, default=None))


# --------------------------------------------------------------------------- stored form


def _micros(value: timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


def _instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def state_to_json(state: SlaState) -> bytes:
    """The state as compact JSON (instants in RFC 3339, durations in microseconds), to keep
    between batches; ``state_from_json`` reads it back equal."""
    clocks = [
        [
            c.metric,
            c.cycle,
            _micros(c.target),
            c.phase,
            [[s.start, s.end, _micros(s.elapsed), s.ended_by] for s in c.segments],
            c.warned_at,
            c.breached_at,
            c.calendar,  # added later: optional on read
        ]
        for c in state.clocks
    ]
    return orjson.dumps(
        [
            state.priority,
            state.tier,
            state.opened_at,
            state.waiting,
            state.closed,
            clocks,
            state.manual_escalations,
            sorted(state.emitted),
            state.position,
            # Added later: optional on read (states stored before them still load).
            state.waiting_since,
            state.waits_expired,
            sorted(state.published_breaches),
        ]
    )


def state_from_json(complaint_id: str, text: bytes | str) -> SlaState:
    fields = orjson.loads(text)
    priority, tier, opened_at, waiting, closed, clocks, manual, emitted, position = fields[:9]
    waiting_since, expired, breaches = [*fields[9:], None, None, None][:3]
    state: SlaState = copy_with(
        _BLANK_STATE,
        complaint_id=complaint_id,
        priority=Priority(priority),
        tier=tier_or_unknown(tier),
        opened_at=_instant(opened_at),
        waiting=waiting,
        closed=closed,
        clocks=tuple(_clock_from_json(*clock) for clock in clocks),
        manual_escalations=tuple((datetime.fromisoformat(at), level) for at, level in manual),
        emitted=frozenset(emitted),
        position=None if position is None else (datetime.fromisoformat(position[0]), position[1]),
        waiting_since=_instant(waiting_since),
        waits_expired=tuple(
            (datetime.fromisoformat(since), datetime.fromisoformat(at))
            for since, at in expired or ()
        ),
        published_breaches=frozenset(
            (key, datetime.fromisoformat(at)) for key, at in breaches or ()
        ),
    )
    if state.waiting and state.waiting_since is None:  # stored before the wait's start was kept
        state = copy_with(state, waiting_since=_paused_since(state))
    return state


def _paused_since(state: SlaState) -> datetime | None:
    """When a wait stored without its start began: the latest pause by ``waiting``, else the
    last event folded."""
    pauses = [
        c.segments[-1].end
        for c in state.clocks
        if c.phase is Phase.PAUSED and c.segments[-1].ended_by is EventKind.WAITING
    ]
    found = [at for at in pauses if at is not None]
    if found:
        return max(found)
    return None if state.position is None else state.position[0]


def _clock_from_json(
    metric: str,
    cycle: int,
    target: int,
    phase: str,
    segments: list[list[Any]],
    warned_at: str | None,
    breached_at: str | None,
    calendar: str = "",
) -> Clock:
    return copy_with(
        _BLANK_CLOCK,
        metric=Metric(metric),
        cycle=cycle,
        target=timedelta(microseconds=target),
        phase=Phase(phase),
        segments=tuple(
            copy_with(
                _BLANK_SEGMENT,
                start=datetime.fromisoformat(start),
                end=_instant(end),
                elapsed=timedelta(microseconds=elapsed),
                ended_by=None if ended_by is None else EventKind(ended_by),
            )
            for start, end, elapsed, ended_by in segments
        ),
        warned_at=_instant(warned_at),
        breached_at=_instant(breached_at),
        calendar=calendar,
    )


__all__ = [
    "AGENT_REPLIES",
    "DEFAULT_MAX_ESCALATION_LEVEL",
    "DEFAULT_MAX_WAIT",
    "DEFAULT_PRIORITY",
    "DEFAULT_TARGET_HOURS",
    "DEFAULT_TIER",
    "DEFAULT_WARN_SHARE",
    "ENDS_WAITING",
    "TIERS_OR_UNKNOWN",
    "UNKNOWN_TIER",
    "Clock",
    "ClockEvent",
    "ClockStatus",
    "ClockView",
    "EventKind",
    "Metric",
    "OutOfOrderEventError",
    "Phase",
    "Policy",
    "PolicyRules",
    "Priority",
    "Schedule",
    "Segment",
    "SlaConfig",
    "SlaEvent",
    "SlaEventKind",
    "SlaState",
    "Targets",
    "Tier",
    "TierOrUnknown",
    "apply_event",
    "clock_views",
    "default_policies",
    "due_sla_events",
    "event_key",
    "expired_waits",
    "fold_events",
    "mark_emitted",
    "mark_published",
    "new_state",
    "schedule",
    "select_policy",
    "state_from_json",
    "state_to_json",
    "stopped_key",
    "tier_or_unknown",
    "with_published_breaches",
]
