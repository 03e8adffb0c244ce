"""Complaints' crisis routes: the alerts (paged), an alert's move to its next handling stage
(an agent's command), and its timeline for the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from services.complaints import crisis_flow, crisis_store
from services.complaints.crisis import Dimension, SeriesKey
from services.complaints.crisis_stages import FIRST, Stage, StageRefused, next_stage
from services.complaints.resources import Complaints
from shared.auth import api_router
from shared.events import Identifier, LongText, Timestamp
from shared.http import BODY_TOO_LARGE, BoundedBodyRoute, ErrorBody, decode_cursor, encode_cursor

router = api_router("complaints:act", tags=["alerts"], route_class=BoundedBodyRoute)

AlertId = Annotated[str, Path(pattern=r"^[0-9a-f]{20}$", examples=["3f2a9c0d1e4b5a6c7d8e"])]
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "Unknown alert."}}
BAD_INPUT: Responses = {422: {"model": ErrorBody, "description": "Invalid parameter."}}
TIMELINE_CONTEXT = timedelta(hours=24)  # hours drawn before the window and after the last step
TIMELINE_MAX_HOURS = 30 * 24
Level = Literal["low", "medium", "high"]


class SeverityOut(BaseModel):
    level: Level | None = Field(description="low (score 2-3), medium (4), high (5-6)")
    magnitude: int | None = Field(description="严重程度 1-3, from count / baseline")
    reach: int | None = Field(description="影响范围 1-3, from distinct customers and channels")
    customers: int | None
    channels: int | None
    difficulty: Level | None = Field(description="处理难度, as the team judged it")


class AlertOut(BaseModel):
    id: str = Field(description="For the alert's URLs.")
    key: str = Field(description="The id of its crm.crisis.detected event.")
    dimension: str
    value: str
    counted: str | None = Field(
        description="What count counts: complaints, nps_detractors, csat_negative or "
        "negative_interactions (negative signals are not complaints)."
    )
    text_en: str | None
    text_zh: str | None
    window_start: datetime
    window_end: datetime
    count: int
    baseline: float = Field(description="Expected count over the window.")
    ratio: float | None
    score: float
    severity: SeverityOut
    stage: Stage
    stage_at: datetime | None = Field(description="When it entered its stage (None: identify).")
    next_stage: Stage | None
    detected_at: datetime


def _alert(row: Any) -> AlertOut:
    severity = SeverityOut(
        level=row["severity"],
        magnitude=row["magnitude"],
        reach=row["reach"],
        customers=row["customers"],
        channels=row["channels"],
        difficulty=row["difficulty"],
    )
    plain = [
        *("id", "key", "dimension", "value", "counted", "text_en", "text_zh", "window_start"),
        *("window_end", "count", "baseline", "ratio", "score", "stage_at", "detected_at"),
    ]
    stage = Stage(row["stage"])
    return AlertOut(
        **{k: row[k] for k in plain}, severity=severity, stage=stage, next_stage=next_stage(stage)
    )


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None


@router.get(
    "/alerts",
    response_model=AlertPage,
    summary="Crisis alerts with their evidence, severity and stage, latest window first",
    responses=BAD_INPUT,
)
async def get_alerts(
    res: Complaints,
    start: Annotated[Timestamp | None, Query(alias="from")] = None,
    end: Annotated[Timestamp | None, Query(alias="to")] = None,
    stage: Stage | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> AlertPage:
    rows = await crisis_store.alerts_page(
        res.pool,
        start=start,
        end=end,
        stage=stage.value if stage else None,
        limit=limit,
        after=decode_cursor(cursor),
    )
    next_cursor = None
    if len(rows) == limit:
        next_cursor = encode_cursor(rows[-1]["sort_key"], rows[-1]["id"])
    return AlertPage(items=[_alert(r) for r in rows], next_cursor=next_cursor)


class StageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    stage: Stage = Field(description="The next stage: identify -> respond -> control -> recover.")
    agent_id: Identifier | None = None
    note: LongText | None = None
    difficulty: Level | None = Field(default=None, description="处理难度, as the team judges it.")


class StageChangedOut(BaseModel):
    alert_id: str
    previous: Stage
    stage: Stage
    at: datetime
    count: int = Field(description="The series' count from the window start to this hour.")
    event_id: str = Field(description="Its crm.crisis.stage_changed event.")


@router.post(
    "/alerts/{alert_id}/stage",
    response_model=StageChangedOut,
    summary="Agent command: move an alert to its next handling stage",
    responses=NOT_FOUND
    | BAD_INPUT
    | BODY_TOO_LARGE
    | {409: {"model": ErrorBody, "description": "Not the next stage (the reason says why)."}},
)
async def move_stage(alert_id: AlertId, body: StageRequest, res: Complaints) -> StageChangedOut:
    move = crisis_flow.StageMove(body.stage, body.agent_id, body.note, body.difficulty)
    try:
        async with res.pool.acquire() as conn, conn.transaction():
            event = await crisis_flow.move_stage(conn, alert_id, move, datetime.now(UTC))
    except crisis_flow.UnknownAlert:
        raise HTTPException(404, f"no alert '{alert_id}'") from None
    except StageRefused as refused:
        raise HTTPException(409, str(refused)) from None
    if res.relay is not None:
        res.relay.notify()
    data = event.data.model_dump()
    return StageChangedOut(
        alert_id=alert_id,
        previous=data["previous"],
        stage=data["stage"],
        at=event.time,
        count=data["count"],
        event_id=event.id,
    )


class StageEntry(BaseModel):
    stage: Stage
    at: datetime
    count: int = Field(description="The series' count from the window start to this hour.")
    agent_id: str | None = None
    note: str | None = None
    difficulty: Level | None = None


class HourCount(BaseModel):
    hour: datetime
    count: int


class TimelineOut(BaseModel):
    alert: AlertOut
    stages: list[StageEntry] = Field(description="identify (when detected), then each move.")
    hours: list[HourCount] = Field(
        description="The series' hourly counts, from a day before the window to a day after "
        "the last stage change (or now), zero hours included."
    )
    expected_per_hour: float = Field(description="The baseline's mean over the alert window.")


@router.get(
    "/alerts/{alert_id}/timeline",
    response_model=TimelineOut,
    summary="An alert's crisis timeline: stage changes with times and counts, hourly counts",
    responses=NOT_FOUND,
)
async def timeline(alert_id: AlertId, res: Complaints) -> TimelineOut:
    row = await crisis_store.alert(res.pool, alert_id)
    if row is None:
        raise HTTPException(404, f"no alert '{alert_id}'")
    stages = [StageEntry(stage=FIRST, at=row["detected_at"], count=row["count"])]
    for change in await crisis_store.stage_changes(res.pool, row["key"]):
        data = change.data.model_dump()
        fields = ("stage", "count", "agent_id", "note", "difficulty")
        stages.append(StageEntry(at=change.time, **{k: data[k] for k in fields}))
    series = SeriesKey(Dimension(row["dimension"]), row["value"])
    first, last = _drawn_hours(row["window_start"], stages[-1].at, datetime.now(UTC))
    counts = await crisis_store.hourly_counts(res.pool, series, first, last)
    hours = []
    hour = first
    while hour <= last:
        hours.append(HourCount(hour=hour, count=counts.get(hour, 0)))
        hour += timedelta(hours=1)
    window_hours = (row["window_end"] - row["window_start"]) / timedelta(hours=1)
    return TimelineOut(
        alert=_alert(row),
        stages=stages,
        hours=hours,
        expected_per_hour=row["baseline"] / window_hours,
    )


def _drawn_hours(
    window_start: datetime, last_change: datetime, now: datetime
) -> tuple[datetime, datetime]:
    first = _hour(window_start - TIMELINE_CONTEXT)
    last = min(_hour(last_change + TIMELINE_CONTEXT), _hour(now))
    return first, min(max(last, first), first + timedelta(hours=TIMELINE_MAX_HOURS - 1))


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
