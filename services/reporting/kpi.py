"""Key performance indicators (绩效评估) as small pure functions.

Every KPI formula is written once, here; the SQL side, the HTTP API and the dashboard call
these functions or mirror them, and the catalogue of `metrics.py` describes each KPI the API
serves (labels, unit, formula, source).

Conventions
- Money is `decimal.Decimal`, never float. Ratios are `Decimal` too, so that a ratio of money
  stays exact and every KPI has one numeric type. Nothing is rounded here: rounding is a
  presentation concern.
- Rates are fractions (Decimal("0.25") means 25 %), except NPS (-100..100) and CSAT (0..100),
  which are conventionally quoted on those scales. `Unit` names each KPI's unit.
- A ratio whose denominator is zero is `None` ("no data in this slice"), never a crash or NaN.
- An input that is impossible by definition (a negative count, a part larger than its whole,
  a survey score off its scale, money as float) raises: it reveals a bug upstream.
- Periods are calendar dates in the reporting time zone (`CommonSettings.timezone`); convert
  timestamps with `local_date` before bucketing them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Final, Literal

from shared.stats import percentile_cont  # one definition, shared with complaints

Number = int | Decimal
Scores = Iterable[int] | Mapping[int, int]
"""Survey answers: either one int per response, or a mapping score -> number of responses
(a `collections.Counter` works)."""

NPS_SCALE: Final = (0, 10)
NPS_PROMOTER_MIN: Final = 9  # 9-10 are promoters
NPS_DETRACTOR_MAX: Final = 6  # 0-6 are detractors; 7-8 are passives
CSAT_SCALE: Final = (1, 5)
CSAT_SATISFIED_MIN: Final = 4  # top two boxes: 4 and 5
FEEDBACK_SCALE: Final = (1, 5)  # default scale of the complaint follow-up question (step 7)
REPEAT_MIN_ORDERS: Final = 2
REPEAT_WINDOW_DAYS: Final = 7  # default shortest window of the repeat purchase rate


# --------------------------------------------------------------------------- validation


def _require_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int count, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def _require_money(name: str, value: Decimal) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a decimal.Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")


def _require_number(name: str, value: Number) -> None:
    if isinstance(value, Decimal):
        _require_money(name, value)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or a decimal.Decimal, got {value!r}")


def _require_part(part_name: str, part: int, whole_name: str, whole: int) -> None:
    if part > whole:
        raise ValueError(f"{part_name} ({part}) cannot exceed {whole_name} ({whole})")


def _ratio(numerator: Number, denominator: Number) -> Decimal | None:
    """numerator / denominator as an exact-as-possible Decimal; None when denominator is 0."""
    if denominator == 0:
        return None
    return Decimal(numerator) / Decimal(denominator)


# --------------------------------------------------------------------------- sales


def average_order_value(revenue: Decimal, orders: int) -> Decimal | None:
    """Average order value (客单价) = revenue / number of orders."""
    _require_money("revenue", revenue)
    _require_count("orders", orders)
    return _ratio(revenue, orders)


def repeat_purchase_rate(repeat_buyers: int, buyers: int) -> Decimal | None:
    """Repeat purchase rate (复购率) = customers with 2+ orders in the window / customers with
    1+ order in the window (both counted over the same window, `repeat_window`). A fraction
    in [0, 1]."""
    _require_count("repeat_buyers", repeat_buyers)
    _require_count("buyers", buyers)
    _require_part("repeat_buyers", repeat_buyers, "buyers", buyers)
    return _ratio(repeat_buyers, buyers)


def repeat_window(start: date, stop: date, days: int) -> date:
    """The first day of a period's repeat window, which ends with the period (`stop` is
    exclusive): the period itself, or the `days` days up to its last day when the period is
    shorter. Two orders on different days of a week are a repeat purchase; a single day
    would almost never hold two, so a day's rate reads its trailing window instead of ~0."""
    if days < 1:
        raise ValueError(f"the repeat window must be at least one day, got {days}")
    return min(start, stop - timedelta(days=days))


def growth_rate(current: Number, previous: Number) -> Decimal | None:
    """Period-over-period growth (增长率) = (current - previous) / previous, a fraction
    (0.1 = +10 %). Meant for positive bases (revenue, orders, CLTV): with a negative previous
    value the sign of the result is not meaningful."""
    _require_number("current", current)
    _require_number("previous", previous)
    return _ratio(Decimal(current) - Decimal(previous), previous)


# --------------------------------------------------------------------------- acquisition, churn


