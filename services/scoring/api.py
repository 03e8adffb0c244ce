"""Scoring's HTTP routes: the unified customer view, scores live and as of any date,
campaign lists, segments and the lifetime-value models."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from services.scoring import explain, rfm, store, stored, validation
from services.scoring.customer_classes import (
    LABELS,
    TIER_PLAYBOOKS,
    LeadAction,
    LifecycleStage,
    ManLead,
    Tier,
    labelled,
    man_lead_class,
)
from services.scoring.domain import profile_of
from services.scoring.population import (
    Models,
    Population,
    Reference,
    ScoringConfig,
    SimpleClvBase,
    annual_rate,
    score,
    simple_clv_base,
)
from services.scoring.rescore import fit_and_save, money_terms, refresh_reference
from services.scoring.resources import REFERENCE_CACHE, Scoring, ScoringResources
from services.scoring.settings import ScoringSettings
from shared.auth import api_router, require
from shared.events import CUSTOMER_ID_PATTERN, EARLIEST_TIME, RECORDED, decode_event
from shared.http import (
    BODY_TOO_LARGE,
    BoundedBodyRoute,
    ErrorBody,
    decode_cursor,
    encode_cursor,
    invalid,
)

router = api_router("customers:read", tags=["customers"], route_class=BoundedBodyRoute)

CustomerId = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, examples=["customer-42"])]
AsOf = Annotated[
    str | None,
    Query(
        description="A past date (YYYY-MM-DD: the end of that day in the deployment's time "
        "zone) or instant (RFC 3339). Default: now.",
        examples=["2026-09-30"],
        max_length=40,
    ),
]
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "No such customer (up to as_of)."}}
BAD_INPUT: Responses = {422: {"model": ErrorBody, "description": "Invalid parameter."}}


def parse_as_of(value: str | None, zone: ZoneInfo) -> datetime | None:
    """None for now; a date means the end of that local day; the future is refused."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            instant = datetime.combine(day + timedelta(days=1), time(), zone) - timedelta(
                microseconds=1
            )
        else:
            instant = datetime.fromisoformat(value)
    except (ValueError, OverflowError):  # (the day after 9999-12-31 overflows)
        raise invalid("query.as_of", "not a date (YYYY-MM-DD) or RFC 3339 instant") from None
    if instant.tzinfo is None:
        raise invalid("query.as_of", "an instant needs a UTC offset")
    if instant < EARLIEST_TIME:
        raise invalid("query.as_of", "is before 1970, the earliest time an event can have")
    now = datetime.now(UTC)
    if instant > now:
        if instant.astimezone(zone).date() == now.astimezone(zone).date():
            return now  # today: up to now
        raise invalid("query.as_of", "is in the future")
    return instant


class RfmScore(BaseModel):
    recency: int = Field(ge=1, le=5, description="5 = most recent.")
    frequency: int = Field(ge=1, le=5)
    monetary: int = Field(ge=1, le=5)
    code: str = Field(examples=["545"])
    segment: str = Field(examples=["champions"])
    segment_label_en: str = Field(examples=["Champions"])
    segment_label_zh: str = Field(examples=["冠军客户"])


class ScoreReference(BaseModel):
    """The population a customer's scores are ranked against."""

    run_id: int | None = Field(description="The re-score that measured it; null: none yet.")
    as_of: datetime | None = Field(description="When that re-score measured it.")
    customers: int = Field(
        description="Buyers in it. 0: no re-score has seen a buyer yet, so the customer is "
        "ranked against themselves alone (every score 3) until the next one."
    )


NO_REFERENCE = ScoreReference(run_id=None, as_of=None, customers=0)


async def _last_reference(res: ScoringResources) -> tuple[ScoreReference, Reference | None]:
    """The last re-score's population (None if it saw no buyer), cached; reloaded while the
    cached one is empty (a query of one small row), as another instance may have re-scored."""
    cached = res.caches.last_reference
    if cached is None or not cached[2].size:
        await refresh_reference(res)
        cached = res.caches.last_reference
    if cached is None or not cached[2].size:
        return NO_REFERENCE, None
    run_id, as_of, reference = cached
    return ScoreReference(run_id=run_id, as_of=as_of, customers=reference.size), reference


def rfm_score(
    days_since_last: float, orders: float, net_spent: float, reference: Reference | None
) -> RfmScore:
    """R, F and M ranked against `reference`; with none, against the customer alone."""
    r_ref, f_ref, m_ref = (
        (reference.recency, reference.frequency, reference.monetary)
        if reference is not None
        else ([-days_since_last], [orders], [net_spent])
    )
    recency = int(rfm.quintile_scores([-days_since_last], r_ref, presorted=True)[0])
    frequency = int(rfm.quintile_scores([orders], f_ref, presorted=True)[0])
    monetary = int(rfm.quintile_scores([net_spent], m_ref, presorted=True)[0])
    scored = {
        "recency": recency,
        "frequency": frequency,
        "monetary": monetary,
        "code": rfm.rfm_code(recency, frequency, monetary),
        "segment": rfm.segment_for(recency, frequency, monetary).value,
    }
    return RfmScore.model_validate(labelled(scored))


class Rfm(BaseModel):
    customer_id: str = Field(examples=["customer-42"])
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    recency_days: float | None = Field(description="Days since the last purchase, now.")
    frequency: int = Field(description="Number of purchases.")
    monetary: Decimal = Field(description="Total spent, net of refunds, in `currency`.")
    currency: str = Field(description="The reporting currency (ISO 4217).", examples=["USD"])
    scores: RfmScore = Field(
        description="R, F and M 1-5: these purchases ranked against `reference`, as of "
        "`scored_as_of`."
    )
    scored_as_of: datetime | None = Field(
        default=None,
        description="The instant the scores rank the customer at: the last re-score's, or "
        "when the customer's latest fact was applied if later. Null: ranked now (no re-score "
        "has seen a buyer yet).",
    )
    reference: ScoreReference


@router.get(
    "/customers/{customer_id}/rfm",
    response_model=Rfm,
    summary="Recency, frequency and monetary value of one customer, and their 1-5 scores",
    description="Derived from the customer's purchases, as the scores derive them: "
    "frequency counts purchases (refunds are not purchases), monetary is net of refunds. "
    "Current as soon as a purchase is applied: the fold scores the customer then against "
    "the population of the last re-score, which the re-score refreshes every "
    "SCORING_RESCORE_SECONDS; the read is one lookup of that row.",
    responses=NOT_FOUND,
)
async def get_rfm(customer_id: CustomerId, res: Scoring) -> Rfm:
    settings = res.settings
    row = await store.current_score(res.pool, customer_id)
    if row is not None:
        return _rfm_of_row(customer_id, row, settings.reporting_currency)
    # No row: no re-score has seen a buyer yet (or the customer has no purchase that counts).
    now = datetime.now(UTC)
    found = await store.load_rfm(
        res.pool,
        customer_id,
        now,
        ZoneInfo(settings.timezone),
        settings.scoring_trend_window_days,
        count_zero_value=settings.scoring_count_zero_value_orders,
    )
    if found is None or found.last_purchase_at is None:
        raise HTTPException(404, f"no purchases of customer '{customer_id}'")
    recency = (now - found.last_purchase_at).total_seconds() / 86_400
    run, reference = await _last_reference(res)
    return Rfm(
        customer_id=customer_id,
        first_purchase_at=found.first_purchase_at,
        last_purchase_at=found.last_purchase_at,
        recency_days=recency,
        frequency=found.purchase_count,
        monetary=found.total_spent,
        currency=settings.reporting_currency,
        scores=rfm_score(recency, found.purchase_count, float(found.total_spent), reference),
        reference=run,
    )


