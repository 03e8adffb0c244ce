"""Complaints' HTTP routes: one complaint with its history and SLA clocks, the agents' queue,
crisis alerts, the agents' commands (the handling steps checked against their order), and
how long each handling step takes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from fastapi import Body, HTTPException, Path, Query
from pydantic import BaseModel, Field, create_model

from services.complaints import fold, policy_store, sla, store
from services.complaints.business_time import business_elapsed
from services.complaints.domain import (
    COMMAND_DATA,
    COMMANDS,
    HIGHEST_ESCALATION_LEVEL,
    STEP_ORDER,
    Complaint,
    Invalid,
    InvalidBody,
    Rejected,
    StepDone,
    StepPolicy,
    StepStats,
    command_event,
    derive,
    reached,
    step_durations,
)
from services.complaints.resources import Complaints, ComplaintsResources
from shared.auth import api_router
from shared.db import Connection
from shared.events import (
    EVENT_TYPES,
    ComplaintEvent,
    Event,
    EventData,
    Priority,
    Timestamp,
    new_event,
)
from shared.http import (
    BODY_TOO_LARGE,
    BoundedBodyRoute,
    ErrorBody,
    decode_cursor,
    encode_cursor,
    invalid,
)
from shared.outbox import append_events

router = api_router("complaints:act", tags=["complaints"], route_class=BoundedBodyRoute)

ComplaintId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[^/\s]+$", examples=["c-1001"])
]
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "Unknown complaint."}}
BAD_INPUT: Responses = {422: {"model": ErrorBody, "description": "Invalid parameter."}}
AGENT_SOURCE = "crm/complaints/agent"


async def _current_sla_config(res: ComplaintsResources) -> sla.SlaConfig:
    """The SLA configuration with the rules as stored now: another instance may have added a
    version a moment ago, and a clock that names it must not fail the read."""
    settings = res.settings
    await policy_store.refresh_now(res.pool, settings)
    return settings.sla_config()


def _policy(res: ComplaintsResources) -> StepPolicy:
    return StepPolicy(frozenset(res.settings.complaint_steps_skippable))


class ClockSegmentOut(BaseModel):
    start: datetime
    end: datetime | None = Field(description="None: the stretch is still counting.")
    elapsed_seconds: float = Field(
        description="Business seconds counted in the stretch (0 while it still counts)."
    )
    ended_by: str | None = Field(
        description="The kind of event that ended it (waiting, resolved, ...); None while it "
        "still counts.",
        examples=["waiting"],
    )


class ClockOut(BaseModel):
    metric: str
    cycle: int
    status: str = Field(description="running, paused, met or breached")
    target_seconds: float = Field(description="Target, in business seconds.")
    elapsed_seconds: float
    remaining_seconds: float
    due_at: datetime | None
    warn_at: datetime | None
    breached_at: datetime | None
    segments: list[ClockSegmentOut] = Field(description="Every stretch the clock counted.")


def _clock(view: sla.ClockView) -> ClockOut:
    return ClockOut(
        metric=view.metric.value,
        cycle=view.cycle,
        status=view.status.value,
        target_seconds=view.target.total_seconds(),
        elapsed_seconds=view.elapsed.total_seconds(),
        remaining_seconds=view.remaining.total_seconds(),
        due_at=view.due_at,
        warn_at=view.warn_at,
        breached_at=view.breached_at,
        segments=[
            ClockSegmentOut(
                start=s.start,
                end=s.end,
                elapsed_seconds=s.elapsed.total_seconds(),
                ended_by=s.ended_by.value if s.ended_by else None,
            )
            for s in view.segments
        ],
    )


class WaitExpiredOut(BaseModel):
    waiting_since: datetime
    expired_at: datetime


class StepOut(BaseModel):
    step: str
    cycle: int = Field(description="0, then one more per reopen.")
    started_at: datetime | None = Field(
        description="When its turn began: the previous step done, the opening or the reopening."
    )
    done_at: datetime


def _step(done: StepDone) -> StepOut:
    return StepOut(
        step=done.step, cycle=done.cycle, started_at=done.started_at, done_at=done.done_at
    )


def _history_entry(name: str, data_model: type[EventData]) -> type[BaseModel]:
    """The history entry of one event type: `type` tells a client which `data` it holds."""
    words = name.removeprefix("crm.").replace(".", "_").split("_")
    model_name = "".join(word.capitalize() for word in words) + "Entry"
    tag: Any = Literal[name]  # a type made at run time: mypy cannot follow it
    entry: type[BaseModel] = create_model(
        model_name,
        id=(str, ...),
        type=(tag, ...),
        time=(datetime, ...),
        source=(str, ...),
        data=(data_model, ...),
    )
    return entry


# Every event type a complaint's history can hold: fold.complaint_of keeps complaint data
# only (of which it leaves the SLA warnings and breaches out).
HISTORY_TYPES = {
    name: t.data_model
    for (name, _), t in EVENT_TYPES.items()
    if issubclass(t.data_model, ComplaintEvent)
}
if TYPE_CHECKING:
    HistoryEntry = BaseModel
else:
    HistoryEntry = Annotated[
        Union[tuple(_history_entry(n, m) for n, m in HISTORY_TYPES.items())],  # noqa: UP007
        Field(discriminator="type"),
    ]


class ComplaintSummary(BaseModel):
    """A complaint's state as the queue lists it."""

    complaint_id: str
    customer_id: str
    status: str
    channel: str | None
    category: str | None
    priority: str | None
    product: str | None
    tier: str
    opened_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    promised_at: datetime | None
    escalation_level: int
    reopen_count: int
    reopened_at: datetime | None
    feedback_score: int | None
    breached: bool
    next_due_at: datetime | None = Field(
        description="The earliest deadline of a running SLA clock: the queue's order."
    )