def customer_acquisition_cost(marketing_spend: Decimal, new_customers: int) -> Decimal | None:
    """CAC (获客成本) = marketing spend in the period / new customers acquired in the period
    (the standard "blended" CAC, all marketing spend over all new
    customers, whatever their channel)."""
    _require_money("marketing_spend", marketing_spend)
    if marketing_spend < 0:
        raise ValueError(f"marketing_spend must not be negative, got {marketing_spend}")
    _require_count("new_customers", new_customers)
    return _ratio(marketing_spend, new_customers)


def churn_rate(customers_lost: int, customers_at_start: int) -> Decimal | None:
    """Churn rate (流失率) = customers lost in the period / customers at the period's start.

    A customer is lost when their inactivity window (configurable) ends
    inside the period. Only customers of the starting base count as lost, so the rate is a
    fraction in [0, 1]; a customer both acquired and lost inside the period is not counted.
    """
    _require_count("customers_lost", customers_lost)
    _require_count("customers_at_start", customers_at_start)
    _require_part("customers_lost", customers_lost, "customers_at_start", customers_at_start)
    return _ratio(customers_lost, customers_at_start)


def retention_rate(
    customers_at_end: int, new_customers: int, customers_at_start: int
) -> Decimal | None:
    """Retention rate (客户保持率/留存率) = (customers at end - customers acquired) / customers at
    start.

    The definition given in V. Kumar & W. Reinartz, "Customer Relationship Management"
    (Springer), the usual textbook form (E - N) / S. N counts every customer who joined the
    base in the period: new ones and ones won back (the caller passes both), since neither
    was retained from the start. It is not 1 - churn_rate in general: customers acquired and
    lost inside the period lower it, and it can then even be negative. Count customers at end
    and acquired customers with the same inactivity window as churn.
    """
    _require_count("customers_at_end", customers_at_end)
    _require_count("new_customers", new_customers)
    _require_count("customers_at_start", customers_at_start)
    return _ratio(customers_at_end - new_customers, customers_at_start)


# --------------------------------------------------------------------------- satisfaction


def _tally(scores: Scores, scale: tuple[int, int], what: str) -> Counter[int]:
    """Number of responses per score, checking every score is an int on the scale."""
    pairs = scores.items() if isinstance(scores, Mapping) else ((s, 1) for s in scores)
    low, high = scale
    tally: Counter[int] = Counter()
    for score, count in pairs:
        if isinstance(score, bool) or not isinstance(score, int) or not low <= score <= high:
            raise ValueError(f"{what} score must be an int in {low}..{high}, got {score!r}")
        _require_count(f"number of {what} responses", count)
        tally[score] += count
    return tally


def _count_between(tally: Counter[int], low: int, high: int) -> int:
    return sum(count for score, count in tally.items() if low <= score <= high)


def _percent(part: int, whole: int) -> Decimal | None:
    """100 * part / whole with a single division (one rounding); None when whole is 0."""
    return _ratio(part * 100, whole)


def net_promoter_score(scores: Scores) -> Decimal | None:
    """Net Promoter Score (净推荐值) = % promoters (9-10) - % detractors (0-6) on the 0-10
    "how likely are you to recommend us" question; a number in [-100, 100].

    Source: F. F. Reichheld, "The One Number You Need to Grow", Harvard Business Review,
    December 2003. None when there is no response.
    """
    tally = _tally(scores, NPS_SCALE, "NPS")
    promoters = _count_between(tally, NPS_PROMOTER_MIN, NPS_SCALE[1])
    detractors = _count_between(tally, NPS_SCALE[0], NPS_DETRACTOR_MAX)
    return _percent(promoters - detractors, tally.total())


def customer_satisfaction_score(scores: Scores) -> Decimal | None:
    """CSAT (客户满意度) = % of responses that are 4 or 5 on a 1-5 satisfaction question; a
    number in [0, 100].

    The "top-two-box" CSAT, the common industry convention.
    (It is not the ACSI, which is a 0-100 index from a model over 1-10 ratings.)
    None when there is no response.
    """
    tally = _tally(scores, CSAT_SCALE, "CSAT")
    return _percent(_count_between(tally, CSAT_SATISFIED_MIN, CSAT_SCALE[1]), tally.total())


def complaint_feedback_score(
    scores: Scores, scale: tuple[int, int] = FEEDBACK_SCALE
) -> Decimal | None:
    """Complaint feedback score (投诉处理满意度) = arithmetic mean of the answers to the
    follow-up question of complaint-handling step 7, on `scale`.
    None when there is no response."""
    tally = _tally(scores, scale, "feedback")
    total = sum(score * count for score, count in tally.items())
    return _ratio(total, tally.total())


