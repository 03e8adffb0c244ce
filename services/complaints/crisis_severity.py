"""How grave a crisis alert is, and what it counted. Pure.

A crisis is judged by its magnitude (严重程度), its reach (影响范围) and the difficulty of
handling it (处理难度). The first two are measured here from the alert's evidence; difficulty
is a judgement the team records with a stage change (`crisis_stages`).

* Magnitude, 1-3: the ratio of the count to the baseline's expectation over the alert window.
  1 below ``ratio_steps[0]`` (3x by default), 2 from it, 3 from ``ratio_steps[1]`` (6x).
* Reach, 1-3: the larger of two levels, one for the distinct customers behind the counted
  events (2 from 10, 3 from 50 by default) and one for the distinct channels they came
  through (2 from 2, 3 from 3).
* Score = magnitude + reach (2-6); level low (2-3), medium (4) or high (5-6).

An alert on the ``signal`` dimension counted negative survey answers or interactions, not
complaints: `counted` says which, and `describe` writes the alert's text with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.complaints.crisis import CrisisAlert, Dimension, SeriesKey

Level = Literal["low", "medium", "high"]

DEFAULT_RATIO_STEPS = (3.0, 6.0)  # magnitude 2 from three times the baseline, 3 from six
DEFAULT_CUSTOMER_STEPS = (10, 50)  # reach 2 from 10 distinct customers, 3 from 50
DEFAULT_CHANNEL_STEPS = (2, 3)  # reach 2 from 2 distinct channels, 3 from 3


@dataclass(frozen=True)
class SeverityConfig:
    ratio_steps: tuple[float, float] = DEFAULT_RATIO_STEPS
    customer_steps: tuple[int, int] = DEFAULT_CUSTOMER_STEPS
    channel_steps: tuple[int, int] = DEFAULT_CHANNEL_STEPS

    def __post_init__(self) -> None:
        for steps in (self.ratio_steps, self.customer_steps, self.channel_steps):
            if len(steps) != 2 or not 0 < steps[0] <= steps[1]:
                raise ValueError(f"severity steps must be two increasing positive numbers: {steps}")


@dataclass(frozen=True)
class Reach:
    """Who and where: the distinct customers and channels behind the counted events."""

    customers: int
    channels: int


@dataclass(frozen=True)
class Severity:
    ratio: float
    magnitude: int  # 1-3
    reach: int  # 1-3
    score: int  # magnitude + reach, 2-6
    level: Level


def assess(count: int, baseline: float, reach: Reach, config: SeverityConfig) -> Severity:
    """The severity of an alert that counted `count` where `baseline` was expected."""
    if baseline <= 0:
        raise ValueError("the baseline of an alert is positive (the detector's minimum)")
    ratio = count / baseline
    magnitude = _level(ratio, config.ratio_steps)
    reach_level = max(
        _level(reach.customers, config.customer_steps),
        _level(reach.channels, config.channel_steps),
    )
    score = magnitude + reach_level
    level: Level = "low" if score <= 3 else "medium" if score == 4 else "high"
    return Severity(ratio, magnitude, reach_level, score, level)


def _level(value: float, steps: tuple[float, float]) -> int:
    return 1 + sum(value >= step for step in steps)


# ---- what was counted ----------------------------------------------------------------------

Counted = Literal["complaints", "nps_detractors", "csat_negative", "negative_interactions"]


@dataclass(frozen=True)
class CountedNames:
    code: Counted | None  # None: a signal this module has no name for
    en: str  # plural, as in "12 complaints"
    zh: str


COMPLAINTS = CountedNames("complaints", "complaints", "起投诉")
# The signal series' values (as the complaints projection names them) and what they count.
SIGNALS: dict[str, CountedNames] = {
    "nps_detractor": CountedNames(
        "nps_detractors", "negative NPS answers (detractors)", "条 NPS 贬损评分"
    ),
    "csat_negative": CountedNames("csat_negative", "negative CSAT answers", "条 CSAT 差评"),
    "interaction_negative": CountedNames(
        "negative_interactions", "interactions with negative sentiment", "次负面情绪互动"
    ),
}
_DIMENSION_ZH = {"category": "类别", "channel": "渠道", "product": "产品"}


def counted(series: SeriesKey) -> CountedNames:
    """What an alert on `series` counted: complaints, or a kind of negative signal."""
    if series.dimension is Dimension.SIGNAL:
        return SIGNALS.get(
            series.value,
            CountedNames(None, f"negative signals '{series.value}'", f"条负面信号“{series.value}”"),
        )
    return COMPLAINTS


@dataclass(frozen=True)
class AlertText:
    en: str
    zh: str


def describe(alert: CrisisAlert, reach: Reach, severity: Severity) -> AlertText:
    """The alert's text: what was counted, where, against what expectation, and how grave."""
    what = counted(alert.series)
    if alert.series.dimension is Dimension.SIGNAL:
        where_en, where_zh = "", ""
    else:
        dimension = alert.series.dimension.value
        where_en = f" in {dimension} '{alert.series.value}'"
        where_zh = f"{_DIMENSION_ZH.get(dimension, dimension)}“{alert.series.value}”"
    en = (
        f"{alert.count} {what.en}{where_en} where {alert.baseline:.1f} were expected "
        f"({severity.ratio:.1f}x); {reach.customers} customers, {reach.channels} channels; "
        f"severity {severity.level}"
    )
    level_zh = {"low": "低", "medium": "中", "high": "高"}[severity.level]
    zh = (
        f"{where_zh}出现 {alert.count} {what.zh}，预期 {alert.baseline:.1f}"
        f"（{severity.ratio:.1f} 倍）；涉及 {reach.customers} 位客户、{reach.channels} 个渠道；"
        f"严重程度{level_zh}"
    )
    return AlertText(en, zh)