def _rfm_of_row(customer_id: str, row: dict[str, Any], currency: str) -> Rfm:
    return Rfm(
        customer_id=customer_id,
        first_purchase_at=row["first_purchase_at"],
        last_purchase_at=row["last_purchase_at"],
        recency_days=(datetime.now(UTC) - row["last_purchase_at"]).total_seconds() / 86_400,
        frequency=row["orders"],
        monetary=row["net_spent"],
        currency=currency,
        scores=_rfm_score_of_row(row),
        scored_as_of=row["scored_as_of"],
        reference=ScoreReference(
            run_id=row["run_id"], as_of=row["run_as_of"], customers=row["reference_customers"]
        ),
    )


def _rfm_score_of_row(row: dict[str, Any]) -> RfmScore:
    scored = {
        "recency": row["recency_score"],
        "frequency": row["frequency_score"],
        "monetary": row["monetary_score"],
        "code": row["rfm_code"],
        "segment": row["segment"],
    }
    return RfmScore.model_validate(labelled(scored))


class TierPlaybook(BaseModel):
    """What the tier means and what to do with its customers."""

    name_zh: str = Field(examples=["潜力客户"])
    who: str = Field(description="Who the tier's customers are.")
    actions: list[str] = Field(description="The playbook's actions, in order.")


class HistoricalValue(BaseModel):
    amount: float | None = Field(description="Net spend to date, in currency.")
    currency: str | None = Field(description="Null: a re-score stored before it was kept.")
    definition: str


class SimpleValue(BaseModel):
    amount: float | None = Field(description="Simple CLV, in currency.")
    currency: str | None
    lifespan_weeks: float | None = Field(description="The base's lifespan, weeks.")
    lifespan_measured: bool | None = Field(
        description="Measured on the base (false: the configured default)."
    )
    margin: float | None = Field(description="Margin share applied.")
    discounted: bool = Field(description="Always false.")
    definition: str


class PredictiveValue(BaseModel):
    amount: float | None = Field(description="Predicted CLV; null without a spend model.")
    currency: str | None
    horizon_weeks: int | None
    discount_rate_per_week: float | None
    annual_discount_rate: float | None
    margin: float | None
    discounted: bool = Field(description="Always true.")
    definition: str


class LifetimeValues(BaseModel):
    """Each lifetime value by kind, each with its amount, currency and definition (null
    currency, horizon and rate: a re-score stored before they were kept)."""

    historical: HistoricalValue
    simple: SimpleValue
    predictive: PredictiveValue


# A number an explanation's rule compared: counts, amounts, thresholds, flags (MAN), or the
# name of the score pair a tier rule read.
ExplanationNumber = bool | int | float | str | None


class Explanation(BaseModel):
    """Why a class is what it is."""

    code: str = Field(description="The class's code.", examples=["potential"])
    rule: str = Field(description="The branch of the rule that decided it.")
    numbers: dict[str, ExplanationNumber] = Field(
        description="The numbers that branch compared, by name (durations in days, money in "
        "the answer's currency)."
    )
    text_en: str
    text_zh: str


class Lifetime(BaseModel):
    currency: str = Field(description="Currency of every amount here (reporting currency).")
    horizon_weeks: int = Field(description="Horizon of expected_purchases and predicted_clv.")
    p_alive: float | None = Field(description="BG/NBD probability the customer is still active.")
    expected_purchases: float | None = Field(
        description="Expected purchase days in the next horizon_weeks weeks."
    )
    expected_spend: float | None = Field(
        description="Gamma-Gamma expected spend per purchase day, in currency."
    )
    predicted_clv: float | None = Field(
        description="Discounted CLV over the next horizon_weeks weeks (BG/NBD x Gamma-Gamma), "
        "in currency (values.predictive)."
    )
    simple_clv: float = Field(
        description="Average order value x orders per week x lifespan in weeks x margin, in "
        "currency (values.simple)."
    )
    values: LifetimeValues = Field(
        description="Each lifetime value by kind, with what it means: `historical` (net spend "
        "to date), `simple` (undiscounted, over the base's measured lifespan), `predictive` "
        "(over horizon_weeks, discounted at discount_rate_per_week); each with its amount, "
        "currency and definition."
    )


