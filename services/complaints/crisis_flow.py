"""Crisis detection and handling, one way: feed the closed hours to the detectors, judge each
alert's severity from its evidence, store and emit it; move an alert through its stages.
The pure parts are `crisis.py`, `crisis_severity.py` and `crisis_stages.py`; the SQL is
`store.py` (counts, detector state) and `crisis_store.py` (alerts, reach, stages)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.complaints import crisis, crisis_store, fold, store
from services.complaints.crisis_severity import SeverityConfig, assess, counted, describe
from services.complaints.crisis_stages import Stage, check_move
from shared.db import Connection
from shared.events import CrisisDetected, CrisisStageChanged, Event, new_event
from shared.outbox import append_events

DETECTED = "crm.crisis.detected"
AGENT_SOURCE = "crm/complaints/agent"  # as the complaint commands: an agent's decision


async def evaluate_crisis(
    conn: Connection, now: datetime, config: crisis.CrisisConfig, severity: SeverityConfig
) -> int:
    """Feed every closed hour not yet seen to the detectors; store and emit their alerts
    with their severity. Returns the number of alerts.

    Counts that arrive for an hour already evaluated are kept (reports see them) but do not
    re-run the detector: its state only moves forward.
    """
    state = await store.crisis_state_for_update(conn)
    assert state is not None
    last_closed = _hour_of(now) - timedelta(hours=1)
    first = (
        state["last_hour"] + timedelta(hours=1)
        if state["last_hour"]
        else await store.first_signal_hour(conn)
    )
    if first is None or first > last_closed:
        return 0
    by_hour: dict[datetime, dict[crisis.SeriesKey, int]] = defaultdict(dict)
    for r in await store.signal_counts_between(conn, first, last_closed):
        series = crisis.SeriesKey(crisis.Dimension(r["dimension"]), r["value"])
        by_hour[r["hour"]][series] = r["count"]
    detectors = {s.series: s for s in map(crisis.state_from_dict, orjson.loads(state["detectors"]))}
    alerts: list[crisis.CrisisAlert] = []
    hour = first
    while hour <= last_closed:
        detectors, found = crisis.observe_all(detectors, hour, by_hour.get(hour, {}), config)
        alerts += found
        hour += timedelta(hours=1)
    encoded = orjson.dumps([crisis.state_to_dict(d) for d in detectors.values()]).decode()
    await store.save_crisis_state(conn, last_closed, encoded)
    judged = [await _judge(conn, a, severity) for a in alerts]
    await crisis_store.insert_alerts(conn, judged)
    await append_events(conn, [_detected_event(a, j) for a, j in zip(alerts, judged, strict=True)])
    return len(alerts)


async def _judge(
    conn: Connection, alert: crisis.CrisisAlert, config: SeverityConfig
) -> crisis_store.StoredAlert:
    reach = await crisis_store.series_reach(
        conn, alert.series, alert.window_start, alert.window_end
    )
    severity = assess(alert.count, alert.baseline, reach, config)
    text = describe(alert, reach, severity)
    return crisis_store.StoredAlert(
        key=alert.key,
        series=alert.series,
        window_start=alert.window_start,
        window_end=alert.window_end,
        count=alert.count,
        baseline=alert.baseline,
        score=alert.score,
        counted=counted(alert.series).code,
        reach=reach,
        ratio=severity.ratio,
        magnitude=severity.magnitude,
        reach_level=severity.reach,
        severity=severity.level,
        text_en=text.en,
        text_zh=text.zh,
    )


def _detected_event(alert: crisis.CrisisAlert, judged: crisis_store.StoredAlert) -> Event:
    return new_event(
        DETECTED,
        f"crisis:{alert.series.dimension.value}",
        CrisisDetected(
            dimension=alert.series.dimension.value,
            value=alert.series.value[:128],
            window_start=alert.window_start,
            window_end=alert.window_end,
            count=alert.count,
            baseline=alert.baseline,
            score=alert.score,
            decision_interval=alert.decision_interval,
            counted=judged.counted,
            customers=judged.reach.customers,
            channels=judged.reach.channels,
            ratio=judged.ratio,
            magnitude=judged.magnitude,
            reach=judged.reach_level,
            severity=judged.severity,
        ),
        source=fold.SOURCE,
        event_id=alert.key,
        time=alert.window_end,
    )


# ---- stages ---------------------------------------------------------------------------------


class UnknownAlert(Exception):
    pass


@dataclass(frozen=True)
class StageMove:
    """What an agent asks: the stage to move to, with who, why and how hard it looks."""

    stage: Stage
    agent_id: str | None = None
    note: str | None = None
    difficulty: str | None = None  # low, medium, high: 处理难度 as the team judges it


async def move_stage(conn: Connection, alert_id: str, move: StageMove, now: datetime) -> Event:
    """Move the alert to its next stage (StageRefused if out of order), in the caller's
    transaction: the alert row is locked, changed, and the change appended to the log."""
    row = await crisis_store.alert(conn, alert_id, for_update=True)
    if row is None:
        raise UnknownAlert(alert_id)
    current = Stage(row["stage"])
    check_move(current, move.stage)
    series = crisis.SeriesKey(crisis.Dimension(row["dimension"]), row["value"])
    count = await crisis_store.series_count(conn, series, row["window_start"], _hour_of(now))
    event = _stage_event(row, current, move, count, now)
    await crisis_store.set_stage(conn, alert_id, move.stage.value, now, move.difficulty)
    await append_events(conn, [event])
    return event


def _stage_event(row: Any, current: Stage, move: StageMove, count: int, now: datetime) -> Event:
    return new_event(
        crisis_store.STAGE_CHANGED,
        f"crisis:{row['dimension']}",
        CrisisStageChanged.model_validate(
            {
                "alert_id": row["key"],
                "dimension": row["dimension"],
                "value": row["value"][:128],
                "previous": current.value,
                "stage": move.stage.value,
                "count": count,
                "agent_id": move.agent_id,
                "note": move.note,
                "difficulty": move.difficulty,
            }
        ),
        source=AGENT_SOURCE,
        event_id=f"{row['key']}:{move.stage.value}",  # one entry into each stage
        time=now,
    )


def _hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
