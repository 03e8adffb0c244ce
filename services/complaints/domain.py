"""Complaints' workflow, pure: a complaint's state is the fold of its events ordered by time,
and an agent's command is checked against that state before it becomes an event.

Ordering by (time, event id) rather than arrival makes a late event re-derive the state it
belongs to, and makes the result the same whatever order the broker delivered in.

The states follow the seven steps of complaint handling: opened -> acknowledged
(first response: listen, thank, apologise) -> investigating (details collected) -> solution
proposed (with a promised date) -> resolved -> closed after the customer's feedback; besides
them waiting (on the customer: pauses the SLA clocks), escalated (level 1..n) and reopened.

The steps themselves are an order (`STEP_ORDER`): each one's first completion is recorded
with the instant its turn began (`StepDone`), agents' commands are checked against the
order under a `StepPolicy` (strict by default; a deployment names the steps that may be
skipped), and `step_durations` gives how long each step takes over a period.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast, get_args

from pydantic import ValidationError

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
    ComplaintStepDone,
    ComplaintWaiting,
    Event,
    EventData,
    SlaEscalation,
)
from shared.stats import percentile_cont

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

# ---- the seven handling steps -------------------------------------------------------------

Step = Literal["listen", "thank", "apologise", "promise", "propose", "carry_out", "follow_up"]
STEP_ORDER: tuple[str, ...] = get_args(Step)
# Done once per complaint (the first conversation); the others again in every cycle a reopen
# starts: the customer's problem was not solved, so a new solution is proposed, carried out
# and followed up.
ONCE_STEPS = frozenset(STEP_ORDER[:4])
_FIRST_REPEATED = STEP_ORDER.index("propose")
# Carrying out the solution is the resolution itself: it cannot be skipped.
SkippableStep = Literal["listen", "thank", "apologise", "promise", "propose", "follow_up"]
SKIPPABLE_STEPS = frozenset(get_args(SkippableStep))


@dataclass(frozen=True)
class StepDone:
    """A step's first completion in a cycle (0, then one more per reopen). Its turn began at
    the previous step done, the opening or the reopening, whichever is latest (so a skipped
    step's time counts in the next one's); None while the opening is not known."""

    step: str
    cycle: int
    started_at: datetime | None
    done_at: datetime

    @property
    def position(self) -> int:
        return STEP_ORDER.index(self.step)


@dataclass(frozen=True)
class StepPolicy:
    """Which steps agents may skip (setting COMPLAINT_STEPS_SKIPPABLE); none: strict."""

    skippable: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.skippable) - SKIPPABLE_STEPS
        if unknown:
            raise ValueError(f"steps that cannot be skipped: {sorted(unknown)}")


STRICT = StepPolicy()


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
    reopened_at: datetime | None = None  # the latest reopening: the current cycle's start
    steps: tuple[StepDone, ...] = ()  # every cycle's, in time order (stored apart)


def apply(state: Complaint, event: Event) -> Complaint:
    step = _step_for(type(event.data))
    return state if step is None else step(state, event.data, event.time)


Effect = Callable[[Complaint, Any, datetime], Complaint]


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
        reopened_at=at,
    )


def _step_done(state: Complaint, data: ComplaintStepDone, at: datetime) -> Complaint:
    state = _record_step(state, data.step, at)
    if data.step == "follow_up" or state.status in DONE:
        return state
    # The first four steps are said to the customer: the first response, as `responded`.
    status = state.status
    if data.step == "promise" and status in ("opened", "acknowledged", "reopened"):
        status = "investigating"  # handling promised, details collected
    elif status == "opened":
        status = "acknowledged"
    return copy_with(state, status=status, first_response_at=state.first_response_at or at)


def _proposed(state: Complaint, data: ComplaintSolutionProposed, at: datetime) -> Complaint:
    state = _record_step(state, "propose", at)
    return _active(state, "solution_proposed", promised_at=data.promised_at)


def _resolved(state: Complaint, data: ComplaintResolved, at: datetime) -> Complaint:
    state = _record_step(state, "carry_out", at)
    return copy_with(state, status="resolved", resolved_at=at, before_waiting=None)


def _feedback(state: Complaint, data: ComplaintFeedback, at: datetime) -> Complaint:
    # The customer's satisfaction is known: the follow-up is done if it was not yet.
    return copy_with(_record_step(state, "follow_up", at), feedback_score=data.score)


def _record_step(state: Complaint, step: str, at: datetime) -> Complaint:
    """The step's first completion in the current cycle is kept (a repeat is not a new one)."""
    if is_step_done(state, step):
        return state
    began = max(
        (t for t in (state.opened_at, state.reopened_at, _last_step_at(state)) if t is not None),
        default=None,
    )
    started = None if state.opened_at is None or began is None else min(began, at)
    done = StepDone(step, state.reopen_count, started, at)
    return copy_with(state, steps=(*state.steps, done))