# --------------------------------------------------------------------------- service quality


def resolution_rate(resolved: int, received: int) -> Decimal | None:
    """Resolution rate (投诉解决率) = complaints resolved / complaints received, a fraction in
    [0, 1]. Cohort definition: of the complaints received in the period, the share resolved
    by the time of the report."""
    _require_count("resolved", resolved)
    _require_count("received", received)
    _require_part("resolved", resolved, "received", received)
    return _ratio(resolved, received)


def sla_compliance(met: int, breached: int) -> Decimal | None:
    """SLA compliance (SLA达标率) = targets met / (targets met + targets breached), a fraction
    in [0, 1]. Count only targets whose outcome is known (met, or breached); a target still
    running before its deadline is neither. A target counts once, as breached from the
    moment its deadline passes whether or not its clock ever stops (domain.sla_verdicts)."""
    _require_count("met", met)
    _require_count("breached", breached)
    return _ratio(met, met + breached)


def median_duration(durations: Sequence[timedelta]) -> timedelta | None:
    """Median (中位数) of response or handling times: `percentile_cont(durations, 0.5)`."""
    return percentile_cont(durations, 0.5)


def p90_duration(durations: Sequence[timedelta]) -> timedelta | None:
    """90th percentile (P90) of response or handling times: `percentile_cont(durations, 0.9)`."""
    return percentile_cont(durations, 0.9)


# --------------------------------------------------------------------------- relationship depth


def interactions_per_customer(interactions: int, customers: int) -> Decimal | None:
    """Interactions per customer (人均互动次数) = interactions in the period / customers in the
    population measured, the same population for both: the interactions of exactly the
    customers counted (reporting: the customers who interacted in the period)."""
    _require_count("interactions", interactions)
    _require_count("customers", customers)
    return _ratio(interactions, customers)


def contact_share(part: int, whole: int) -> Decimal | None:
    """A kind of contact's share of the contacts it is counted among (bot-handled share =
    interactions handled by a bot / interactions with a recorded handler; synchronous share =
    synchronous / (synchronous + asynchronous), contacts whose mode was not recorded left
    out of both), a fraction in [0, 1]."""
    _require_count("part", part)
    _require_count("whole", whole)
    _require_part("part", part, "whole", whole)
    return _ratio(part, whole)


def complaints_per_thousand_orders(complaints: int, orders: int) -> Decimal | None:
    """Complaint rate (每千单投诉率) = complaints opened in the period / orders placed in the
    period x 1,000. A rate against the volume of business, as regulators publish complaint
    figures per 1,000 accounts or sales (UK FCA firm-level complaints data, "context"
    tables); orders as the base is this product's. Not a share: a complaint need not be
    about an order of the same period, so it can exceed 1,000."""
    _require_count("complaints", complaints)
    _require_count("orders", orders)
    return _ratio(complaints * 1000, orders)


# --------------------------------------------------------------------------- cohorts


def months_between(first: date, later: date) -> int:
    """Whole calendar months from `first`'s month to `later`'s (June to August: 2)."""
    return (later.year - first.year) * 12 + later.month - first.month


def add_months(first: date, months: int) -> date:
    """The first day of the month `months` after `first`'s (negative: before)."""
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def cohort_retention(active: int, cohort_size: int) -> Decimal | None:
    """Cohort retention (同期群留存率) of cohort f in month f + k = customers of the cohort
    who bought in month f + k / customers in the cohort, a fraction in [0, 1]; 1 for k = 0.

    The cohort is the customers whose first purchase ever falls in month f (local calendar),
    followed month by month: the cohort analysis of Fader & Hardie, "Forecasting Repeat
    Sales at CDNOW: A Case Study", Interfaces 31(3), 2001, which tracks a cohort of new
    customers defined by the period of their first purchase, and the "retention table" of
    acquisition-cohort analysis. A customer counts in every month they bought in, returning
    after a gap included (not "still active since the start"), so the shares need not fall.
    """
    _require_count("active", active)
    _require_count("cohort_size", cohort_size)
    _require_part("active", active, "cohort_size", cohort_size)
    return _ratio(active, cohort_size)


# --------------------------------------------------------------------------- buyers, value


def returning_buyers(buyers: int, new_buyers: int) -> int:
    """Returning buyers (回头客) = buyers in the window - new buyers (whose first purchase ever
    falls in the window): the buyers who had bought before it."""
    _require_count("buyers", buyers)
    _require_count("new_buyers", new_buyers)
    _require_part("new_buyers", new_buyers, "buyers", buyers)
    return buyers - new_buyers