class ComplaintOut(ComplaintSummary):
    clocks: list[ClockOut] = Field(description="Every SLA clock, every cycle, as of now.")
    waits_expired: list[WaitExpiredOut] = Field(
        description="Waits on the customer that reached SLA_MAX_WAIT_HOURS: the paused clocks "
        "resumed by themselves at expired_at."
    )
    steps: list[StepOut] = Field(description="The handling steps done, in time order.")
    next_step: str | None = Field(
        description="The step after the latest one done in the current cycle (none after "
        "follow_up)."
    )
    history: list[HistoryEntry] = Field(
        description="Every event, in time order; `type` says which `data` it carries."
    )


@router.get(
    "/complaints/{complaint_id}",
    response_model=ComplaintOut,
    summary="One complaint: state, history and every SLA clock",
    responses=NOT_FOUND,
)
async def get_complaint(complaint_id: ComplaintId, res: Complaints) -> ComplaintOut:
    found = await store.load_complaint(res.pool, complaint_id)
    if found is None:
        raise HTTPException(404, f"no complaint '{complaint_id}'")
    events = (await store.load_history(res.pool, [complaint_id]))[complaint_id]
    tiers = await store.customer_tiers(res.pool, found["customer_id"])
    config = await _current_sla_config(res)
    keys, breaches = (await store.published_sla_events(res.pool, [complaint_id]))[complaint_id]
    start = fold.new_folded(complaint_id, found["customer_id"], keys, breaches)
    folded = fold.derive(start, events, tiers, config)
    state = folded.clocks
    now = datetime.now(UTC)
    views = sla.all_clock_views(state, now, config)
    waits = [
        WaitExpiredOut(waiting_since=since, expired_at=at)
        for since, at in sla.expired_waits(state, now, config)
    ]
    history = [
        {"id": e.id, "type": e.type, "time": e.time, "source": e.envelope.source, "data": e.data}
        for e in sorted(events, key=lambda e: (e.time, e.id))
    ]
    fields = set(ComplaintOut.model_fields) - {
        "clocks",
        "history",
        "waits_expired",
        "steps",
        "next_step",
    }
    following = reached(folded.complaint) + 1
    return ComplaintOut(
        **{k: found[k] for k in fields},
        clocks=[_clock(v) for v in views],
        waits_expired=waits,
        steps=[_step(s) for s in folded.complaint.steps],
        next_step=STEP_ORDER[following] if following < len(STEP_ORDER) else None,
        history=history,
    )


class StepDurationOut(BaseModel):
    step: str
    position: int = Field(description="1-7, its place in the order.")
    count: int = Field(description="Completions in the period with a known start.")
    mean_hours: float | None
    median_hours: float | None
    p90_hours: float | None