def _last_step_at(state: Complaint) -> datetime | None:
    return state.steps[-1].done_at if state.steps else None


def is_step_done(state: Complaint, step: str) -> bool:
    """Done in the current cycle (the first four steps: in any cycle)."""
    once = step in ONCE_STEPS
    return any(s.step == step and (once or s.cycle == state.reopen_count) for s in state.steps)


# Event data type -> its effect (matched as isinstance, in this order, once per type: checks
# against pydantic models go through ABCMeta and cost more than the step itself).
_STEPS: tuple[tuple[type[EventData], Effect], ...] = (
    (ComplaintOpened, _opened),
    (ComplaintResponded, lambda state, data, at: _responded(state, at)),
    (ComplaintWaiting, _waiting),
    (ComplaintCustomerReplied, _customer_replied),
    (ComplaintStepDone, _step_done),
    (ComplaintSolutionProposed, _proposed),
    (ComplaintEscalated, _escalated),
    (SlaEscalation, _escalated),
    (ComplaintResolved, _resolved),
    (ComplaintReopened, _reopened),
    (ComplaintClosed, lambda state, data, at: copy_with(state, status="closed", closed_at=at)),
    (ComplaintFeedback, _feedback),
    (ComplaintPriorityChanged, lambda state, data, at: copy_with(state, priority=data.priority)),
)
_STEP_OF_TYPE: dict[type, Effect | None] = {}


def _step_for(kind: type) -> Effect | None:
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
    """A command the complaint's current state does not allow (HTTP 409); `field` names what
    stands in the way: the status, or the step (steps.<step>)."""

    def __init__(self, reason: str, field: str = "status") -> None:
        super().__init__(reason)
        self.field = field


class Invalid(Exception):
    """A command whose body the policy refuses (HTTP 422), naming the field."""

    def __init__(self, reason: str, field: str) -> None:
        super().__init__(reason)
        self.field = field


_STEP_EVENT = "crm.complaint.step_done"
COMMANDS: dict[str, tuple[str, frozenset[str]]] = {
    # command: (event type, states it is allowed in)
    "respond": ("crm.complaint.responded", ACTIVE),
    "wait": ("crm.complaint.waiting", ACTIVE - {"opened", "waiting"}),
    # An agent records that the customer answered (phone, letter): ends a wait, and once the
    # first response is given the customer is owed a next response.
    "customer_reply": ("crm.complaint.customer_replied", ACTIVE),
    # The handling steps, in their order (STEP_ORDER); the policy checks the order.
    "listen": (_STEP_EVENT, ACTIVE),
    "thank": (_STEP_EVENT, ACTIVE),
    "apologise": (_STEP_EVENT, ACTIVE),
    "promise": (_STEP_EVENT, ACTIVE),
    "propose": ("crm.complaint.solution_proposed", ACTIVE),
    "resolve": ("crm.complaint.resolved", ACTIVE),  # carry out
    "follow_up": (_STEP_EVENT, DONE),
    "escalate": ("crm.complaint.escalated", ACTIVE),
    "reopen": ("crm.complaint.reopened", DONE),
    "close": ("crm.complaint.closed", frozenset({"resolved"})),
    "feedback": ("crm.complaint.feedback", DONE),
}
# The step each command does (the step_done commands are named after their step).
STEP_OF_COMMAND: dict[str, str] = {
    **{step: step for step in ("listen", "thank", "apologise", "promise", "follow_up")},
    "propose": "propose",
    "resolve": "carry_out",
}

_WHY = {
    "wait": "a complaint waits on the customer only after a first response",
    "close": "a complaint is closed after it is resolved",
    "reopen": "only a resolved or closed complaint can be reopened",
    "customer_reply": "a customer's answer to a resolved complaint is recorded by reopening it",
    "feedback": "feedback is collected once the complaint is resolved",
    "follow_up": "the customer's satisfaction is followed up once the solution is carried out",
}


