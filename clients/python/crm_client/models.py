"""The answers of the operations the client calls, as the services' OpenAPI documents
describe them. Members a newer service adds are kept (extra="allow"), so an older client
still reads a newer answer; the members listed here are checked against the documents."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# ---- ingest ------------------------------------------------------------------------------


class Receipt(Answer):
    """POST /v1/events: what was stored, and where (send `receipt` as `min_position`)."""

    accepted: int
    duplicates: list[str]
    receipt: str


# ---- scoring -----------------------------------------------------------------------------


class RfmScore(Answer):
    recency: int
    frequency: int
    monetary: int
    code: str
    segment: str
    segment_label_en: str
    segment_label_zh: str


class Rfm(Answer):
    customer_id: str
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    recency_days: float | None
    frequency: int
    monetary: Decimal
    currency: str
    scores: RfmScore
    reference: dict[str, Any]


class Lifetime(Answer):
    currency: str
    horizon_weeks: int
    p_alive: float | None
    expected_purchases: float | None
    expected_spend: float | None
    predicted_clv: float | None
    simple_clv: float
    values: dict[str, dict[str, Any]]


class CustomerScore(Answer):
    customer_id: str
    as_of: datetime
    model_version: int | None
    time_unit: str
    horizon_weeks: int
    currency: str
    recency_days: float
    orders: int
    net_spent: float
    rfm: RfmScore
    tier: str
    tier_label_en: str
    tier_label_zh: str
    tier_playbook: dict[str, Any]
    value_class: str
    lifecycle: str
    lifetime: Lifetime
    churn_risk: float
    churn_level: str
    explanations: dict[str, dict[str, Any]]


class CustomerView(Answer):
    """The unified view of one customer."""

    customer_id: str
    profile: dict[str, Any]
    registered_at: datetime | None
    lead: dict[str, Any] | None
    lifecycle: str
    currency: str
    scores: dict[str, Any] | None
    explanations: dict[str, dict[str, Any]]
    surveys: dict[str, Any]
    counts: dict[str, int]
    latest_purchases: list[dict[str, Any]]
    latest_interactions: list[dict[str, Any]]
    latest_complaints: list[dict[str, Any]]
    latest_surveys: list[dict[str, Any]]


# ---- complaints --------------------------------------------------------------------------


class ClockSegment(Answer):
    start: datetime
    end: datetime | None
    elapsed_seconds: float
    ended_by: str | None


class Clock(Answer):
    metric: str
    cycle: int
    status: str
    target_seconds: float
    elapsed_seconds: float
    remaining_seconds: float
    due_at: datetime | None
    warn_at: datetime | None
    breached_at: datetime | None
    segments: list[ClockSegment]


class StepDone(Answer):
    step: str
    cycle: int
    started_at: datetime | None
    done_at: datetime


class HistoryEntry(Answer):
    """One event of a complaint; `data` is that of its `type` (see ingest's
    GET /v1/schemas/{type})."""

    id: str
    type: str
    time: datetime
    source: str
    data: dict[str, Any]


class ComplaintSummary(Answer):
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
    next_due_at: datetime | None


class QueueItem(ComplaintSummary):
    updated_at: datetime


class QueuePage(Answer):
    items: list[QueueItem]
    next_cursor: str | None


class Complaint(ComplaintSummary):
    """One complaint: its state, every SLA clock, the steps done and its history."""

    clocks: list[Clock]
    steps: list[StepDone]
    next_step: str | None
    history: list[HistoryEntry]


class CommandAccepted(Answer):
    event_id: str
    type: str
    status_before: str


class StepDuration(Answer):
    step: str
    position: int
    count: int
    mean_hours: float | None
    median_hours: float | None
    p90_hours: float | None


class StepDurations(Answer):
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    clock: str
    zone: str | None
    steps: list[StepDuration]


class Alert(Answer):
    id: str
    key: str
    dimension: str
    value: str
    window_start: datetime
    window_end: datetime
    count: int
    baseline: float
    score: float
    severity: dict[str, Any]
    stage: str
    next_stage: str | None
    detected_at: datetime


class AlertPage(Answer):
    items: list[Alert]
    next_cursor: str | None


# ---- reporting ---------------------------------------------------------------------------


class DailyKpi(Answer):
    day: date
    revenue: Decimal
    orders: int
    buyers: int


class KpiTable(Answer):
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    granularity: str
    by: str | None
    currency: str
    metrics: list[dict[str, Any]]
    rows: list[dict[str, Any]]


class Card(Answer):
    name: str
    label_en: str
    label_zh: str
    unit: str
    value: str | int | float | None
    previous: str | int | float | None
    growth: float | None
    delta: float | None


class Summary(Answer):
    period: str
    start: date
    end: date
    previous_start: date
    previous_end: date
    basis: str
    currency: str
    cards: list[Card]
    open_crisis_alerts: int