class StepDurationsOut(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    clock: Literal["business", "wall"] = Field(
        description="business: hours of the SLA calendar's working time; wall: elapsed hours."
    )
    zone: str | None = Field(description="The SLA calendar's zone (business clock).")
    steps: list[StepDurationOut]


def _hours(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds() / 3600


def _duration_out(position: int, stats: StepStats) -> StepDurationOut:
    return StepDurationOut(
        step=stats.step,
        position=position,
        count=stats.count,
        mean_hours=_hours(stats.mean),
        median_hours=_hours(stats.median),
        p90_hours=_hours(stats.p90),
    )


@router.get(
    "/complaints/steps/durations",
    response_model=StepDurationsOut,
    summary="How long each handling step takes: count, mean, median, p90 over a period",
    description="A step's duration runs from the moment its turn began (the previous step "
    "done, the opening, or the reopening for the steps a reopen repeats) to its first "
    "completion in the cycle; a step counts in the period its completion falls in "
    "[from, to). Default period: the 30 days before now.",
    responses=BAD_INPUT,
)
async def get_step_durations(
    res: Complaints,
    start: Annotated[Timestamp | None, Query(alias="from")] = None,
    end: Annotated[Timestamp | None, Query(alias="to")] = None,
    clock: Literal["business", "wall"] = "business",
) -> StepDurationsOut:
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=30)
    if start >= end:
        raise invalid("query.from", "must be before to")
    calendar = (await _current_sla_config(res)).calendar
    done = await store.steps_done_between(res.pool, start, end)
    if clock == "business":
        stats = step_durations(done, start, end, lambda a, b: business_elapsed(calendar, a, b))
    else:
        stats = step_durations(done, start, end)
    return StepDurationsOut(
        start=start,
        end=end,
        clock=clock,
        zone=calendar.zone if clock == "business" else None,
        steps=[_duration_out(n, s) for n, s in enumerate(stats, start=1)],
    )


class QueueItem(ComplaintSummary):
    updated_at: datetime


class QueuePage(BaseModel):
    items: list[QueueItem]
    next_cursor: str | None = Field(
        description="Send it as `cursor` for the next page; None: this was the last."
    )


@router.get(
    "/complaints",
    response_model=QueuePage,
    summary="The agents' queue, most urgent first (earliest deadline; breached first)",
    responses=BAD_INPUT,
)
async def list_complaints(
    res: Complaints,
    status: Annotated[str | None, Query(max_length=32)] = None,
    breached: bool | None = None,
    due_before: Timestamp | None = None,
    priority: Priority | None = None,
    tier: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> QueuePage:
    after = decode_cursor(cursor)
    rows = await store.queue(
        res.pool,
        status=status,
        breached=breached,
        due_before=due_before,
        priority=priority,
        tier=tier,
        limit=limit,
        after=after,
    )
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = encode_cursor(last["sort_key"], last["complaint_id"])
    shown = QueueItem.model_fields
    items = [QueueItem(**{k: v for k, v in r.items() if k in shown}) for r in rows]
    return QueuePage(items=items, next_cursor=next_cursor)


# Crisis alerts (paged), their stages and timeline: crisis_api.py.


# ---- agent commands -----------------------------------------------------------------------


def _body_model(command: str, data_model: type[EventData]) -> type[BaseModel]:
    """The request body: the event's data without complaint_id (it is in the path) and the
    step (the command names it)."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in data_model.model_fields.items()
        if name not in ("complaint_id", "step")
    }
    if command == "escalate":  # the level defaults to one above the current one
        fields["level"] = (int | None, Field(default=None, ge=1, le=HIGHEST_ESCALATION_LEVEL))
    name = "".join(word.capitalize() for word in command.split("_"))
    return create_model(f"{name}Request", __config__=data_model.model_config, **fields)


class CommandAccepted(BaseModel):
    event_id: str
    type: str
    status_before: str


async def _current(conn: Connection, complaint_id: str) -> tuple[list[Event], Complaint]:
    folded = (await store.load_history(conn, [complaint_id]))[complaint_id]
    seen = {e.id for e in folded}
    pending = [e for e in await store.own_pending(conn, complaint_id) if e.id not in seen]
    events = folded + pending
    if not events:
        raise HTTPException(404, f"no complaint '{complaint_id}'")
    return events, derive(complaint_id, events[0].subject, events)


def _refusal(refused: InvalidBody | Rejected | Invalid) -> HTTPException:
    """A refused command in the error format: for a body wrong in itself, "invalid request"
    and each field's error; otherwise the reason and the field it is about (409: the state
    stands in the way; 422: the policy refuses the body)."""
    if isinstance(refused, InvalidBody):
        errors = [{"field": field, "message": message} for field, message in refused.errors]
        return HTTPException(422, {"detail": "invalid request", "errors": errors})
    reason = str(refused)
    return HTTPException(
        409 if isinstance(refused, Rejected) else 422,
        {"detail": reason, "errors": [{"field": refused.field, "message": reason}]},
    )


def _command_route(command: str) -> None:
    body_model = _body_model(command, COMMAND_DATA[command])

    async def run(
        complaint_id: ComplaintId, res: Complaints, body: BaseModel | None = None
    ) -> CommandAccepted:
        values: dict[str, Any] = body.model_dump(exclude_unset=True) if body is not None else {}
        async with res.pool.acquire() as conn, conn.transaction():
            await store.lock_complaint(conn, complaint_id)
            _, state = await _current(conn, complaint_id)
            now = datetime.now(UTC)
            try:
                event_type, data = command_event(state, command, values, now, _policy(res))
            except (InvalidBody, Rejected, Invalid) as refused:
                raise _refusal(refused) from None
            event = new_event(
                event_type,
                state.customer_id,
                data,
                source=AGENT_SOURCE,
                event_id=str(uuid.uuid4()),
                time=now,
            )
            await append_events(conn, [event])
        if res.relay is not None:
            res.relay.notify()
        return CommandAccepted(event_id=event.id, type=event_type, status_before=state.status)

    # Annotations are strings here (postponed evaluation); FastAPI must see the real body type.
    run.__annotations__["body"] = Annotated[body_model | None, Body()]
    router.add_api_route(
        f"/complaints/{{complaint_id}}/{command}",
        run,
        methods=["POST"],
        status_code=202,
        response_model=CommandAccepted,
        summary=f"Agent command: {command} ({COMMANDS[command][0]})",
        responses=NOT_FOUND
        | BAD_INPUT
        | BODY_TOO_LARGE
        | {
            409: {
                "model": ErrorBody,
                "description": "Not allowed now: `errors[0].field` names what stands in the "
                "way (`status`, or `steps.<step>` for a step out of order).",
            }
        },
        name=f"complaint_{command}",
    )


for _command in COMMAND_DATA:
    _command_route(_command)