def decide(state: Complaint, command: str, data: EventData, policy: StepPolicy = STRICT) -> str:
    """The event type the command becomes, or Rejected (Invalid) with the reason."""
    event_type, allowed = COMMANDS[command]
    if state.status not in allowed:
        reason = _WHY.get(command, f"the complaint is {state.status}")
        raise Rejected(f"cannot {command} a complaint that is {state.status}: {reason}")
    if isinstance(data, ComplaintEscalated) and data.level <= state.escalation_level:
        raise Rejected(f"already at escalation level {state.escalation_level}", "body.level")
    step = STEP_OF_COMMAND.get(command)
    if step is not None:
        check_step(state, step, policy)
    if command == "close":
        _check_missing(state, len(STEP_ORDER), "close", policy)
    if isinstance(data, ComplaintSolutionProposed) and data.promised_at is None:
        raise Invalid("a solution is proposed with its timetable", "body.promised_at")
    return event_type


# The data of the event each command makes; its body is these fields but complaint_id (in
# the path) and step (the command names it).
COMMAND_DATA: dict[str, type[EventData]] = {
    "respond": ComplaintResponded,
    "wait": ComplaintWaiting,
    "customer_reply": ComplaintCustomerReplied,
    "listen": ComplaintStepDone,
    "thank": ComplaintStepDone,
    "apologise": ComplaintStepDone,
    "promise": ComplaintStepDone,
    "propose": ComplaintSolutionProposed,
    "escalate": ComplaintEscalated,
    "resolve": ComplaintResolved,
    "reopen": ComplaintReopened,
    "close": ComplaintClosed,
    "feedback": ComplaintFeedback,
    "follow_up": ComplaintStepDone,
}
HIGHEST_ESCALATION_LEVEL = 10  # ComplaintEscalated.level's bound


class InvalidBody(Exception):
    """A command's body wrong in itself, whatever the complaint's state (HTTP 422): each
    error's field and message."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))
        self.errors = errors


def command_event(
    state: Complaint,
    command: str,
    body: dict[str, Any],
    now: datetime,
    policy: StepPolicy = STRICT,
) -> tuple[str, EventData]:
    """What an agent's command (`body`: the fields the agent sent) becomes on the complaint
    as it stands at `now`: the event's type and data. Refused with InvalidBody, Rejected
    (the state stands in the way) or Invalid (the policy refuses the body)."""
    data = command_data(state, command, body, now)
    return decide(state, command, data, policy), data


def command_data(state: Complaint, command: str, body: dict[str, Any], now: datetime) -> EventData:
    """The command's event data: the body with what the command implies (the step it names;
    escalate's level, by default one above the complaint's and at most the highest),
    validated; a promised date may not lie in the past. InvalidBody otherwise."""
    values = dict(body)
    if command == "escalate" and values.get("level") is None:
        values["level"] = min(state.escalation_level + 1, HIGHEST_ESCALATION_LEVEL)
    promised = values.get("promised_at")
    if promised is not None and promised < now:
        raise InvalidBody([("body.promised_at", "is in the past")])
    data_model = COMMAND_DATA[command]
    if data_model is ComplaintStepDone:
        values["step"] = command
    try:
        return data_model.model_validate({"complaint_id": state.complaint_id, **values})
    except ValidationError as error:
        raise InvalidBody(
            [
                ("body." + ".".join(map(str, e["loc"])), e["msg"])
                for e in error.errors(include_url=False)
            ]
        ) from None


def reached(state: Complaint) -> int:
    """Index in STEP_ORDER of the latest step done in the current cycle; -1 before any. A
    reopened complaint's cycle starts at propose (the first conversation was had)."""
    done = [s.position for s in state.steps if is_step_done(state, s.step)]
    floor = _FIRST_REPEATED - 1 if state.reopen_count else -1
    return max([floor, *done])


