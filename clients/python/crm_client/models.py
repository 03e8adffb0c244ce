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


class ScoreReference(Answer):
    """The population a customer's scores are ranked against (customers 0: none yet)."""

    run_id: int | None
    as_of: datetime | None
    customers: int


class Rfm(Answer):
    customer_id: str
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    recency_days: float | None
    frequency: int
    monetary: Decimal
    currency: str
    scores: RfmScore
    reference: ScoreReference


class TierPlaybook(Answer):
    name_zh: str
    who: str
    actions: list[str]


class HistoricalValue(Answer):
    amount: float | None
    currency: str | None
    definition: str


class SimpleValue(Answer):
    amount: float | None
    currency: str | None
    lifespan_weeks: float | None
    lifespan_measured: bool | None
    margin: float | None
    discounted: bool
    definition: str


class PredictiveValue(Answer):
    amount: float | None
    currency: str | None
    horizon_weeks: int | None
    discount_rate_per_week: float | None
    annual_discount_rate: float | None
    margin: float | None
    discounted: bool
    definition: str


class LifetimeValues(Answer):
    historical: HistoricalValue
    simple: SimpleValue
    predictive: PredictiveValue


class Explanation(Answer):
    """Why a class is what it is: the rule's branch and the numbers it compared."""

    code: str
    rule: str
    numbers: dict[str, bool | int | float | str | None]
    text_en: str
    text_zh: str


class Lifetime(Answer):
    currency: str
    horizon_weeks: int
    p_alive: float | None
    expected_purchases: float | None
    expected_spend: float | None
    predicted_clv: float | None
    simple_clv: float
    values: LifetimeValues


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
    tier_playbook: TierPlaybook
    value_class: str
    lifecycle: str
    lifetime: Lifetime
    churn_risk: float
    churn_level: str
    explanations: dict[str, Explanation]
    source: str | None = None


class ProfileView(Answer):
    """The customer record; a member the profile events never set is absent (None here)."""

    kind: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    segment: str | None = None
    relationship: str | None = None
    strategic_value: Decimal | None = None


class LeadView(Answer):
    money: bool
    authority: bool
    need: bool
    assessed_by: str | None = None
    assessed_at: datetime
    man_class: str = Field(alias="class")
    action: str
    advice: str
    advice_zh: str


class ViewScores(Answer):
    customer_id: str
    recency_score: int
    frequency_score: int
    monetary_score: int
    segment: str
    tier: str
    value_class: str
    lifecycle: str
    p_alive: float | None
    predicted_clv: float | None
    simple_clv: float
    churn_risk: float
    churn_level: str
    rfm_code: str
    net_spent: Decimal
    orders: int
    last_purchase_at: datetime | None
    scored_as_of: datetime | None
    reference_customers: int
    source: str
    lifetime_values: LifetimeValues


class SurveyKindSummary(Answer):
    responses: int
    latest_score: int
    latest_at: datetime
    average_score: float


class NpsSummary(SurveyKindSummary):
    promoters: int
    detractors: int
    latest_category: str


class CsatSummary(SurveyKindSummary):
    satisfied: int


class SurveySummaries(Answer):
    nps: NpsSummary | None = None
    csat: CsatSummary | None = None


class ActivityCounts(Answer):
    purchases: int
    refunds: int
    interactions: int
    complaints: int
    surveys: int


class PurchaseEntry(Answer):
    event_id: str
    order_id: str
    time: datetime
    amount: Decimal
    is_refund: bool


class InteractionEntry(Answer):
    event_id: str
    time: datetime
    channel: str
    direction: str
    sentiment: str | None
    topic: str | None


class ComplaintEntry(Answer):
    complaint_id: str
    opened_at: datetime
    category: str


class SurveyEntry(Answer):
    kind: str
    score: int
    answered_at: datetime
    survey_id: str | None
    channel: str | None


class CustomerView(Answer):
    """The unified view of one customer."""

    customer_id: str
    profile: ProfileView
    registered_at: datetime | None
    lead: LeadView | None
    lifecycle: str
    currency: str
    scores: ViewScores | None
    explanations: dict[str, Explanation]
    surveys: SurveySummaries
    counts: ActivityCounts
    latest_purchases: list[PurchaseEntry]
    latest_interactions: list[InteractionEntry]
    latest_complaints: list[ComplaintEntry]
    latest_surveys: list[SurveyEntry]


class CustomerListItem(Answer):
    """A buyer's latest scores; a prospect has only customer_id, registered_at, lifecycle."""

    customer_id: str
    lifecycle: str
    registered_at: datetime | None = None
    segment: str | None = None
    tier: str | None = None
    value_class: str | None = None
    churn_risk: float | None = None
    churn_level: str | None = None
    predicted_clv: float | None = None
    simple_clv: float | None = None
    net_spent: Decimal | None = None
    orders: int | None = None
    last_purchase_at: datetime | None = None


class CustomerPage(Answer):
    items: list[CustomerListItem]
    next_cursor: str | None
    currency: str | None
    horizon_weeks: int | None


class LeadItem(Answer):
    customer_id: str
    assessed_at: datetime
    money: bool
    authority: bool
    need: bool
    assessed_by: str | None
    has_bought: bool
    man_class: str = Field(alias="class")
    action: str
    advice: str
    advice_zh: str
    lifecycle: str | None


class LeadPage(Answer):
    items: list[LeadItem]
    next_cursor: str | None


class BgNbdFit(Answer):
    r: float | None
    alpha: float | None
    a: float | None
    b: float | None
    log_likelihood: float | None


class GammaGammaFit(Answer):
    p: float
    q: float
    gamma: float
    log_likelihood: float | None
    customers: int | None


class ClvModel(Answer):
    """The lifetime-value model: BG/NBD and (with enough repeat buyers) Gamma-Gamma."""

    version: int
    fitted_at: datetime
    observation_end: datetime
    time_unit: str
    customers: int
    bgnbd: BgNbdFit
    gamma_gamma: GammaGammaFit | None


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


class Severity(Answer):
    """How grave a crisis is: magnitude (count against baseline) and reach (customers and
    channels), 1-3 each; None while not assessed."""

    level: str | None
    magnitude: int | None
    reach: int | None
    customers: int | None
    channels: int | None
    difficulty: str | None


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
    severity: Severity
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


class MetricInfo(Answer):
    name: str
    group: str
    label_en: str
    label_zh: str
    unit: str
    formula: str
    source: str


class KpiRow(Answer):
    """One period (and slice); each metric asked for is a member of its name (`metric()`):
    money a decimal string, counts integers, the rest numbers, None without data."""

    period: date
    period_end: date
    tier: str | None = None
    segment: str | None = None
    channel: str | None = None
    category: str | None = None

    def metric(self, name: str) -> str | int | float | None:
        extra = self.model_extra or {}
        if name not in extra:
            raise KeyError(f"{name!r} was not asked for")
        value: str | int | float | None = extra[name]
        return value


class KpiTable(Answer):
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    granularity: str
    by: str | None
    currency: str
    metrics: list[MetricInfo]
    rows: list[KpiRow]


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


class CrisisAlert(Answer):
    """A crisis alert as reporting keeps it (complaints' `Alert` adds the handling stage)."""

    id: str
    detected_at: datetime
    dimension: str
    value: str
    window_start: datetime
    window_end: datetime
    count: int
    baseline: float
    score: float
    open: bool


class CrisisAlertPage(Answer):
    items: list[CrisisAlert]
    next_cursor: str | None
