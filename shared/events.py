"""The CloudEvents envelope and every v1 event type, with their topics and validation.

One module is the contract between the services and every system that publishes to our
topics: `validate_event` is used by ingest on HTTP input and by every consumer on what it
reads, so both sides accept and reject exactly the same things.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, get_args

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
# The services' own events (derived events, agent commands, keys) have sources under this
# prefix; the gateway refuses it from anyone else.
RESERVED_SOURCE_PREFIX = "crm/"
SCHEMA_VERSION_ATTRIBUTE = "schemaversion"
MAX_AMOUNT = Decimal("1000000000000")  # 1e12 in any currency: beyond it, an input error
MAX_TOTAL = MAX_AMOUNT * 1000  # sums over many customers (customer equity)
# Every time and date an event carries lies in [1970, 2100); an event's own `time` is also
# at most FUTURE_TOLERANCE_SECONDS ahead of now.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)
MAX_PERIOD_DAYS = 366  # a marketing spend covers at most a year
# Durations (SLA targets and clocks) fit between the earliest and the latest time.
MAX_SECONDS = (LATEST_TIME - EARLIEST_TIME).total_seconds()
MAX_COUNT = 1_000_000_000  # counts carried by derived events
MAX_EXTENSIONS = 20  # CloudEvents extension attributes per event
MAX_EXTENSION_LENGTH = 1024
MAX_ERRORS = 50  # reasons reported per invalid event; the rest are summed up
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,64}")  # CloudEvents 1.0 attribute naming
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _rfc3339(value: object) -> object:
    """A time in JSON is an RFC 3339 string; pydantic alone would also take a number of
    seconds since 1970 or a bare date."""
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time with a UTC offset (2026-11-02T10:15:00+01:00)")


def _time_in_range(value: datetime) -> datetime:
    if not EARLIEST_TIME <= value < LATEST_TIME:
        raise ValueError("must be from 1970 up to the end of 2099")
    return value


def _iso_date(value: object) -> object:
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise ValueError("must be a date YYYY-MM-DD")


def _date_in_range(value: date) -> date:
    if not EARLIEST_TIME.date() <= value < LATEST_TIME.date():
        raise ValueError("must be from 1970 up to the end of 2099")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_time_in_range)]
Day = Annotated[date, BeforeValidator(_iso_date), AfterValidator(_date_in_range)]


class Topic(StrEnum):
    CUSTOMERS = "crm.customers"
    PURCHASES = "crm.purchases"
    INTERACTIONS = "crm.interactions"
    COMPLAINTS = "crm.complaints"
    SURVEYS = "crm.surveys"
    MARKETING = "crm.marketing"
    DERIVED = "crm.derived"  # events the services derive (tier changes, SLA breaches, alerts)
    KEYS = "crm.keys"  # API keys issued and revoked with `crm keys` (hashes only)
    DEADLETTER = "crm.deadletter"


# ISO 4217 active codes (list of 2025, incl. XCG and ZWG). Embedded rather than depending on
# pycountry: that package is 8 MB of data for the 180 codes we need.
ISO_4217 = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP
    DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
    IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD
    MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
    PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD
    SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS
    VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA
    XXX YER ZAR ZMW ZWG ZWL""".split()  # noqa: SIM905 - codes read best as text
)

ShortText = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(max_length=10_000)]
Identifier = Annotated[str, Field(min_length=1, max_length=128)]
Amount = Annotated[
    Decimal, Field(ge=0, le=MAX_AMOUNT, max_digits=22, decimal_places=6, allow_inf_nan=False)
]
InteractionChannel = Literal["phone", "email", "chat", "social", "video", "visit", "sms"]
ContactMethod = Literal["phone", "email", "sms", "chat", "social", "visit"]
ComplaintChannel = Literal["hotline", "online_form", "chat", "email", "social_media", "store_box"]
ComplaintCategory = Literal[
    "service_attitude",
    "service_quality",
    "product_quality",
    "price_billing",
    "communication",
    "delivery",
    "other",
]