def check_step(state: Complaint, step: str, policy: StepPolicy = STRICT) -> None:
    """Rejected unless `step` may be done now: every step between the latest one done and it
    is skippable, and the handling is not past it (repeating the latest step is allowed: a
    revised proposal). Steps before the latest one done that were never done (skipped, or
    events from elsewhere) are passed, not owed: the order never blocks for good."""
    position = STEP_ORDER.index(step)
    latest = reached(state)
    if position < latest:
        raise Rejected(
            f"cannot {step}: the handling is past it ('{STEP_ORDER[latest]}' is done; the "
            f"order is {', '.join(STEP_ORDER)})",
            f"steps.{step}",
        )
    _check_missing(state, position, step, policy)


def _check_missing(state: Complaint, position: int, what: str, policy: StepPolicy) -> None:
    for index in range(reached(state) + 1, position):
        earlier = STEP_ORDER[index]
        if earlier not in policy.skippable:
            raise Rejected(
                f"cannot {what}: step {index + 1} of 7, '{earlier}', comes first and is not "
                f"done (the order is {', '.join(STEP_ORDER)}; skippable: "
                f"{', '.join(sorted(policy.skippable)) or 'none'})",
                f"steps.{earlier}",
            )


# ---- how long each step takes -------------------------------------------------------------

Measure = Callable[[datetime, datetime], timedelta]


def wall_time(start: datetime, end: datetime) -> timedelta:
    return end - start


@dataclass(frozen=True)
class StepStats:
    step: str
    count: int
    mean: timedelta | None
    median: timedelta | None
    p90: timedelta | None


def step_durations(
    done: Iterable[StepDone], start: datetime, end: datetime, measure: Measure = wall_time
) -> list[StepStats]:
    """Per step, in the order: the completions in [start, end) with a known start, and the
    count, mean, median and 90th percentile of their durations (done_at - started_at, as
    `measure` counts it: wall time, or business time of a calendar). The percentiles
    interpolate between the nearest ranks (PostgreSQL's percentile_cont); the mean is rounded
    to the microsecond."""
    durations: dict[str, list[timedelta]] = {step: [] for step in STEP_ORDER}
    for record in done:
        if record.started_at is not None and start <= record.done_at < end:
            durations[record.step].append(measure(record.started_at, record.done_at))
    return [_stats(step, values) for step, values in durations.items()]


def _stats(step: str, values: list[timedelta]) -> StepStats:
    if not values:
        return StepStats(step, 0, None, None, None)
    mean = sum(values, timedelta()) / len(values)
    return StepStats(
        step, len(values), mean, percentile_cont(values, 0.5), percentile_cont(values, 0.9)
    )


# ---- the SLA fold's view of the events ----------------------------------------------------

_SLA_KINDS: dict[type[EventData], sla.EventKind] = {
    ComplaintOpened: sla.EventKind.OPENED,
    ComplaintResponded: sla.EventKind.RESPONDED,
    ComplaintStepDone: sla.EventKind.RESPONDED,  # the first four steps; follow_up: none
    ComplaintCustomerReplied: sla.EventKind.CUSTOMER_REPLIED,
    ComplaintWaiting: sla.EventKind.WAITING,
    ComplaintSolutionProposed: sla.EventKind.SOLUTION_PROPOSED,
    ComplaintEscalated: sla.EventKind.ESCALATED,
    ComplaintResolved: sla.EventKind.RESOLVED,
    ComplaintReopened: sla.EventKind.REOPENED,
    ComplaintClosed: sla.EventKind.CLOSED,
    ComplaintPriorityChanged: sla.EventKind.PRIORITY_CHANGED,
}


def sla_event(event: Event) -> sla.ClockEvent | None:
    """The SLA fold's event for a complaint event (None for events without an SLA effect)."""
    kind = _SLA_KINDS.get(type(event.data))
    if kind is None:
        return None
    data = event.data
    if kind is sla.EventKind.RESPONDED and getattr(data, "step", None) == "follow_up":
        return None  # after the resolution: no clock runs, and it is not a reply owed
    priority = getattr(data, "priority", None)
    level = cast(ComplaintEscalated, data).level if kind is sla.EventKind.ESCALATED else None
    return sla.ClockEvent(event.id, kind, event.time, priority=priority, level=level)


def tier_event(event_id: str, at: datetime, tier: str) -> sla.ClockEvent:
    """A customer's tier change for the clocks; a tier we do not know counts as unknown."""
    try:
        known = sla.tier_or_unknown(tier)
    except ValueError:
        known = sla.UNKNOWN_TIER
    return sla.ClockEvent(event_id, sla.EventKind.TIER_CHANGED, at, tier=known)