def customer_equity(lifetime_values: Iterable[Decimal]) -> Decimal:
    """Customer equity (客户资产) = sum of the customers' lifetime values over the customer
    base (Blattberg & Deighton, "Manage Marketing by the Customer Equity
    Test", Harvard Business Review, 1996). Sums of groups' equities add the same way."""
    total = Decimal(0)
    for value in lifetime_values:
        _require_money("lifetime value", value)
        total += value
    return total


def average_clv(groups: Iterable[tuple[int, Decimal | None]]) -> Decimal | None:
    """Average customer lifetime value (平均客户终身价值) over groups of customers, each given as
    (customers, their average CLV): the customer-weighted mean sum(n_g * avg_g) / sum(n_g)
    over the groups whose average is known. None when no group has one."""
    weighted, customers = Decimal(0), 0
    for count, average in groups:
        _require_count("customers", count)
        if average is None:
            continue
        _require_money("average CLV", average)
        weighted += count * average
        customers += count
    return _ratio(weighted, customers)


# --------------------------------------------------------------------------- periods


class Granularity(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO 8601 week, starting on Monday
    MONTH = "month"


def local_date(moment: datetime, zone: tzinfo) -> date:
    """The calendar date of an aware timestamp in the reporting time zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(zone).date()


# (The matches below compare with the members' values, which a StrEnum equals, rather than
# convert with Granularity(...): a KPI read calls these for every day of its range, and the
# conversion was a quarter of a 365-day read's Python.)


def period_start(day: date, granularity: Granularity) -> date:
    """The first day of the period containing `day`: the day itself, the Monday of its ISO
    week, or the first of its month. A datetime is reduced to its own date part."""
    day = date(day.year, day.month, day.day)
    match granularity:
        case Granularity.DAY:
            return day
        case Granularity.WEEK:
            return day - timedelta(days=day.weekday())
        case Granularity.MONTH:
            return day.replace(day=1)
    raise ValueError(f"{granularity!r} is not a valid Granularity")


def next_period_start(day: date, granularity: Granularity) -> date:
    """The first day of the period after the one containing `day`."""
    start = period_start(day, granularity)
    match granularity:
        case Granularity.DAY:
            return start + timedelta(days=1)
        case Granularity.WEEK:
            return start + timedelta(weeks=1)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)  # a month


def period_starts(first: date, last: date, granularity: Granularity) -> list[date]:
    """Start of every period that contains a day of first..last (both inclusive), in order;
    empty when last is before first."""
    if last < first:
        return []
    starts = [period_start(first, granularity)]
    final = period_start(last, granularity)
    while starts[-1] < final:
        starts.append(next_period_start(starts[-1], granularity))
    return starts


# --------------------------------------------------------------------------- units, comparisons


class Unit(StrEnum):
    MONEY = "money"  # reporting currency (CommonSettings.reporting_currency)
    COUNT = "count"
    RATIO = "ratio"  # fraction: 0.25 means 25 %
    PERCENT = "percent"  # 0..100
    NPS_POINTS = "nps_points"  # -100..100
    SCORE = "score"  # mean of answers, on the question's scale
    DURATION = "duration"
    PER_CUSTOMER = "per_customer"
    PER_THOUSAND_ORDERS = "per_1000_orders"


@dataclass(frozen=True)
class Comparison:
    """The days a headline card counts and the days it compares them with."""

    start: date
    end: date  # the last day counted: today in a period still running
    previous_start: date
    previous_end: date
    basis: Literal["period_to_date", "whole_periods"]


def like_for_like(day: date, today: date, granularity: Granularity) -> Comparison:
    """The period containing `day` so far (up to `today`) against the same number of days
    from the start of the period before, capped at that period's end: a month on its 10th
    compares the 1st-10th with the 1st-10th of the month before, not with all of it (which
    would make every month look down early on); March 31 compares with the whole of
    February. A period already over compares whole periods (so does a day: days are not cut
    by the hour)."""
    start = period_start(day, granularity)
    end = next_period_start(start, granularity) - timedelta(days=1)
    previous_start = period_start(start - timedelta(days=1), granularity)
    if today >= end:
        return Comparison(start, end, previous_start, start - timedelta(days=1), "whole_periods")
    so_far = max(today, start) - start
    previous_end = min(previous_start + so_far, start - timedelta(days=1))
    return Comparison(start, max(today, start), previous_start, previous_end, "period_to_date")
