"""Reporting's HTTP routes: the KPI table (JSON or CSV), the headline cards, crisis alerts,
the metric catalogue, the skeleton's daily endpoint, and the dashboard page."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from fastapi import HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, Field, create_model

from services.reporting import kpi, store
from services.reporting.kpi import Granularity, Unit
from services.reporting.memo import Answer
from services.reporting.metrics import (
    COHORT_RETENTION,
    METRICS,
    SUMMARY_METRICS,
    Dimension,
    Period,
    cohort_rows,
    sources_of,
    table,
)
from services.reporting.resources import Reporting, ReportingResources
from services.reporting.settings import ReportingSettings
from shared.auth import api_router
from shared.http import ErrorBody, decode_cursor, encode_cursor, invalid

router = api_router("reports:read", tags=["kpis"])
# The dashboard page and its scripts hold no data: the page asks for a key and sends it with
# every call to /v1.

MAX_DAYS = 3 * 366
MAX_PERIODS = MAX_DAYS
EARLIEST = date(1970, 1, 1)  # no event is older (shared/events.py)
FUTURE_DAYS = 366
DEFAULT_SPAN = {Granularity.DAY: 30, Granularity.WEEK: 12, Granularity.MONTH: 12}
BAD_INPUT: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "Invalid parameter."}
}


def _iso_date(value: object) -> object:
    """Only YYYY-MM-DD: pydantic alone would also read a number as a Unix time."""
    if not isinstance(value, date) and not (
        isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)
    ):
        raise ValueError("a date is written YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]


def _today(settings: ReportingSettings) -> date:
    return kpi.local_date(datetime.now(UTC), ZoneInfo(settings.timezone))


# --------------------------------------------------------------------------- /v1/kpis/daily


class DailyKpi(BaseModel):
    day: date
    revenue: Decimal = Field(description="Net of refunds, reporting currency.")
    orders: int
    buyers: int = Field(description="Distinct customers who bought that day (exact).")


@router.get(
    "/kpis/daily",
    response_model=list[DailyKpi],
    summary="Revenue, orders and distinct buyers per day",
    responses={422: {"model": ErrorBody, "description": "Bad or too long date range."}},
)
async def get_daily(
    res: Reporting,
    first: Annotated[IsoDate, Query(alias="from", examples=["2026-11-01"])],
    last: Annotated[IsoDate, Query(alias="to", examples=["2026-11-30"])],
) -> list[DailyKpi]:
    if last < first:
        raise invalid("query.to", "before 'from'")
    if (last - first).days >= MAX_DAYS:
        raise invalid("query.to", f"a range covers at most {MAX_DAYS} days")
    return [DailyKpi(**row) for row in await store.daily_kpis(res.pool, first, last)]


# --------------------------------------------------------------------------- /v1/kpis


class MetricInfo(BaseModel):
    name: str = Field(examples=["revenue"])
    group: str = Field(examples=["sales"])
    label_en: str = Field(examples=["Revenue"])
    label_zh: str = Field(examples=["营业额"])
    unit: Unit
    formula: str
    source: str
    slices: list[Dimension] = Field(description="The `by` values this metric accepts.")


class _KpiTableHead(BaseModel):
    """One row per period (and slice): `period`, `period_end`, the slice column named after
    `by`, then one column per metric. Money is a decimal string with cents in `currency`;
    ratios are fractions; NPS is -100..100, CSAT 0..100; durations are business seconds;
    null means no data (a zero denominator)."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "from": "2026-11-01",
                    "to": "2026-11-30",
                    "granularity": "week",
                    "by": "tier",
                    "currency": "USD",
                    "metrics": [],
                    "rows": [
                        {
                            "period": "2026-10-27",
                            "period_end": "2026-11-02",
                            "tier": "gold",
                            "revenue": "1250.00",
                            "repeat_purchase_rate": 0.25,
                        }
                    ],
                }
            ]
        }
    }

    from_: date = Field(alias="from")
    to: date
    granularity: Granularity
    by: Dimension | None
    currency: str
    metrics: list[MetricInfo]


class _KpiRowHead(BaseModel):
    period: date = Field(description="First day of the period.")
    period_end: date = Field(description="Last day of the period (inclusive).")
    tier: str | None = Field(default=None, description="With by=tier: the row's slice.")
    segment: str | None = Field(default=None, description="With by=segment: the row's slice.")
    channel: str | None = Field(default=None, description="With by=channel: the row's slice.")
    category: str | None = Field(default=None, description="With by=category: the row's slice.")