def lifetime_values(
    row: dict[str, Any],
    terms: store.MoneyTerms | None,
    lifespan_weeks: float | None,
    lifespan_measured: bool | None,
) -> dict[str, dict[str, Any]]:
    """Historical, simple and predictive CLV of a scored row, each saying what it is.

    `terms` None (a re-score stored before they were kept): currency, horizon and rate are
    unknown, and said so (null)."""
    currency = terms.currency if terms else None
    weekly = terms.discount_rate_per_week if terms else None
    return {
        "historical": {
            "amount": _float(row.get("net_spent")),
            "currency": currency,
            "definition": "Net spend to date: every order once, net of its refunds.",
        },
        "simple": {
            "amount": row.get("simple_clv"),
            "currency": currency,
            "lifespan_weeks": lifespan_weeks,
            "lifespan_measured": lifespan_measured,
            "margin": terms.margin if terms else None,
            "discounted": False,
            "definition": "Average order value x orders per week x lifespan (weeks) x margin, "
            "undiscounted (the base's averages until the customer has been observed for "
            "SCORING_MIN_OBSERVATION_DAYS).",
        },
        "predictive": {
            "amount": row.get("predicted_clv"),
            "currency": currency,
            "horizon_weeks": terms.horizon_weeks if terms else None,
            "discount_rate_per_week": weekly,
            "annual_discount_rate": annual_rate(weekly) if weekly is not None else None,
            "margin": terms.margin if terms else None,
            "discounted": True,
            "definition": "Expected purchase days in each week of the horizon (BG/NBD) x "
            "expected spend per purchase day (Gamma-Gamma) x margin, discounted weekly; null "
            "without a spend model.",
        },
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


ScoreSource = Literal["re-score", "live", "snapshot", "recomputed"]


class CustomerScore(BaseModel):
    customer_id: str
    as_of: datetime
    model_version: int | None
    time_unit: str = Field(description="Time unit the purchase model was fitted in.")
    horizon_weeks: int = Field(description="Predictive CLV horizon, weeks (any model unit).")
    currency: str = Field(description="Currency of net_spent and every lifetime value.")
    recency_days: float = Field(description="Days since the last purchase.")
    orders: int
    net_spent: float = Field(description="Net of refunds, in currency.")
    rfm: RfmScore
    tier: str
    tier_label_en: str = Field(examples=["Potential"])
    tier_label_zh: str = Field(examples=["潜力客户"])
    tier_playbook: TierPlaybook
    value_class: str
    value_class_label_en: str = Field(examples=["Second-tier customer"])
    value_class_label_zh: str = Field(examples=["二级客户"])
    lifecycle: str
    lifecycle_label_en: str = Field(examples=["Maturity"])
    lifecycle_label_zh: str = Field(examples=["成熟期"])
    lifetime: Lifetime
    churn_risk: float
    churn_level: str
    churn_level_label_en: str = Field(examples=["Low risk"])
    churn_level_label_zh: str = Field(examples=["低风险"])
    explanations: dict[str, Explanation] = Field(
        description="Per class (segment, tier, value_class, lifecycle, churn_level): the "
        "`code`, the `rule` that decided it, the `numbers` it used and `text_en`/`text_zh`."
    )
    source: ScoreSource = Field(
        default="live",
        description="`re-score`: the last re-score's row; `live`: the row the fold stored "
        "when the customer's latest fact was applied (scored then against the last "
        "re-score's population); `snapshot`: as_of answered from the snapshot of the re-score "
        "in force then (`run_id`, `run_as_of`); `recomputed`: computed from the history for "
        "this request (see `note`).",
    )
    run_id: int | None = Field(
        default=None,
        description="The re-score whose snapshot this is, or whose population the customer "
        "was ranked against; null when recomputed.",
    )
    run_as_of: datetime | None = Field(default=None, description="That re-score's as_of.")
    note: str | None = Field(default=None, description="Why the answer was recomputed.")


BEFORE_FIRST_RUN = (
    "before the first re-score that saw a buyer: recomputed from the history as of this "
    "instant, ranked against the population of then"
)
OTHER_HORIZON = "horizon_weeks differs from the stored scores': recomputed from the history"


async def _reference_as_of(res: ScoringResources, as_of: datetime) -> Reference:
    """The population as of an instant, a customer is scored against when recomputed
    (computed once per instant and cached)."""
    settings = res.settings
    cache = res.caches.references
    if as_of in cache:
        return cache[as_of]
    # One at a time: the requests that miss together would each load the whole population.
    async with res.caches.references_lock:
        if as_of in cache:
            return cache[as_of]
        population = await store.load_population(
            res.pool,
            as_of,
            ZoneInfo(settings.timezone),
            settings.scoring_trend_window_days,
            count_zero_value=settings.scoring_count_zero_value_orders,
        )
        cache[as_of] = await asyncio.to_thread(Reference.of, population, settings.scoring_config())
        while len(cache) > REFERENCE_CACHE:
            cache.pop(next(iter(cache)))
    return cache[as_of]


@router.get(
    "/customers/{customer_id}/score",
    response_model=CustomerScore,
    summary="Scores, classes, lifetime value and churn risk of one customer, live or as of a date",
    description="Live: the customer's stored row, as of the later of the last re-score and "
    "the customer's latest applied fact (`as_of`, `source`). With `as_of`: the snapshot of "
    "the re-score in force at that instant (the latest that saw a buyer, as of then or "
    "before; `run_id`, `run_as_of`), as that re-score saw the history; before the first "
    "one, or with a `horizon_weeks` other than the stored one, recomputed from the history "
    "(`source` recomputed, `note` says why).",
    responses=NOT_FOUND | BAD_INPUT,
)
async def get_score(
    customer_id: CustomerId,
    res: Scoring,
    as_of: AsOf = None,
    horizon_weeks: Annotated[
        int | None, Query(ge=1, le=520, description="Predictive CLV horizon, weeks.")
    ] = None,
) -> CustomerScore:
    settings = res.settings
    instant = parse_as_of(as_of, ZoneInfo(settings.timezone))
    note = None
    if instant is None:
        row = await store.current_score(res.pool, customer_id)
        if row is not None and horizon_weeks in (None, row["horizon_weeks"]):
            return _score_of_row(customer_id, row, row["scored_as_of"], row["source"], settings)
        note = OTHER_HORIZON if row is not None else None
    else:
        snapshot = await store.snapshot_score(res.pool, customer_id, instant)
        if snapshot is None:
            note = BEFORE_FIRST_RUN
        elif not snapshot["present"]:
            raise HTTPException(
                404,
                f"customer '{customer_id}' has no purchases in the snapshot of re-score "
                f"{snapshot['run_id']} (as of {snapshot['run_as_of'].isoformat()}), the one "
                "in force at as_of",
            )
        elif horizon_weeks in (None, snapshot["horizon_weeks"]):
            row = snapshot | {"simple_clv": _simple_clv(snapshot, settings)}
            return _score_of_row(customer_id, row, snapshot["run_as_of"], "snapshot", settings)
        else:
            note = OTHER_HORIZON
    return await _computed_score(res, customer_id, instant, horizon_weeks, note)


async def _computed_score(
    res: ScoringResources,
    customer_id: str,
    instant: datetime | None,
    horizon_weeks: int | None,
    note: str | None,
) -> CustomerScore:
    """The customer scored for this request from the history as of `instant` (None: now),
    against the population of then (now: of the last re-score)."""
    settings = res.settings
    zone = ZoneInfo(settings.timezone)
    at = instant or datetime.now(UTC)
    population = await store.load_population(
        res.pool,
        at,
        zone,
        settings.scoring_trend_window_days,
        [customer_id],
        count_zero_value=settings.scoring_count_zero_value_orders,
    )
    if population.size == 0:
        raise HTTPException(404, f"customer '{customer_id}' has no purchases up to {at:%Y-%m-%d}")
    config = settings.scoring_config()
    run = NO_REFERENCE
    if instant is None:  # ranked against the last re-score's population, or themselves
        run, found = await _last_reference(res)
        reference = found or Reference.of(population, config)
    else:
        reference = await _reference_as_of(res, instant)
    models = await store.latest_models(res.pool)
    scores = score(population, reference, models, config, horizon_weeks)
    terms = money_terms(settings)
    if horizon_weeks is not None:
        terms = store.MoneyTerms(
            terms.currency, horizon_weeks, terms.discount_rate_per_week, terms.margin
        )
    row = stored.one_row(scores, population) | _run_columns(
        reference, population, config, terms, models
    )
    row |= {"run_id": run.run_id, "run_as_of": run.as_of}
    source: ScoreSource = "recomputed" if instant or note else "live"
    answer = _score_of_row(customer_id, row, at, source, settings)
    return answer.model_copy(update={"note": note}) if note else answer


def _run_columns(
    reference: Reference,
    population: Population,
    config: ScoringConfig,
    terms: store.MoneyTerms,
    models: Models | None,
) -> dict[str, Any]:
    """What a stored row reads of its run, for a customer scored against `reference`."""
    simple = reference.simple or simple_clv_base(population, config)
    return {
        "run_id": None,
        "run_as_of": None,
        "mvc_threshold": reference.mvc_threshold,
        "simple_lifespan_weeks": simple.lifespan_weeks,
        "simple_lifespan_measured": simple.measured,
        "currency": terms.currency,
        "horizon_weeks": terms.horizon_weeks,
        "discount_rate_per_week": terms.discount_rate_per_week,
        "margin": terms.margin,
        "model_version": models.version if models else None,
        "time_unit": models.time_unit if models else None,
    }


def _simple_clv(snapshot: dict[str, Any], settings: ScoringSettings) -> float:
    """The simple CLV of a snapshot row, from its run's population averages."""
    config = settings.scoring_config()
    base = SimpleClvBase(
        order_value=snapshot["simple_order_value"],
        weekly_rate=snapshot["simple_weekly_rate"],
        lifespan_weeks=snapshot["simple_lifespan_weeks"],
        measured=snapshot["simple_lifespan_measured"],
    )
    margin = snapshot["margin"] if snapshot["margin"] is not None else config.margin
    zone = ZoneInfo(settings.timezone)
    return stored.simple_clv_of(
        snapshot, snapshot["run_as_of"], zone, base, margin, config.min_observation_days
    )


def _terms_of(row: dict[str, Any], settings: ScoringSettings) -> store.MoneyTerms:
    """The money terms a row's run stated (the settings' for runs stored before them)."""
    if row.get("currency") is None:
        return money_terms(settings)
    return store.MoneyTerms(
        row["currency"], row["horizon_weeks"], row["discount_rate_per_week"], row["margin"]
    )


def _score_of_row(
    customer_id: str,
    row: dict[str, Any],
    at: datetime,
    source: ScoreSource,
    settings: ScoringSettings,
) -> CustomerScore:
    """The answer from a row (stored, or computed as one) that scores the customer at `at`."""
    config = settings.scoring_config()
    terms = _terms_of(row, settings)
    facts = stored.facts_of(row, at, ZoneInfo(settings.timezone), row["mvc_threshold"])
    codes = labelled({name: row[name] for name in stored.SCORE_FIELDS})
    tier = Tier(str(row["tier"]))
    playbook = TIER_PLAYBOOKS[tier]
    return CustomerScore(
        customer_id=customer_id,
        as_of=at,
        model_version=row["model_version"],
        time_unit=row["time_unit"] or config.time_unit,
        horizon_weeks=terms.horizon_weeks,
        currency=terms.currency,
        explanations=explain.explain_all(facts, config),
        recency_days=facts.days_since_last,
        orders=int(row["orders"]),
        net_spent=float(row["net_spent"]),
        rfm=_rfm_score_of_row(row),
        tier=tier.value,
        tier_label_en=str(codes["tier_label_en"]),
        tier_label_zh=str(codes["tier_label_zh"]),
        tier_playbook=TierPlaybook(
            name_zh=playbook.name_zh, who=playbook.who, actions=list(playbook.actions)
        ),
        value_class=row["value_class"],
        value_class_label_en=str(codes["value_class_label_en"]),
        value_class_label_zh=str(codes["value_class_label_zh"]),
        lifecycle=row["lifecycle"],
        lifecycle_label_en=str(codes["lifecycle_label_en"]),
        lifecycle_label_zh=str(codes["lifecycle_label_zh"]),
        lifetime=Lifetime(
            currency=terms.currency,
            horizon_weeks=terms.horizon_weeks,
            values=lifetime_values(
                row, terms, row["simple_lifespan_weeks"], row["simple_lifespan_measured"]
            ),
            p_alive=row["p_alive"],
            expected_purchases=row["expected_purchases"],
            expected_spend=row["expected_spend"],
            predicted_clv=row["predicted_clv"],
            simple_clv=row["simple_clv"],
        ),
        churn_risk=row["churn_risk"],
        churn_level=row["churn_level"],
        churn_level_label_en=str(codes["churn_level_label_en"]),
        churn_level_label_zh=str(codes["churn_level_label_zh"]),
        source=source,
        run_id=row["run_id"],
        run_as_of=row["run_as_of"],
    )


class ProfileView(BaseModel):
    """The customer record as the profile events left it: each field the latest event that
    named it set (absent: never set; null: cleared by an update)."""

    kind: str | None = Field(default=None, examples=["individual"])
    name: str | None = None
    birth_year: int | None = None
    gender: str | None = None
    occupation: str | None = None
    address: str | None = None
    phone: str | None = None
    fax: str | None = None
    email: str | None = None
    industry: str | None = None
    size: str | None = None
    segment: str | None = None
    acquisition_channel: str | None = None
    preferred_contact: str | None = None
    consent: dict[str, bool] | None = Field(default=None, description="Consent by purpose.")
    relationship: str | None = None
    reason: str | None = Field(default=None, description="Why reluctant or lapsed.")
    strategic_value: Decimal | None = Field(
        default=None,
        description="Value beyond the spend (reporting currency) that value classes add to "
        "the margin.",
    )


class LeadView(BaseModel):
    """The latest MAN assessment and the action the MAN rule gives for it."""

    money: bool
    authority: bool
    need: bool
    assessed_by: str | None = Field(default=None, description="Absent when not said.")
    notes: str | None = Field(default=None, description="Absent when not said.")
    assessed_at: datetime
    man_class: str = Field(alias="class", examples=["M+a+N"])
    action: LeadAction
    advice: str
    advice_zh: str


class ViewScores(BaseModel):
    """A customer's current scores row, each code with its `<field>_label_en/_zh`."""

    customer_id: str
    recency_score: int
    frequency_score: int
    monetary_score: int
    segment: str
    segment_label_en: str | None = None
    segment_label_zh: str | None = None
    tier: str
    tier_label_en: str | None = None
    tier_label_zh: str | None = None
    value_class: str
    value_class_label_en: str | None = None
    value_class_label_zh: str | None = None
    lifecycle: str
    lifecycle_label_en: str | None = None
    lifecycle_label_zh: str | None = None
    p_alive: float | None
    expected_purchases: float | None
    expected_spend: float | None
    predicted_clv: float | None
    simple_clv: float
    churn_risk: float
    churn_level: str
    churn_level_label_en: str | None = None
    churn_level_label_zh: str | None = None
    rfm_code: str
    net_spent: Decimal = Field(description="Net of refunds, in currency.")
    orders: int
    first_purchase_at: datetime | None = Field(
        default=None, description="Absent when scored for this request (no re-score yet)."
    )
    last_purchase_at: datetime | None
    run_id: int | None
    run_as_of: datetime | None
    scored_as_of: datetime | None
    reference_customers: int
    source: ScoreSource
    lifetime_values: LifetimeValues


class SurveyKindSummary(BaseModel):
    responses: int
    latest_score: int
    latest_at: datetime
    average_score: float


class NpsSummary(SurveyKindSummary):
    promoters: int = Field(description="Answers of 9-10.")
    detractors: int = Field(description="Answers of 0-6.")
    latest_category: Literal["promoter", "passive", "detractor"]


class CsatSummary(SurveyKindSummary):
    satisfied: int = Field(description="Answers of 4-5.")


class SurveySummaries(BaseModel):
    """Per kind, present once the customer answered one."""

    nps: NpsSummary | None = None
    csat: CsatSummary | None = None


class ActivityCounts(BaseModel):
    purchases: int
    refunds: int
    interactions: int
    complaints: int
    surveys: int


class PurchaseEntry(BaseModel):
    event_id: str
    order_id: str
    time: datetime
    amount: Decimal = Field(description="In the reporting currency.")
    is_refund: bool


class InteractionEntry(BaseModel):
    event_id: str
    time: datetime
    channel: str
    direction: str
    sentiment: str | None
    topic: str | None


class ComplaintEntry(BaseModel):
    complaint_id: str
    opened_at: datetime
    category: str


class SurveyEntry(BaseModel):
    kind: Literal["nps", "csat"]
    score: int
    answered_at: datetime
    survey_id: str | None
    channel: str | None


class CustomerView(BaseModel):
    """Everything about one customer in one read, so no team keeps its own silo."""

    customer_id: str
    profile: ProfileView = Field(
        description="The customer record; `strategic_value` (reporting currency) is value "
        "beyond the spend that value classes add to the margin."
    )
    registered_at: datetime | None
    lead: LeadView | None = Field(
        description="The latest MAN assessment: `class`, the `action` of the MAN rule, "
        "`advice` (English) and `advice_zh`."
    )
    lifecycle: str = Field(
        description="The lifecycle stage: the scores' stage, or `prospect` while no purchase "
        "counts (registered or assessed, never bought)."
    )
    lifecycle_label_en: str
    lifecycle_label_zh: str
    currency: str = Field(description="Currency of every amount in this view.")
    scores: ViewScores | None = Field(
        description="The latest re-score's (`source`: re-score), or, when the customer has "
        "a fact it may not have seen, scored now against its population (`source`: live); "
        "`scored_as_of` says when, `reference_customers` against how many buyers (0: no "
        "re-score has seen one yet, so the customer is ranked against themselves alone). "
        "Null while no purchase counts. Each code with its `<field>_label_en/_zh`; "
        "`lifetime_values` says what each CLV is (currency, horizon, discount rate)."
    )
    explanations: dict[str, Explanation] = Field(
        description="Per class (segment, tier, value_class, lifecycle, churn_level, man): the "
        "`code`, the `rule` that decided it, the `numbers` it used and `text_en`/`text_zh`."
    )
    surveys: SurveySummaries = Field(
        description="Per kind (nps 0-10, csat 1-5): responses, latest score and time, "
        "average, and the customer's promoter/detractor (NPS) or satisfied (CSAT) answers."
    )
    counts: ActivityCounts
    latest_purchases: list[PurchaseEntry]
    latest_interactions: list[InteractionEntry]
    latest_complaints: list[ComplaintEntry]
    latest_surveys: list[SurveyEntry]


@router.get(
    "/customers/{customer_id}",
    response_model=CustomerView,
    # Members a customer's events never set are left out, not shown as null.
    response_model_exclude_unset=True,
    summary="The unified customer view: profile, lead, scores explained, surveys, latest activity",
    responses=NOT_FOUND,
)
async def get_customer(
    customer_id: CustomerId,
    res: Scoring,
    latest: Annotated[int, Query(ge=0, le=50, description="How many of each to list.")] = 5,
) -> CustomerView:
    found = await store.customer_view(res.pool, customer_id, latest)
    if found is None:
        raise HTTPException(404, f"nothing known of customer '{customer_id}'")
    profile = profile_of(decode_event(b.encode(), RECORDED) for b in found.pop("profile_events"))
    lead, explanations = None, {}
    if profile.lead is not None:
        man = man_lead_class(profile.lead["money"], profile.lead["authority"], profile.lead["need"])
        lead = {**profile.lead, **_lead_fields(man)}
        explanations["man"] = explain.explain_man(man).as_dict()
    scores, explained = await _current_scores(
        res, customer_id, found.pop("scores"), found["counts"]["purchases"] > 0
    )
    if scores is None:
        explained = {"lifecycle": explain.explain_prospect().as_dict()}
    stage = scores["lifecycle"] if scores else LifecycleStage.PROSPECT.value
    label = LABELS["lifecycle"][stage]
    return CustomerView(
        customer_id=customer_id,
        profile=profile.fields,
        registered_at=profile.registered_at,
        lead=lead,
        lifecycle=stage,
        lifecycle_label_en=label.en,
        lifecycle_label_zh=label.zh,
        currency=res.settings.reporting_currency,
        scores=labelled(scores) if scores is not None else None,
        explanations=explained | explanations,
        surveys=_survey_summary(found.pop("survey_summary")),
        **found,
    )


def _lead_fields(man: ManLead) -> dict[str, Any]:
    return {
        "class": man.code,
        "action": man.action.value,
        "advice": man.advice,
        "advice_zh": explain.man_action_zh(man.action),
    }


def _survey_summary(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each kind's answers; the shares are those the satisfaction KPIs read."""
    summary: dict[str, Any] = {}
    for kind, row in rows.items():
        answers = {k: row[k] for k in ("responses", "latest_score", "latest_at", "average_score")}
        if kind == "nps":
            score = row["latest_score"]
            answers |= {
                "promoters": row["promoters"],
                "detractors": row["detractors"],
                "latest_category": "promoter"
                if score >= 9
                else "detractor"
                if score <= 6
                else "passive",
            }
        else:
            answers |= {"satisfied": row["satisfied"]}
        summary[kind] = answers
    return summary


# What the view shows of a row: its scores and classes, the facts they derive from, when and
# against which re-score (`reference_customers` buyers) they were scored.
_VIEW_SCORE_KEYS = (
    "customer_id",
    *stored.SCORE_FIELDS,
    "rfm_code",
    "net_spent",
    "orders",
    "first_purchase_at",
    "last_purchase_at",
    "run_id",
    "run_as_of",
    "scored_as_of",
    "reference_customers",
    "source",
)


async def _current_scores(
    res: ScoringResources, customer_id: str, row: dict[str, Any] | None, bought: bool
) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """The customer's row (the re-score's, or the fold's since), with the explanation of each
    class from the customer's statistics as of the scores' instant. Without a row (no
    re-score has seen a buyer yet) a customer who bought is scored now, as GET /score does."""
    settings = res.settings
    if row is None and bought:
        try:
            found = await _computed_score(res, customer_id, None, None, None)
        except HTTPException:
            return None, {}  # no purchase counts (for example every order refunded)
        explained = {name: e.model_dump() for name, e in found.explanations.items()}
        return _view_scores_of(found), explained
    if row is None:
        return None, {}
    zone = ZoneInfo(settings.timezone)
    facts = stored.facts_of(row, row["scored_as_of"], zone, row["mvc_threshold"])
    values = lifetime_values(
        row,
        _terms_of(row, settings),
        row["simple_lifespan_weeks"],
        row["simple_lifespan_measured"],
    )
    scores = {k: row[k] for k in _VIEW_SCORE_KEYS} | {"lifetime_values": values}
    return scores, explain.explain_all(facts, res.settings.scoring_config())


def _view_scores_of(found: CustomerScore) -> dict[str, Any]:
    """The view's scores from an answer of GET /score's shape (computed for this request)."""
    return {
        "customer_id": found.customer_id,
        "recency_score": found.rfm.recency,
        "frequency_score": found.rfm.frequency,
        "monetary_score": found.rfm.monetary,
        "rfm_code": found.rfm.code,
        "segment": found.rfm.segment,
        "tier": found.tier,
        "value_class": found.value_class,
        "lifecycle": found.lifecycle,
        "p_alive": found.lifetime.p_alive,
        "expected_purchases": found.lifetime.expected_purchases,
        "expected_spend": found.lifetime.expected_spend,
        "predicted_clv": found.lifetime.predicted_clv,
        "simple_clv": found.lifetime.simple_clv,
        "churn_risk": found.churn_risk,
        "churn_level": found.churn_level,
        "net_spent": Decimal(str(found.net_spent)),
        "orders": found.orders,
        "last_purchase_at": found.as_of - timedelta(days=found.recency_days),
        "run_id": found.run_id,
        "run_as_of": found.run_as_of,
        "scored_as_of": found.as_of,
        "reference_customers": 0,
        "source": "live",
        "lifetime_values": found.lifetime.values.model_dump(),
    }


SortKey = Literal["clv", "churn_risk", "monetary", "recency"]


class CustomerListItem(BaseModel):
    """A buyer's latest scores row, each code with its `<field>_label_en/_zh`; a prospect
    (`lifecycle=prospect`) has only customer_id, registered_at and lifecycle (with labels)."""

    customer_id: str
    registered_at: datetime | None = Field(default=None, description="Prospects only.")
    run_id: int | None = None
    recency_score: int | None = None
    frequency_score: int | None = None
    monetary_score: int | None = None
    rfm_code: str | None = None
    segment: str | None = None
    segment_label_en: str | None = None
    segment_label_zh: str | None = None
    tier: str | None = None
    tier_label_en: str | None = None
    tier_label_zh: str | None = None
    value_class: str | None = None
    value_class_label_en: str | None = None
    value_class_label_zh: str | None = None
    lifecycle: str
    lifecycle_label_en: str | None = None
    lifecycle_label_zh: str | None = None
    p_alive: float | None = None
    expected_purchases: float | None = None
    expected_spend: float | None = None
    predicted_clv: float | None = None
    simple_clv: float | None = None
    churn_risk: float | None = None
    churn_level: str | None = None
    churn_level_label_en: str | None = None
    churn_level_label_zh: str | None = None
    net_spent: Decimal | None = Field(default=None, description="Net of refunds, in currency.")
    orders: int | None = None
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    scored_as_of: datetime | None = None
    source: ScoreSource | None = None
    model_version: int | None = None


class CustomerPage(BaseModel):
    items: list[CustomerListItem] = Field(
        description="Latest scores; each code with its `<field>_label_en` and `_label_zh`."
    )
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
    currency: str | None = Field(
        description="Currency of net_spent, simple_clv, predicted_clv and expected_spend "
        "(null: the re-score predates this field, or a page of prospects, without money)."
    )
    horizon_weeks: int | None = Field(description="Horizon of predicted_clv, weeks.")
    discount_rate_per_week: float | None = Field(description="Discount rate of predicted_clv.")


@router.get(
    "/customers",
    response_model=CustomerPage,
    # A buyer's row has no registered_at, a prospect's no scores: left out, not null.
    response_model_exclude_unset=True,
    summary="Customers by segment, tier, lifecycle and churn risk, for campaigns (paged)",
    description="Buyers from the latest re-score, highest `sort` first. `lifecycle=prospect` "
    "lists instead the customers the customer events know (registered, updated, assessed "
    "as a lead) with no purchase that counts, by customer id; the score filters do not "
    "apply to them.",
    responses=BAD_INPUT,
)
async def list_customers(
    res: Scoring,
    segment: Annotated[str | None, Query(max_length=64)] = None,
    tier: Annotated[Tier | None, Query()] = None,
    lifecycle: Annotated[str | None, Query(max_length=32)] = None,
    min_churn_risk: Annotated[float | None, Query(ge=0, le=1)] = None,
    sort: SortKey = "clv",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> CustomerPage:
    if lifecycle == LifecycleStage.PROSPECT.value:
        return await _prospect_page(res, limit, cursor)
    items, last = await store.list_customers(
        res.pool,
        segment=segment,
        tier=tier.value if tier else None,
        lifecycle=lifecycle,
        min_churn_risk=min_churn_risk,
        sort=sort,
        limit=limit,
        after=decode_cursor(cursor),
    )
    next_cursor = None
    if last is not None and len(items) == limit:
        next_cursor = encode_cursor(*last)
    terms = await store.latest_terms(res.pool)
    return CustomerPage(
        items=[labelled(i) for i in items],
        next_cursor=next_cursor,
        currency=terms.currency if terms else None,
        horizon_weeks=terms.horizon_weeks if terms else None,
        discount_rate_per_week=terms.discount_rate_per_week if terms else None,
    )


async def _prospect_page(res: ScoringResources, limit: int, cursor: str | None) -> CustomerPage:
    decoded = decode_cursor(cursor)
    rows = await store.list_prospects(
        res.pool,
        decoded[1] if decoded else None,
        limit,
        count_zero_value=res.settings.scoring_count_zero_value_orders,
    )
    items = [labelled(row | {"lifecycle": LifecycleStage.PROSPECT.value}) for row in rows]
    next_cursor = encode_cursor(0.0, rows[-1]["customer_id"]) if len(rows) == limit else None
    return CustomerPage(
        items=items,
        next_cursor=next_cursor,
        currency=None,
        horizon_weeks=None,
        discount_rate_per_week=None,
    )


class GroupStats(BaseModel):
    label_en: str | None = Field(default=None, description="The code's name (None: unknown).")
    label_zh: str | None = None
    customers: int
    revenue: float = Field(description="Net spend of the group's customers.")
    average_clv: float | None


class Segments(BaseModel):
    as_of: datetime | None
    currency: str = Field(description="Currency of revenue and average_clv.")
    horizon_weeks: int = Field(description="Horizon of average_clv (predicted CLV), weeks.")
    segments: dict[str, GroupStats]
    tiers: dict[str, GroupStats]


@router.get(
    "/segments",
    response_model=Segments,
    summary="Counts, revenue and average CLV per segment and per tier",
    responses=BAD_INPUT,
    tags=["segments"],
)
async def get_segments(res: Scoring, as_of: AsOf = None) -> Segments:
    settings = res.settings
    zone = ZoneInfo(settings.timezone)
    instant = parse_as_of(as_of, zone)
    if instant is None:
        groups = await store.segment_stats(res.pool)
        terms = await store.latest_terms(res.pool)
        return Segments(
            as_of=None,
            currency=settings.reporting_currency,
            horizon_weeks=terms.horizon_weeks if terms else settings.scoring_horizon_weeks,
            segments=_with_labels("segment", groups["segments"]),
            tiers=_with_labels("tier", groups["tiers"]),
        )
    population = await store.load_population(
        res.pool,
        instant,
        zone,
        settings.scoring_trend_window_days,
        count_zero_value=settings.scoring_count_zero_value_orders,
    )
    config = settings.scoring_config()
    models = await store.latest_models(res.pool)
    scores = await asyncio.to_thread(
        score, population, Reference.of(population, config), models, config
    )
    return Segments(
        as_of=instant,
        currency=settings.reporting_currency,
        horizon_weeks=config.horizon_weeks,
        segments=_with_labels(
            "segment", _group(scores.segment, population.net_spent, scores.predicted_clv)
        ),
        tiers=_with_labels("tier", _group(scores.tier, population.net_spent, scores.predicted_clv)),
    )


def _with_labels(kind: str, groups: dict[str, Any]) -> dict[str, GroupStats]:
    """Each group's stats with the English and Chinese name of its code."""
    result = {}
    for code, stats in groups.items():
        fields = stats.model_dump() if isinstance(stats, GroupStats) else dict(stats)
        label = LABELS[kind].get(code)
        if label is not None:
            fields |= {"label_en": label.en, "label_zh": label.zh}
        result[code] = GroupStats(**fields)
    return result


def _group(
    labels: np.ndarray[Any, Any], revenue: np.ndarray[Any, Any], clv: np.ndarray[Any, Any]
) -> dict[str, GroupStats]:
    result = {}
    for label in sorted(set(labels.tolist())):
        mask = labels == label
        known = clv[mask][~np.isnan(clv[mask])]
        result[label] = GroupStats(
            customers=int(mask.sum()),
            revenue=float(revenue[mask].sum()),
            average_clv=float(known.mean()) if known.size else None,
        )
    return result


class BgNbdFit(BaseModel):
    """BG/NBD parameters (alpha in the model's time_unit) and the fit's log-likelihood."""

    r: float | None
    alpha: float | None
    a: float | None
    b: float | None
    log_likelihood: float | None
    method: str | None = Field(description="The optimiser that converged.")


class GammaGammaFit(BaseModel):
    """Gamma-Gamma spend parameters, fitted on the repeat buyers (`customers`)."""

    p: float
    q: float
    gamma: float
    log_likelihood: float | None
    customers: int | None


class ClvModel(BaseModel):
    version: int
    fitted_at: datetime
    observation_end: datetime = Field(description="The history it was fitted on ends here.")
    time_unit: str = Field(examples=["week"])
    customers: int
    fit_seconds: float
    bgnbd: BgNbdFit
    gamma_gamma: GammaGammaFit | None = Field(description="Null: too few repeat buyers.")


class FitRequest(BaseModel):
    as_of: str | None = Field(default=None, max_length=40, examples=["2026-09-30"])
    time_unit: Literal["day", "week"] | None = None


@router.get(
    "/models/clv",
    response_model=ClvModel,
    summary="The current lifetime-value model",
    tags=["models"],
    responses={404: {"model": ErrorBody, "description": "No model fitted yet."}},
)
async def get_model(res: Scoring) -> ClvModel:
    rows = await store.model_rows(res.pool)
    if not rows:
        raise HTTPException(404, "no model fitted yet")
    return _model_body(rows[0])


@router.post(
    "/models/clv/fit",
    response_model=ClvModel,
    summary="Fit BG/NBD and Gamma-Gamma now on the population as of a date",
    tags=["models"],
    dependencies=[Depends(require("admin"))],
    responses=BAD_INPUT
    | BODY_TOO_LARGE
    | {409: {"model": ErrorBody, "description": "Too few customers."}},
)
async def fit_model(request: FitRequest, res: Scoring) -> ClvModel:
    settings = res.settings
    zone = ZoneInfo(settings.timezone)
    at = parse_as_of(request.as_of, zone) or datetime.now(UTC)
    config = settings.scoring_config()
    if request.time_unit:
        config = type(config)(**{**config.__dict__, "time_unit": request.time_unit})
    population = await store.load_population(
        res.pool,
        at,
        zone,
        settings.scoring_trend_window_days,
        count_zero_value=settings.scoring_count_zero_value_orders,
    )
    models, fitted = await fit_and_save(res.pool, population, config)
    if models is None:
        raise HTTPException(409, f"too few customers to fit ({fitted.customers})")
    return _model_body((await store.model_rows(res.pool))[0])


def _model_body(row: dict[str, Any]) -> ClvModel:
    return ClvModel.model_validate(
        {
            "version": row["version"],
            "fitted_at": row["fitted_at"],
            "observation_end": row["observation_end"],
            "time_unit": row["time_unit"],
            "customers": row["customers"],
            "fit_seconds": row["fit_seconds"],
            "bgnbd": {k: row[k] for k in ("r", "alpha", "a", "b")}
            | {"log_likelihood": row["bgnbd_log_likelihood"], "method": row["bgnbd_method"]},
            "gamma_gamma": None
            if row["p"] is None
            else {k: row[k] for k in ("p", "q", "gamma")}
            | {
                "log_likelihood": row["gamma_gamma_log_likelihood"],
                "customers": row["gamma_gamma_customers"],
            },
        }
    )


class ValidationGroup(BaseModel):
    repeat_purchases: int = Field(
        description="Repeat purchase days in the calibration period (the last group: at least "
        "this many, `open_ended`)."
    )
    open_ended: bool
    label: str = Field(examples=["0", "7+"])
    customers: int
    actual_mean: float = Field(description="Mean holdout purchase days per customer, actual.")
    predicted_mean: float = Field(description="Mean holdout purchase days, as predicted.")
    actual_total: float
    predicted_total: float


class ValidationPeriod(BaseModel):
    start: date = Field(description="First day (local), inclusive.")
    end: date = Field(description="Last day (local), inclusive.")
    days: int
    weeks: float


class ValidationErrors(BaseModel):
    mean_absolute_error: float = Field(
        description="Mean over customers of |predicted - actual| holdout purchase days."
    )
    root_mean_squared_error: float = Field(description="Per customer, purchase days.")
    actual_total: float = Field(description="Holdout purchase days of the whole cohort.")
    predicted_total: float
    total_error: float | None = Field(
        description="(predicted - actual) / actual of the totals; null when nothing was bought."
    )


class ModelValidation(BaseModel):
    model: Literal["bgnbd"] = Field(
        default="bgnbd", description="The purchase model scoring uses: BG/NBD."
    )
    time_unit: Literal["day", "week"] = Field(description="Unit of alpha, t_x and T.")
    unit: Literal["purchase days"] = Field(
        default="purchase days",
        description="What is counted: distinct days with a purchase, as the model counts.",
    )
    calibration: ValidationPeriod
    holdout: ValidationPeriod
    customers: int = Field(description="Customers who bought in the calibration period.")
    customers_new_in_holdout: int = Field(
        description="First bought in the holdout: not in the comparison (nothing to predict from)."
    )
    parameters: dict[str, float] = Field(
        description="BG/NBD r, alpha (in time_unit), a, b fitted on the calibration period, "
        "and the log-likelihood."
    )
    groups: list[ValidationGroup]
    errors: ValidationErrors


DateParam = Annotated[
    date | None, Query(description="A day, YYYY-MM-DD (its end, in the deployment's time zone).")
]


@router.get(
    "/models/clv/validation",
    response_model=ModelValidation,
    summary="How well the purchase model predicts this base: calibration/holdout test",
    description="Fits BG/NBD on the purchases up to `calibration_end` and predicts each "
    "customer's purchase days from then up to `holdout_end` from their calibration history "
    "alone ([FHL05] eq. 10), then compares with what they bought, grouped by repeat purchase "
    "days in the calibration period (0, 1, ..., top_group+), as in the conditional-expectation "
    "figure of Fader, Hardie and Lee (2005), with the per-customer errors and the totals. "
    "Defaults: holdout_end today, calibration_end the middle day of the history (from the "
    "first purchase to holdout_end). One fit per request (seconds on a large base); an "
    "instance runs one validation at a time.",
    tags=["models"],
    responses=BAD_INPUT | {409: {"model": ErrorBody, "description": "Too few customers."}},
)
async def validate_model(
    res: Scoring,
    calibration_end: DateParam = None,
    holdout_end: DateParam = None,
    top_group: Annotated[
        int, Query(ge=1, le=50, description="Repeat purchases of the open-ended last group.")
    ] = validation.DEFAULT_TOP_GROUP,
) -> ModelValidation:
    settings = res.settings
    zone = ZoneInfo(settings.timezone)
    today = datetime.now(zone).date()
    last_day = holdout_end or today
    if last_day > today:
        raise invalid("query.holdout_end", "is in the future")
    first_day = await store.first_purchase_day(res.pool)
    if first_day is None or first_day >= last_day:
        raise HTTPException(409, "no purchase history before holdout_end to validate on")
    split = calibration_end or first_day + (last_day - first_day) / 2
    if not first_day <= split < last_day:
        raise invalid(
            "query.calibration_end", "must lie from the first purchase day to before holdout_end"
        )
    async with res.caches.validation_lock:
        found, new_in_holdout = await _validate(res, split, last_day, top_group)
    if found is None:
        raise HTTPException(409, "too few customers in the calibration period to fit")
    return _validation_body(found, new_in_holdout, first_day, split, last_day)


def _end_of_day(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), zone) - timedelta(microseconds=1)


async def _validate(
    res: ScoringResources, split: date, last_day: date, top_group: int
) -> tuple[validation.Validation | None, int]:
    settings = res.settings
    zone = ZoneInfo(settings.timezone)
    count_zero = settings.scoring_count_zero_value_orders
    calibration = await store.load_population(
        res.pool,
        _end_of_day(split, zone),
        zone,
        settings.scoring_trend_window_days,
        count_zero_value=count_zero,
    )
    holdout = await store.holdout_purchase_days(
        res.pool, split, _end_of_day(last_day, zone), zone, count_zero_value=count_zero
    )
    known = set(calibration.customer_id.tolist())
    new_in_holdout = sum(1 for customer in holdout if customer not in known)
    actual = [holdout.get(customer, 0) for customer in calibration.customer_id.tolist()]
    found = await asyncio.to_thread(
        validation.validate_purchase_model,
        calibration,
        actual,
        float((last_day - split).days),
        settings.scoring_config(),
        top_group,
    )
    return found, new_in_holdout


def _validation_body(
    found: validation.Validation, new_in_holdout: int, first_day: date, split: date, last_day: date
) -> ModelValidation:
    params = found.fit.params
    return ModelValidation(
        time_unit=found.time_unit,
        calibration=_period(first_day, split),
        holdout=_period(split + timedelta(days=1), last_day),
        customers=found.customers,
        customers_new_in_holdout=new_in_holdout,
        parameters={
            "r": params.r,
            "alpha": params.alpha,
            "a": params.a,
            "b": params.b,
            "log_likelihood": found.fit.log_likelihood,
        },
        groups=[
            ValidationGroup(
                repeat_purchases=g.repeat_purchases,
                open_ended=g.open_ended,
                label=f"{g.repeat_purchases}+" if g.open_ended else str(g.repeat_purchases),
                customers=g.customers,
                actual_mean=g.actual_mean,
                predicted_mean=g.predicted_mean,
                actual_total=g.actual_total,
                predicted_total=g.predicted_total,
            )
            for g in found.groups
        ],
        errors=ValidationErrors(
            mean_absolute_error=found.mean_absolute_error,
            root_mean_squared_error=found.root_mean_squared_error,
            actual_total=found.actual_total,
            predicted_total=found.predicted_total,
            total_error=found.total_error,
        ),
    )


def _period(start: date, end: date) -> ValidationPeriod:
    days = (end - start).days + 1
    return ValidationPeriod(start=start, end=end, days=days, weeks=days / 7)


MAN_CLASS_PATTERN = r"^[mM]\+[aA]\+[nN]$"


class LeadItem(BaseModel):
    """A lead: the latest MAN assessment, the action the MAN rule gives, whether they bought."""

    customer_id: str
    assessed_at: datetime
    money: bool
    authority: bool
    need: bool
    assessed_by: str | None
    has_bought: bool = Field(description="Has a purchase that counts.")
    man_class: str = Field(alias="class", examples=["M+a+N"])
    action: LeadAction
    advice: str
    advice_zh: str
    lifecycle: str | None = Field(description="`prospect` while not bought, else null.")
    lifecycle_label_en: str | None = Field(default=None, description="Prospects only.")
    lifecycle_label_zh: str | None = Field(default=None, description="Prospects only.")


class LeadPage(BaseModel):
    items: list[LeadItem] = Field(
        description="Leads by customer id: the latest MAN assessment (`class`, money, "
        "authority, need, assessed_at, assessed_by), the `action` the MAN rule gives with its "
        "`advice`/`advice_zh`, and whether the customer has bought (`has_bought`; "
        "`lifecycle` prospect while not)."
    )
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


@router.get(
    "/leads",
    response_model=LeadPage,
    # A buyer's lead has no lifecycle labels: left out, not null.
    response_model_exclude_unset=True,
    summary="MAN lead lists: leads by class or action, with the action for each (paged)",
    description="The MAN rule (money, authority, need; upper case = has it): M+A+N pursue; "
    "M+A+n contact with skill; M+a+N find the decision maker; m+A+N check credit and "
    "financing; m+a+N, m+A+n, M+a+n nurture; m+a+n stop contact. Each lead's latest "
    "assessment counts.",
    tags=["leads"],
    responses=BAD_INPUT,
)
async def list_leads(
    res: Scoring,
    man_class: Annotated[
        str | None,
        Query(alias="class", pattern=MAN_CLASS_PATTERN, examples=["M+A+N"]),
    ] = None,
    action: Annotated[LeadAction | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> LeadPage:
    codes = _man_codes(man_class, action)
    decoded = decode_cursor(cursor)
    after = decoded[1] if decoded else None
    rows = await store.list_leads(
        res.pool,
        codes,
        after,
        limit,
        count_zero_value=res.settings.scoring_count_zero_value_orders,
    )
    items = []
    for row in rows:
        man = man_lead_class(row["money"], row["authority"], row["need"])
        stage = None if row["has_bought"] else LifecycleStage.PROSPECT.value
        items.append(
            {k: v for k, v in row.items() if k != "code"} | _lead_fields(man) | {"lifecycle": stage}
        )
    next_cursor = encode_cursor(0.0, rows[-1]["customer_id"]) if len(rows) == limit else None
    return LeadPage(items=[labelled(i) for i in items], next_cursor=next_cursor)


def _man_codes(man_class: str | None, action: LeadAction | None) -> list[str] | None:
    """The class codes a filter keeps (None: every class)."""
    if man_class is None and action is None:
        return None
    codes = []
    for money in (True, False):
        for authority in (True, False):
            for need in (True, False):
                man = man_lead_class(money, authority, need)
                if (action is None or man.action is action) and (
                    man_class is None or man.code == man_class  # case-sensitive notation
                ):
                    codes.append(man.code)
    return codes