class Priority(StrEnum):
    """A complaint's priority: on its events, and what complaints' SLA policies select by."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


class Tier(StrEnum):
    """A customer's tier (客户分层): scoring assigns it, tier-changed events carry it, and
    complaints' SLA policies select by it."""

    GOLD = "gold"
    DEVELOPING = "developing"
    POTENTIAL = "potential"
    FORGOTTEN = "forgotten"


# What SLA events (and complaints' SLA policies) name as the customer's tier: a Tier, or
# "unknown" for a customer scoring has not placed (not scored yet, or a tier we do not know).
UNKNOWN_TIER: Final = "unknown"


def _one_tier_error(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """One error naming every accepted value, not one per member of the union."""
    try:
        return handler(value)
    except ValidationError:
        names = ", ".join(f"'{name}'" for name in (*Tier, UNKNOWN_TIER))
        raise ValueError(f"must be one of {names}") from None


TierOrUnknown = Annotated[Tier | Literal["unknown"], WrapValidator(_one_tier_error)]


Relationship = Literal["prospect", "new", "current", "lapsed", "reluctant"]
ChurnReason = Literal["price", "competitor", "service_quality", "product_quality", "other"]


class EventData(BaseModel):
    """Base of every event's `data`: immutable, and unknown fields are an error (typos)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )


class MonetaryData(EventData):
    """Money as a decimal with its ISO 4217 currency.

    A deployment reports in one currency; an amount in another one must carry
    `reporting_amount`, its value converted by the sender.
    """

    amount: Amount
    currency: str = Field(min_length=3, max_length=3, examples=["USD"])
    reporting_amount: Amount | None = None

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in ISO_4217:
            raise ValueError(f"'{value}' is not an ISO 4217 currency code")
        return value

    @model_validator(mode="after")
    def _convertible(self, info: ValidationInfo) -> MonetaryData:
        reporting = (info.context or {}).get("reporting_currency")
        if reporting and self.currency != reporting and self.reporting_amount is None:
            raise ValueError(
                f"reporting_amount is required when currency {self.currency} differs from "
                f"the reporting currency {reporting}"
            )
        return self

    @property
    def value(self) -> Decimal:
        """The amount in the reporting currency."""
        return self.amount if self.reporting_amount is None else self.reporting_amount


class CustomerProfile(EventData):
    kind: Literal["individual", "organisation"] | None = None
    name: ShortText | None = None
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    gender: Literal["female", "male", "other", "unspecified"] | None = None
    occupation: ShortText | None = None
    address: Annotated[str, Field(max_length=500)] | None = None
    phone: Annotated[str, Field(max_length=50)] | None = None
    fax: Annotated[str, Field(max_length=50)] | None = None
    email: Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    industry: ShortText | None = None
    size: Annotated[str, Field(max_length=50)] | None = None
    segment: Annotated[str, Field(max_length=64)] | None = None
    acquisition_channel: Annotated[str, Field(max_length=64)] | None = None
    preferred_contact: ContactMethod | None = None
    consent: dict[Annotated[str, Field(max_length=32)], bool] | None = Field(
        default=None, max_length=20
    )
    relationship: Relationship | None = None
    reason: ChurnReason | None = None  # why a customer is reluctant or lapsed
    strategic_value: Amount | None = Field(
        default=None,
        description="Value the customer brings beyond their spend (referrals, a reference "
        "account), in the reporting currency, as the account team estimates it; value "
        "classes add it to the margin. The latest event that sets it counts (0 clears it).",
    )


class CustomerRegistered(CustomerProfile):
    kind: Literal["individual", "organisation"] = "individual"
    name: ShortText


class CustomerUpdated(CustomerProfile):
    @model_validator(mode="after")
    def _changes_something(self) -> CustomerUpdated:
        if not self.model_fields_set:
            raise ValueError("an update must set at least one field")
        return self


class CustomerErased(EventData):
    """Right to erasure: the customer's personal data leaves every read model and is
    redacted in the event stores; ids, times and amounts stay for the aggregates."""

    reason: LongText | None = None


# What erasure removes from an event's data: names, contacts and free text. Labels (channels,
# categories, priorities), ids, times and amounts stay, so the aggregates stay right.
PERSONAL_FIELDS = frozenset(
    {
        "name",
        "email",
        "phone",
        "fax",
        "address",
        "occupation",
        "birth_year",
        "gender",
        "consent",
        "description",
        "message",
        "comment",
        "notes",
        "resolution",
        "solution",
    }
)
ERASED_TYPE = "crm.customer.erased"


def redact_body(body: dict[str, Any]) -> dict[str, Any]:
    """An event body without personal data (the erased event itself is kept as it is)."""
    if body.get("type") == ERASED_TYPE or not isinstance(body.get("data"), dict):
        return body
    data = {k: v for k, v in body["data"].items() if k not in PERSONAL_FIELDS}
    if "name" in body["data"]:
        data["name"] = "[erased]"  # required on registration: a placeholder, not the name
    if str(body.get("type", "")).startswith("crm.complaint.") and "reason" in data:
        del data["reason"]  # a complaint step's reason is free text (a refund's is a code)
    return {**body, "data": data, "redacted": "erasure"}


class LineItem(EventData):
    sku: Identifier
    name: ShortText | None = None
    category: Annotated[str, Field(max_length=64)] | None = None
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    unit_price: Amount | None = None


class PurchaseCompleted(MonetaryData):
    order_id: Identifier
    channel: Annotated[str, Field(max_length=64)] | None = None
    items: list[LineItem] = Field(default_factory=list, max_length=500)


class PurchaseRefunded(MonetaryData):
    order_id: Identifier
    reason: ChurnReason | None = None


class InteractionLogged(EventData):
    channel: InteractionChannel
    direction: Literal["inbound", "outbound"]
    synchronous: bool | None = None
    handled_by: Literal["human", "bot"] = "human"
    topic: Annotated[str, Field(max_length=64)] | None = None
    outcome: Annotated[str, Field(max_length=64)] | None = None
    duration_seconds: int | None = Field(default=None, ge=0, le=7 * 86_400)
    agent_id: Identifier | None = None
    sentiment: Literal["negative", "neutral", "positive"] | None = None


class ComplaintEvent(EventData):
    complaint_id: Identifier


class ComplaintOpened(ComplaintEvent):
    channel: ComplaintChannel
    category: ComplaintCategory
    priority: Priority = Priority.MEDIUM
    product: Annotated[str, Field(max_length=128)] | None = None
    description: LongText | None = None


class ComplaintResponded(ComplaintEvent):
    agent_id: Identifier | None = None
    message: LongText | None = None


class ComplaintWaiting(ComplaintEvent):
    reason: LongText | None = None


class ComplaintEscalated(ComplaintEvent):
    level: int = Field(ge=1, le=10)
    reason: LongText | None = None


class ComplaintResolved(ComplaintEvent):
    resolution: LongText | None = None


class ComplaintReopened(ComplaintEvent):
    reason: LongText | None = None


class ComplaintClosed(ComplaintEvent):
    pass


class ComplaintFeedback(ComplaintEvent):
    score: int = Field(ge=1, le=5, description="Satisfaction with the handling, 1-5.")
    comment: LongText | None = None


class ComplaintSolutionProposed(ComplaintEvent):
    solution: LongText | None = None
    promised_at: Timestamp | None = Field(
        default=None, description="When the solution will be carried out, as promised."
    )


class ComplaintCustomerReplied(ComplaintEvent):
    """The customer answered: ends waiting-on-customer and resumes the SLA clocks."""

    message: LongText | None = None


class ComplaintPriorityChanged(ComplaintEvent):
    priority: Priority


# The handling steps that have no event of their own (propose is solution_proposed, carry out
# is resolved); follow_up is also done by the customer's feedback.
RecordedStep = Literal["listen", "thank", "apologise", "promise", "follow_up"]


class ComplaintStepDone(ComplaintEvent):
    """An agent did one of the seven handling steps (the others have their own events)."""

    step: RecordedStep
    agent_id: Identifier | None = None
    notes: LongText | None = Field(  # personal data: erasure removes it (PERSONAL_FIELDS)
        default=None, description="What was said or collected (the restated complaint, details)."
    )


class SurveyNps(EventData):
    score: int = Field(ge=0, le=10)
    survey_id: Identifier | None = None
    channel: Annotated[str, Field(max_length=64)] | None = None
    comment: LongText | None = None


class SurveyCsat(EventData):
    score: int = Field(ge=1, le=5)
    survey_id: Identifier | None = None
    channel: Annotated[str, Field(max_length=64)] | None = None
    topic: Annotated[str, Field(max_length=64)] | None = None
    comment: LongText | None = None


class MarketingSpend(MonetaryData):
    channel: Annotated[str, Field(min_length=1, max_length=64)]
    campaign: Identifier | None = None
    period_start: Day | None = None
    period_end: Day | None = None

    @model_validator(mode="after")
    def _sane_period(self) -> MarketingSpend:
        if self.period_start and self.period_end:
            if self.period_end < self.period_start:
                raise ValueError("period_end is before period_start")
            if (self.period_end - self.period_start).days >= MAX_PERIOD_DAYS:
                raise ValueError(f"a period covers at most {MAX_PERIOD_DAYS} days")
        return self


class LeadAssessed(EventData):
    """The MAN rule: Money (can pay), Authority (can decide), Need (has the need)."""

    money: bool
    authority: bool
    need: bool
    assessed_by: Identifier | None = None
    notes: LongText | None = None


# API keys (topic crm.keys). `crm keys` records them in ingest's event store; every service
# folds them into its own schema, so each checks keys without reading another's tables.

Scope = Literal[
    "events:write", "customers:erase", "customers:read", "complaints:act", "reports:read", "admin"
]
SCOPES: tuple[str, ...] = get_args(Scope)


class ApiKeyIssued(EventData):
    """A key was issued (subject: the key id). Only the SHA-256 of the whole token travels;
    the token is shown once, by `crm keys create`."""

    name: ShortText
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(SCOPES))]
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    # Events per second this key may send to ingest; none: the ingest default.
    rate_limit: float | None = Field(default=None, gt=0, le=1_000_000)
    # After this instant every service refuses the key; none: it never expires. Optional, so
    # the key events stored before expiry existed still validate.
    expires_at: Timestamp | None = None


class ApiKeyRevoked(EventData):
    """The key (subject) stops working everywhere."""

    reason: LongText | None = None


# Events the services derive (topic crm.derived). Other services fold them like any other.


class ClassChanged(EventData):
    """A customer's class moved at a re-score (recency moves with the clock)."""

    old: Annotated[str, Field(max_length=64)] | None = None
    new: Annotated[str, Field(max_length=64)]
    as_of: Timestamp
    churn_risk: float | None = Field(default=None, ge=0, le=1)


class TierSummary(EventData):
    """Customers and lifetime value of one tier at a re-score (subject: "tier:<tier>")."""

    as_of: Timestamp
    tier: Tier
    customers: int = Field(ge=0, le=MAX_COUNT)
    customer_equity: Decimal | None = Field(
        default=None,
        ge=-MAX_TOTAL,
        le=MAX_TOTAL,
        decimal_places=6,
        description="Sum of predicted CLV of the tier; null when it is not known (no model).",
    )
    average_clv: Decimal | None = Field(default=None, ge=-MAX_TOTAL, le=MAX_TOTAL, decimal_places=6)
    horizon_weeks: int | None = Field(
        default=None, ge=1, le=520, description="Horizon of the predicted CLV (older events: none)."
    )


SlaMetric = Literal["first_response", "next_response", "resolution"]


class SlaEventData(ComplaintEvent):
    """An SLA warning or breach; the event's time is when it happened (the warning or due
    instant), not when the service noticed it."""

    metric: SlaMetric
    cycle: int = Field(ge=0, le=MAX_COUNT)
    target_seconds: float = Field(ge=0, le=MAX_SECONDS, description="Target in business seconds.")
    priority: Priority | None = None
    tier: TierOrUnknown | None = None
    category: Annotated[str, Field(max_length=64)] | None = None
    channel: Annotated[str, Field(max_length=64)] | None = None


class SlaEscalation(SlaEventData):
    level: int = Field(ge=1, le=10)


class SlaClockStopped(SlaEventData):
    """A clock stopped (met, or stopped after its breach): the durations KPIs read. A clock a
    reopen restarts stops again later with a new event; the latest per clock counts."""

    outcome: Literal["met", "breached"]
    elapsed_seconds: float = Field(
        ge=0, le=MAX_SECONDS, description="Business seconds the clock counted."
    )


class SlaWaitExpired(SlaEventData):
    """A wait on the customer reached its maximum: this clock, paused by the wait, resumed by
    itself at the event's time (one event per clock the wait had paused)."""

    waiting_since: Timestamp


CrisisCounted = Literal["complaints", "nps_detractors", "csat_negative", "negative_interactions"]
SeverityLevel = Literal["low", "medium", "high"]
CrisisStage = Literal["identify", "respond", "control", "recover"]


class CrisisDetected(EventData):
    """A rate of complaints or negative signals far above the series' own baseline."""

    dimension: Annotated[str, Field(max_length=32)] = Field(examples=["category"])
    value: Annotated[str, Field(max_length=128)] = Field(examples=["delivery"])
    window_start: Timestamp
    window_end: Timestamp
    count: int = Field(ge=0, le=MAX_COUNT)
    baseline: float = Field(ge=0, le=MAX_COUNT, description="Expected count over the window.")
    score: float = Field(description="Poisson CUSUM value that crossed the decision interval.")
    decision_interval: float
    # Issue 15 item 7 (optional: alerts raised before it carry none of these).
    counted: CrisisCounted | None = Field(
        default=None, description="What `count` counts: complaints, or which negative signal."
    )
    customers: int | None = Field(default=None, ge=0, le=MAX_COUNT, description="Distinct.")
    channels: int | None = Field(default=None, ge=0, le=MAX_COUNT, description="Distinct.")
    ratio: float | None = Field(default=None, ge=0, description="count / baseline.")
    magnitude: int | None = Field(default=None, ge=1, le=3, description="严重程度, 1-3.")
    reach: int | None = Field(default=None, ge=1, le=3, description="影响范围, 1-3.")
    severity: SeverityLevel | None = None


class CrisisStageChanged(EventData):
    """An agent moved a crisis alert to its next handling stage (identify, respond, control,
    recover); `count` is what the series had counted from the alert's window start through
    the hour of the change."""

    alert_id: Annotated[str, Field(min_length=1, max_length=256)]
    dimension: Annotated[str, Field(max_length=32)]
    value: Annotated[str, Field(max_length=128)]
    previous: CrisisStage
    stage: CrisisStage
    count: int = Field(ge=0, le=MAX_COUNT)
    agent_id: Identifier | None = None
    note: LongText | None = None
    difficulty: SeverityLevel | None = Field(default=None, description="处理难度, as judged.")


class CustomerSilentAfterComplaint(EventData):
    """No purchase and no contact from the customer in the `silent_days` after a resolved
    complaint (a churn signal); the event's time is the end of that silence."""

    complaint_id: Identifier
    resolved_at: Timestamp
    silent_days: int = Field(ge=1, le=3660)
    last_activity_at: Timestamp | None = Field(
        default=None, description="The customer's last purchase or contact before it."
    )


@dataclass(frozen=True)
class EventType:
    name: str
    version: int
    data_model: type[EventData]
    topic: Topic


def _types(*rows: tuple[str, type[EventData], Topic]) -> dict[tuple[str, int], EventType]:
    return {(name, 1): EventType(name, 1, model, topic) for name, model, topic in rows}


EVENT_TYPES: dict[tuple[str, int], EventType] = _types(
    ("crm.customer.registered", CustomerRegistered, Topic.CUSTOMERS),
    ("crm.customer.updated", CustomerUpdated, Topic.CUSTOMERS),
    ("crm.customer.erased", CustomerErased, Topic.CUSTOMERS),
    ("crm.lead.assessed", LeadAssessed, Topic.CUSTOMERS),
    ("crm.purchase.completed", PurchaseCompleted, Topic.PURCHASES),
    ("crm.purchase.refunded", PurchaseRefunded, Topic.PURCHASES),
    ("crm.interaction.logged", InteractionLogged, Topic.INTERACTIONS),
    ("crm.complaint.opened", ComplaintOpened, Topic.COMPLAINTS),
    ("crm.complaint.responded", ComplaintResponded, Topic.COMPLAINTS),
    ("crm.complaint.waiting", ComplaintWaiting, Topic.COMPLAINTS),
    ("crm.complaint.escalated", ComplaintEscalated, Topic.COMPLAINTS),
    ("crm.complaint.resolved", ComplaintResolved, Topic.COMPLAINTS),
    ("crm.complaint.reopened", ComplaintReopened, Topic.COMPLAINTS),
    ("crm.complaint.closed", ComplaintClosed, Topic.COMPLAINTS),
    ("crm.complaint.feedback", ComplaintFeedback, Topic.COMPLAINTS),
    ("crm.complaint.solution_proposed", ComplaintSolutionProposed, Topic.COMPLAINTS),
    ("crm.complaint.customer_replied", ComplaintCustomerReplied, Topic.COMPLAINTS),
    ("crm.complaint.priority_changed", ComplaintPriorityChanged, Topic.COMPLAINTS),
    ("crm.complaint.step_done", ComplaintStepDone, Topic.COMPLAINTS),
    ("crm.survey.nps", SurveyNps, Topic.SURVEYS),
    ("crm.survey.csat", SurveyCsat, Topic.SURVEYS),
    ("crm.marketing.spend", MarketingSpend, Topic.MARKETING),
    ("crm.customer.segment_changed", ClassChanged, Topic.DERIVED),
    ("crm.customer.tier_changed", ClassChanged, Topic.DERIVED),
    ("crm.customer.churn_risk_raised", ClassChanged, Topic.DERIVED),
    ("crm.scoring.tier_summary", TierSummary, Topic.DERIVED),
    ("crm.complaint.sla_warning", SlaEventData, Topic.DERIVED),
    ("crm.complaint.sla_breached", SlaEventData, Topic.DERIVED),
    ("crm.complaint.escalated_auto", SlaEscalation, Topic.DERIVED),
    ("crm.complaint.sla_clock_stopped", SlaClockStopped, Topic.DERIVED),
    ("crm.complaint.sla_wait_expired", SlaWaitExpired, Topic.DERIVED),
    ("crm.crisis.detected", CrisisDetected, Topic.DERIVED),
    ("crm.crisis.stage_changed", CrisisStageChanged, Topic.DERIVED),
    ("crm.customer.silent_after_complaint", CustomerSilentAfterComplaint, Topic.DERIVED),
    ("crm.apikey.issued", ApiKeyIssued, Topic.KEYS),
    ("crm.apikey.revoked", ApiKeyRevoked, Topic.KEYS),
)
KNOWN_TYPE_NAMES = sorted({name for name, _ in EVENT_TYPES})
# Every version of a type lives on the same topic.
_TOPIC_OF_TYPE: dict[str, Topic] = {name: t.topic for (name, _), t in EVENT_TYPES.items()}
SOURCE_TOPICS = (
    Topic.CUSTOMERS,
    Topic.PURCHASES,
    Topic.INTERACTIONS,
    Topic.COMPLAINTS,
    Topic.SURVEYS,
    Topic.MARKETING,
)


class Envelope(BaseModel):
    """CloudEvents 1.0, JSON structured mode. Extension attributes are kept as they are."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "specversion": "1.0",
                    "id": "order-1001",
                    "source": "shop/web",
                    "type": "crm.purchase.completed",
                    "time": "2026-11-02T10:15:00+01:00",
                    "subject": "customer-42",
                    "datacontenttype": "application/json",
                    "data": {"order_id": "1001", "amount": "59.90", "currency": "USD"},
                }
            ]
        },
    )

    specversion: Literal["1.0"]
    id: Annotated[str, Field(min_length=1, max_length=256)]
    source: Annotated[str, Field(min_length=1, max_length=1024)]
    type: Annotated[str, Field(min_length=1, max_length=128)]
    time: Timestamp
    subject: Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN)]
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: Annotated[str, Field(max_length=1024)] | None = None
    data: dict[str, Any]

    @field_validator("time")
    @classmethod
    def _plausible_time(cls, value: datetime, info: ValidationInfo) -> datetime:
        context = info.context or {}
        tolerance: timedelta | None = context.get("future_tolerance", timedelta(minutes=5))
        if tolerance is None:
            return value  # recorded already: only the fixed range of the contract applies
        now: datetime = context.get("now") or datetime.now(UTC)
        if value > now + tolerance:
            raise ValueError(f"time is more than {tolerance} in the future")
        return value

    @model_validator(mode="after")
    def _bounded_extensions(self) -> Envelope:
        """Extension attributes (CloudEvents 1.0): a few, named a-z0-9, scalar and short."""
        extensions = self.model_extra or {}
        if len(extensions) > MAX_EXTENSIONS:
            raise ValueError(f"at most {MAX_EXTENSIONS} extension attributes")
        for name, value in extensions.items():
            if not _EXTENSION_NAME.fullmatch(name):
                raise ValueError(
                    f"extension attribute '{name[:64]}': a name is 1-64 of a-z and 0-9"
                )
            if value is not None and not isinstance(value, str | int | bool):
                raise ValueError(f"extension attribute '{name}': a string, integer or boolean")
            if isinstance(value, str) and len(value) > MAX_EXTENSION_LENGTH:
                raise ValueError(
                    f"extension attribute '{name}': at most {MAX_EXTENSION_LENGTH} characters"
                )
        return self


@dataclass(frozen=True)
class Event:
    """A validated event: the envelope and its typed data, and where a consumer read it."""

    envelope: Envelope
    data: EventData
    position: tuple[str, int, int] | None = field(default=None, compare=False)  # topic, p, offset
    # The log that published it and its sequence number there (the relay's record headers).
    origin: tuple[str, int] | None = field(default=None, compare=False)
    # The normalised bytes, computed once: storing, hashing and publishing all need them.
    _bytes: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def identity(self) -> tuple[str, str]:
        """(source, id): CloudEvents 1.0 makes an id unique within its source only."""
        return self.envelope.source, self.envelope.id

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def subject(self) -> str:
        return self.envelope.subject

    @property
    def time(self) -> datetime:
        return self.envelope.time

    @property
    def topic(self) -> Topic:
        return _TOPIC_OF_TYPE[self.envelope.type]  # known: validation found its type

    def to_json_dict(self) -> dict[str, Any]:
        """The normalised form stored in the event store and published to Kafka."""
        body = self.envelope.model_dump(mode="json", exclude_none=True)
        body["data"] = self.data.model_dump(mode="json", exclude_none=True)
        return body

    def to_bytes(self) -> bytes:
        if self._bytes is None:
            encoded = orjson.dumps(self.to_json_dict(), option=orjson.OPT_SORT_KEYS)
            object.__setattr__(self, "_bytes", encoded)  # frozen: a cache, not state
            return encoded
        return self._bytes

    def content_hash(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class InvalidEvent(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class ValidationContext:
    """What a judgment of an event depends on beyond its bytes: the deployment's reporting
    currency and the clock (how far in the future an event's time may be). None: not judged.

    Only the gateway judges (ingest on HTTP, ingest's archive for records other systems
    publish straight to the topics); what it accepted is stored and published, and every
    consumer decodes that with `RECORDED`, so its verdict depends on the bytes alone and all
    consumers, at any time and with any settings, agree."""

    reporting_currency: str | None = "USD"
    future_tolerance: timedelta | None = timedelta(minutes=5)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reporting_currency": self.reporting_currency,
            "future_tolerance": self.future_tolerance,
            "now": datetime.now(UTC) if self.future_tolerance is not None else None,
        }


# For events the gateway accepted already (read from a topic by a consumer, or from a store):
# the bytes are checked against the contract, the clock and the currency are not judged again
# (an erasure or a replay may come years later, on a deployment with other settings).
RECORDED = ValidationContext(reporting_currency=None, future_tolerance=None)


def event_type_of(envelope: Envelope) -> EventType:
    version_text = str((envelope.model_extra or {}).get(SCHEMA_VERSION_ATTRIBUTE, "1"))[:40]
    plain = version_text.isascii() and version_text.isdigit() and len(version_text) < 10
    version = int(version_text) if plain else -1
    found = EVENT_TYPES.get((envelope.type, version))
    if found is None:
        raise InvalidEvent([_type_error(envelope.type, version_text)])
    return found


def _type_error(type_name: str, version: str) -> FieldError:
    if type_name not in KNOWN_TYPE_NAMES:
        return FieldError("type", f"unknown event type '{type_name}'")
    return FieldError(
        SCHEMA_VERSION_ATTRIBUTE, f"unsupported schema version '{version}' for {type_name}"
    )


def _field_errors(error: ValidationError, prefix: str) -> list[FieldError]:
    items = error.errors(include_url=False)
    found = [
        FieldError(
            ".".join([prefix, *map(str, item["loc"])]).strip(".") or prefix or "body",
            item["msg"],
        )
        for item in items[:MAX_ERRORS]
    ]
    if len(items) > MAX_ERRORS:
        found.append(FieldError(prefix or "body", f"and {len(items) - MAX_ERRORS} more errors"))
    return found


def _nul_at(raw: object) -> str | None:
    """Where the first NUL character is (PostgreSQL text and jsonb cannot hold one)."""
    stack: list[tuple[str, object]] = [("", raw)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "body"
        elif isinstance(value, Mapping):
            for key, item in value.items():
                where = f"{path}.{key}".strip(".")
                if isinstance(key, str) and "\x00" in key:
                    return path or "body"
                stack.append((where, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}".strip("."), item) for i, item in enumerate(value))
    return None


def _may_hold_nul(raw: object) -> bool:
    """Cheap test before the walk: JSON can only carry a NUL as the escape \\u0000."""
    try:
        return b"\\u0000" in orjson.dumps(raw)
    except TypeError:  # not JSON-like (a test's object): walk it
        return True


def validate_event(
    raw: object, context: ValidationContext, *, may_hold_nul: bool | None = None
) -> Event:
    """Validate one decoded JSON value as a CloudEvent of a known type; raise InvalidEvent.

    may_hold_nul: whether the JSON text this came from contained a NUL escape, when the
    caller knows it (None: find out)."""
    if not isinstance(raw, Mapping):
        raise InvalidEvent([FieldError("body", "an event must be a JSON object")])
    if may_hold_nul is None:
        may_hold_nul = _may_hold_nul(raw)
    nul = _nul_at(raw) if may_hold_nul else None
    if nul is not None:
        raise InvalidEvent([FieldError(nul, "text must not contain the NUL character (\\u0000)")])
    ctx = context.as_dict()
    try:
        envelope = Envelope.model_validate(raw, context=ctx)
    except ValidationError as error:
        raise InvalidEvent(_field_errors(error, "")) from None
    event_type = event_type_of(envelope)
    try:
        data = event_type.data_model.model_validate(envelope.data, context=ctx)
    except ValidationError as error:
        raise InvalidEvent(_field_errors(error, "data")) from None
    return Event(envelope, data)


def decode_event(
    payload: bytes,
    context: ValidationContext,
    *,
    position: tuple[str, int, int] | None = None,
    origin: tuple[str, int] | None = None,
) -> Event:
    """Decode and validate the bytes of a Kafka record (or of a stored event); `position` and
    `origin` say where it was read and which log published it."""
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent([FieldError("body", f"not JSON: {error}")]) from None
    event = validate_event(raw, context, may_hold_nul=b"\\u0000" in payload)
    if position is None and origin is None:
        return event
    return Event(event.envelope, event.data, position, origin)


def new_event(
    type_name: str, subject: str, data: EventData, *, source: str, event_id: str, time: datetime
) -> Event:
    """Build an event a service emits itself (derived events, agent commands)."""
    envelope = Envelope(
        specversion="1.0",
        id=event_id,
        source=source,
        type=type_name,
        time=time,
        subject=subject,
        data=data.model_dump(mode="json", exclude_none=True),
    )
    return Event(envelope, data)