def _metric_member(unit: Unit) -> Any:
    """How a row shows a metric of this unit (metrics.present): money as a decimal string,
    counts as integers, the rest as numbers; null: no data."""
    if unit is Unit.MONEY:
        return str | None
    if unit is Unit.COUNT:
        return int | None
    return float | None


# One member per metric of the catalogue, rather than a map of numbers: a generated client
# gets each metric by name with its own type (money a decimal string, counts integers) and
# its definition, which a map of `number | string` would lose; the catalogue is code, so the
# document changes only when a metric is added. A row holds the metrics asked for, so none
# is required.
_METRIC_MEMBERS: dict[str, Any] = {
    name: (
        _metric_member(m.unit),
        Field(default=None, description=f"{m.label_en} ({m.unit.value}): {m.formula}"),
    )
    for name, m in METRICS.items()
}
KpiRow = create_model(
    "KpiRow",
    __base__=_KpiRowHead,
    __doc__="One period (and slice): `period`, `period_end`, the slice member named after "
    "`by`, then each metric asked for (GET /v1/kpis/metrics).",
    **_METRIC_MEMBERS,
)
KpiTable = create_model(
    "KpiTable",
    __base__=_KpiTableHead,
    __doc__=_KpiTableHead.__doc__,
    rows=(list[KpiRow], ...),
)


def _info(name: str) -> MetricInfo:
    m = METRICS[name]
    return MetricInfo(
        name=m.name,
        group=m.group,
        label_en=m.label_en,
        label_zh=m.label_zh,
        unit=m.unit,
        formula=m.formula,
        source=m.source,
        slices=sorted(m.slices),
    )


def _metric_names(value: str | None, by: Dimension | None) -> list[str]:
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    if not names:
        return [n for n, m in METRICS.items() if by is None or by in m.slices]
    errors = [
        {"field": "query.metrics", "message": f"unknown metric '{n}'"}
        for n in names
        if n not in METRICS
    ]
    if by is not None:
        errors += [
            {
                "field": "query.by",
                "message": f"'{n}' cannot be sliced by {by.value} "
                f"(it can by: {', '.join(sorted(METRICS[n].slices)) or 'nothing'})",
            }
            for n in names
            if n in METRICS and by not in METRICS[n].slices
        ]
    if errors:
        raise HTTPException(422, {"detail": "invalid request", "errors": errors})
    return list(dict.fromkeys(names))


def _range(
    first: date | None, last: date | None, granularity: Granularity, today: date
) -> tuple[date, date]:
    """The days asked for, defaults filled in; 422 for a range outside what is kept."""
    last = last or today
    if last < EARLIEST:
        raise invalid("query.to", f"before {EARLIEST}")
    if last > today + timedelta(days=FUTURE_DAYS):
        raise invalid("query.to", f"more than {FUTURE_DAYS} days in the future")
    if first is None:
        first = kpi.period_start(last, granularity)
        for _ in range(DEFAULT_SPAN[granularity] - 1):
            first = kpi.period_start(first - timedelta(days=1), granularity)
    if first < EARLIEST:
        raise invalid("query.from", f"before {EARLIEST}")
    if last < first:
        raise invalid("query.to", "before 'from'")
    return first, last


def _periods(first: date, last: date, granularity: Granularity) -> list[Period]:
    """The periods of the range (each with the start of the one before); 422 if too many."""
    starts = kpi.period_starts(first, last, granularity)
    if len(starts) > MAX_PERIODS:
        raise invalid("query.to", f"a range covers at most {MAX_PERIODS} periods")
    return [
        Period(
            s,
            kpi.next_period_start(s, granularity) - timedelta(days=1),
            kpi.period_start(s - timedelta(days=1), granularity),
        )
        for s in starts
    ]


async def _compute(
    res: ReportingResources,
    periods: list[Period],
    granularity: Granularity,
    names: list[str],
    by: Dimension | None,
    *,
    partial: bool = False,
) -> list[dict[str, Any]]:
    """`partial`: each period counts its days up to its `last` only (a period so far)."""
    settings = res.settings
    needs_previous = any(METRICS[n].growth_of for n in names)
    starts = {p.start for p in periods}
    if needs_previous:
        starts |= {p.previous for p in periods if p.previous is not None}
    last = {p.start: p.last for p in periods} if partial else None
    cells = await store.read_cells(
        res.pool,
        store.Periods.of(starts, granularity, last),
        by,
        sources_of(names),
        today=_today(settings),
        churn_after_days=settings.churn_after_days,
        churn_reasons=any(n.startswith("churn_reason_") for n in names),
        repeat_window_days=settings.reporting_repeat_window_days,
    )
    if not needs_previous:
        periods = [Period(p.start, p.last) for p in periods]
    return table(cells, periods, names, by)


def _wants_csv(request: Request, fmt: str | None) -> bool:
    """CSV when asked by `format=csv`, or when Accept prefers text/csv to JSON."""
    if fmt is not None:
        return fmt == "csv"
    best, best_q = "application/json", -1.0
    for part in request.headers.get("accept", "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media in ("text/csv", "application/json", "*/*") and q > best_q:
            best, best_q = media, q
    return best == "text/csv"


def _csv(rows: list[dict[str, Any]], columns: list[str], filename: str) -> Answer:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
    return Answer(
        out.getvalue().encode(),
        "text/csv; charset=utf-8",
        {"content-disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/kpis",
    response_model=KpiTable,
    summary="KPIs by day, week or month, optionally sliced; JSON, or CSV with Accept: text/csv",
    responses=BAD_INPUT | {200: {"content": {"text/csv": {}}}},
)
async def get_kpis(
    request: Request,
    res: Reporting,
    metrics: Annotated[
        str | None,
        Query(
            max_length=4000,
            description="Comma-separated metric names (GET /v1/kpis/metrics); default: all "
            "that can be sliced by `by`.",
            examples=["revenue,orders,repeat_purchase_rate"],
        ),
    ] = None,
    first: Annotated[
        IsoDate | None,
        Query(
            alias="from",
            description="First day (local); default: the span before `to` "
            "(30 days, 12 weeks or 12 months).",
            examples=["2026-11-01"],
        ),
    ] = None,
    last: Annotated[
        IsoDate | None,
        Query(alias="to", description="Last day (local); default: today.", examples=["2026-11-30"]),
    ] = None,
    granularity: Annotated[
        Granularity, Query(description="Periods: day, ISO week (from Monday) or month.")
    ] = Granularity.DAY,
    by: Annotated[Dimension | None, Query(description="Slice each period by this.")] = None,
    fmt: Annotated[
        Literal["json", "csv"] | None, Query(alias="format", description="Overrides Accept.")
    ] = None,
) -> Any:
    settings = res.settings
    names = _metric_names(metrics, by)
    today = _today(settings)
    first, last = _range(first, last, granularity, today)
    wants_csv = _wants_csv(request, fmt)
    # The answer depends on these and on the read model's version, nothing else.
    question = ("kpis", tuple(names), first, last, granularity, by, wants_csv, today)
    version = await store.read_model_version(res.pool)
    kept = res.caches.answers.get(question, version)
    if kept is None:
        periods = _periods(first, last, granularity)
        rows = await _compute(res, periods, granularity, names, by)
        if wants_csv:
            columns = ["period", "period_end", *([by.value] if by else []), *names]
            kept = _csv(rows, columns, f"kpis-{first}-{last}-{granularity.value}.csv")
        else:
            body = {
                "from": first,
                "to": last,
                "granularity": granularity,
                "by": by,
                "currency": settings.reporting_currency,
                "metrics": [_info(n).model_dump() for n in names],
                "rows": rows,
            }
            kept = Answer(orjson.dumps(body), "application/json")
        res.caches.answers.put(question, version, kept)
    return Response(kept.body, media_type=kept.media_type, headers=kept.headers)


@router.get(
    "/kpis/metrics",
    response_model=list[MetricInfo],
    summary="Every metric: labels (English, Chinese), unit, formula, source, slices",
)
async def get_metrics() -> list[MetricInfo]:
    return [_info(n) for n in METRICS]


# --------------------------------------------------------------------------- cohorts

MAX_COHORTS = 120  # months
DEFAULT_COHORTS = 12


class CohortDefinition(BaseModel):
    name: str
    label_en: str
    label_zh: str
    unit: Unit
    formula: str
    source: str


class Cohort(BaseModel):
    cohort: date = Field(description="First day of the cohort's month (first purchase).")
    customers: int = Field(description="Customers whose first purchase ever is in that month.")
    active: list[int] = Field(
        description="Index k: of those, the customers who bought in month cohort + k, from "
        "k = 0 (the cohort's own month) to the current month."
    )
    retention: list[float | None] = Field(
        description="Index k: active[k] / customers (null for an empty cohort)."
    )


class CohortMatrix(BaseModel):
    from_: date = Field(alias="from", description="The first cohort month.")
    to: date = Field(description="The last cohort month.")
    current_month: date = Field(
        description="Today's month (local): the last column of every row, counted so far."
    )
    definition: CohortDefinition
    cohorts: list[Cohort]


@router.get(
    "/kpis/cohorts",
    response_model=CohortMatrix,
    summary="Cohort retention matrix: first-purchase month x months since, the share of the "
    "cohort that bought in each month",
    responses=BAD_INPUT,
)
async def get_cohorts(
    res: Reporting,
    first: Annotated[
        IsoDate | None,
        Query(
            alias="from",
            description="A day of the first cohort month; default: 11 months before `to`.",
            examples=["2025-01-01"],
        ),
    ] = None,
    last: Annotated[
        IsoDate | None,
        Query(
            alias="to",
            description="A day of the last cohort month (at most the current one); default: "
            "today (local).",
            examples=["2025-12-01"],
        ),
    ] = None,
) -> CohortMatrix:
    current = _today(res.settings).replace(day=1)
    to = (last or current).replace(day=1)
    if to > current:
        raise invalid("query.to", "after the current month: its cohorts have no purchases yet")
    start = (
        first.replace(day=1) if first else max(kpi.add_months(to, 1 - DEFAULT_COHORTS), EARLIEST)
    )
    if start < EARLIEST:
        raise invalid("query.from", f"before {EARLIEST}")
    if to < start:
        raise invalid("query.to", "before 'from'")
    months = kpi.period_starts(start, to, Granularity.MONTH)
    if len(months) > MAX_COHORTS:
        raise invalid("query.to", f"at most {MAX_COHORTS} cohort months")
    counts = await store.cohort_counts(res.pool, start, to)
    return CohortMatrix.model_validate(
        {
            "from": start,
            "to": to,
            "current_month": current,
            "definition": CohortDefinition(**COHORT_RETENTION),
            "cohorts": cohort_rows(counts.sizes, counts.active, months, current),
        }
    )


# --------------------------------------------------------------------------- summary


class Card(BaseModel):
    name: str = Field(examples=["revenue"])
    label_en: str
    label_zh: str
    unit: Unit
    value: str | int | float | None = Field(description="This period (so far).")
    previous: str | int | float | None = Field(description="The period before.")
    growth: float | None = Field(
        description="Relative change (0.1 = +10 %) for money and counts, else null."
    )
    delta: float | None = Field(
        description="Absolute change (current - previous) for rates, scores and durations."
    )


class Summary(BaseModel):
    period: Granularity
    start: date
    end: date = Field(description="The last day counted: today while the period runs.")
    previous_start: date
    previous_end: date = Field(
        description="The last day of the period before that is compared: as many days from "
        "its start as the current period has had so far (capped at its end)."
    )
    basis: Literal["period_to_date", "whole_periods"] = Field(
        description="period_to_date: the period so far against the same days of the one "
        "before; whole_periods: a period that is over against the whole one before."
    )
    currency: str
    cards: list[Card]
    open_crisis_alerts: int


def _card(name: str, current: dict[str, Any], previous: dict[str, Any]) -> Card:
    metric = METRICS[name]
    now, before = current[name], previous[name]
    growth = delta = None
    if now is not None and before is not None:
        if metric.unit in (Unit.MONEY, Unit.COUNT):
            rate = kpi.growth_rate(Decimal(now), Decimal(before))
            growth = None if rate is None else round(float(rate), 6)
        else:
            delta = round(float(now) - float(before), 6)
    return Card(
        name=name,
        label_en=metric.label_en,
        label_zh=metric.label_zh,
        unit=metric.unit,
        value=now,
        previous=before,
        growth=growth,
        delta=delta,
    )


@router.get(
    "/kpis/summary",
    response_model=Summary,
    summary="Headline cards: this day, week or month so far against the same days of the "
    "one before",
    responses=BAD_INPUT,
)
async def get_summary(
    res: Reporting,
    period: Annotated[Granularity, Query(description="The period of the cards.")] = (
        Granularity.MONTH
    ),
    on: Annotated[
        IsoDate | None,
        Query(alias="date", description="A day of the period; default: today (local)."),
    ] = None,
) -> Summary:
    settings = res.settings
    today = _today(settings)
    day = on or today
    if day < EARLIEST or day > today + timedelta(days=FUTURE_DAYS):
        raise invalid("query.date", f"outside {EARLIEST}..{FUTURE_DAYS} days from now")
    compared = kpi.like_for_like(day, today, period)
    periods = [
        Period(compared.previous_start, compared.previous_end),
        Period(compared.start, compared.end),
    ]
    before, current = await _compute(
        res, periods, period, list(SUMMARY_METRICS), None, partial=True
    )
    open_alerts = await store.crisis_alerts(res.pool, open_since=_open_since(settings), limit=1000)
    return Summary(
        period=period,
        start=compared.start,
        end=compared.end,
        previous_start=compared.previous_start,
        previous_end=compared.previous_end,
        basis=compared.basis,
        currency=settings.reporting_currency,
        cards=[_card(name, current, before) for name in SUMMARY_METRICS],
        open_crisis_alerts=len(open_alerts),
    )


# --------------------------------------------------------------------------- alerts


class CrisisAlert(BaseModel):
    id: str
    detected_at: datetime
    dimension: str = Field(examples=["category"])
    value: str = Field(examples=["delivery"])
    window_start: datetime
    window_end: datetime
    count: int = Field(description="Complaints or negative signals in the window.")
    baseline: float = Field(description="Expected count over the window.")
    score: float = Field(description="CUSUM value that crossed the decision interval.")
    open: bool = Field(description="The window ended within REPORTING_CRISIS_OPEN_HOURS.")


def _open_since(settings: ReportingSettings) -> datetime:
    return datetime.now(UTC) - timedelta(hours=settings.reporting_crisis_open_hours)


class AlertPage(BaseModel):
    items: list[CrisisAlert] = Field(description="Newest first (detected_at, then id).")
    next_cursor: str | None = Field(
        description="Pass as `cursor`, with the same `status`, for the next page; null on "
        "the last page."
    )


# A page of alerts after a cursor (detected_at, event_id), newest first; $1 open_since (NULL:
# every alert; else the latest per series among those still open), $2/$3 the cursor (NULL:
# the first page), $4 the page size.
_ALERT_PAGE = """
SELECT * FROM (
    SELECT DISTINCT ON (dimension, value) * FROM crisis_alerts
    WHERE $1::timestamptz IS NOT NULL AND window_end >= $1
    ORDER BY dimension, value, detected_at DESC, event_id DESC
) AS open_latest
WHERE $2::timestamptz IS NULL OR (detected_at, event_id) < ($2, $3::text)
UNION ALL
SELECT * FROM crisis_alerts
WHERE $1::timestamptz IS NULL
  AND ($2::timestamptz IS NULL OR (detected_at, event_id) < ($2, $3::text))
ORDER BY detected_at DESC, event_id DESC
LIMIT $4
"""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _alert_cursor(detected_at: datetime, event_id: str) -> str:
    """The cursor after an alert: its time in whole microseconds since 1970 (a float holds
    them exactly), so the next page starts exactly after it."""
    micros = (detected_at - EPOCH) // timedelta(microseconds=1)
    return encode_cursor(float(micros), event_id)


def _after_alert(cursor: str | None) -> tuple[datetime | None, str | None]:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None, None
    micros, event_id = decoded
    if not abs(micros) < 2**53:  # also NaN and infinities: no alert's time
        raise invalid("query.cursor", "not a cursor this API returned")
    return EPOCH + timedelta(microseconds=int(micros)), event_id


@router.get(
    "/alerts",
    response_model=AlertPage,
    tags=["alerts"],
    summary="Crisis alerts from reporting's own read model: open ones (latest per series) "
    "or all, newest first (paged)",
    responses=BAD_INPUT,
)
async def get_alerts(
    res: Reporting,
    status: Annotated[Literal["open", "all"], Query()] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> AlertPage:
    since = _open_since(res.settings)
    after, after_id = _after_alert(cursor)
    rows = await res.pool.fetch(
        _ALERT_PAGE, since if status == "open" else None, after, after_id, limit
    )
    items = [
        CrisisAlert(
            id=r["event_id"],
            detected_at=r["detected_at"],
            dimension=r["dimension"],
            value=r["value"],
            window_start=r["window_start"],
            window_end=r["window_end"],
            count=r["count"],
            baseline=r["baseline"],
            score=r["score"],
            open=r["window_end"] >= since,
        )
        for r in rows
    ]
    next_cursor = None
    if len(rows) == limit:
        next_cursor = _alert_cursor(rows[-1]["detected_at"], rows[-1]["event_id"])
    return AlertPage(items=items, next_cursor=next_cursor)
