"""Crisis detection: seasonal baselines, the Lucas Poisson CUSUM, warm-up, minimum count and
cooldown; a complaint wave gives exactly one alert, a steady background none."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest

from services.complaints.crisis import (
    HOURS_PER_WEEK,
    CrisisAlert,
    CrisisConfig,
    DetectorState,
    Dimension,
    SeriesKey,
    expected_count,
    hour_of_week,
    new_detector,
    observe,
    observe_all,
)

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
CONFIG = CrisisConfig()
DELIVERY = SeriesKey(Dimension.CATEGORY, "delivery")
PRICE = SeriesKey(Dimension.CATEGORY, "price and billing")
HOTLINE = SeriesKey(Dimension.CHANNEL, "hotline")


def weekly_rates(peak: float) -> list[float]:
    """Hourly Poisson rates by hour of week: office hours busiest, nights quiet, weekends half."""
    rates = []
    for slot in range(HOURS_PER_WEEK):
        day, hour = divmod(slot, 24)
        level = 1.0 if 9 <= hour < 18 else 0.4 if 7 <= hour < 22 else 0.08
        rates.append(peak * level * (0.5 if day >= 5 else 1.0))
    return rates


Rate = Callable[[int], float]  # hour index -> Poisson rate


def simulate(
    rates: dict[SeriesKey, Rate], weeks: int, seed: int, config: CrisisConfig = CONFIG
) -> list[tuple[int, CrisisAlert]]:
    """Feed every series hour by hour through ``observe_all``; alerts with their hour index."""
    rng = np.random.default_rng(seed)
    states: dict[SeriesKey, DetectorState] = {}
    alerts: list[tuple[int, CrisisAlert]] = []
    for hour in range(weeks * HOURS_PER_WEEK):
        counts = {series: int(rng.poisson(rate(hour))) for series, rate in rates.items()}
        states, fired = observe_all(states, MONDAY + timedelta(hours=hour), counts, config)
        alerts.extend((hour, alert) for alert in fired)
    return alerts


def background(peak: float) -> Rate:
    rates = weekly_rates(peak)
    return lambda hour: rates[hour % HOURS_PER_WEEK]


def with_wave(base: Rate, start: int, length: int, extra: float) -> Rate:
    return lambda hour: base(hour) + (extra if start <= hour < start + length else 0.0)


# --------------------------------------------------------------------------- the two stories


def test_a_steady_weekly_background_raises_no_alert() -> None:
    rates = {DELIVERY: background(6.0), PRICE: background(1.5), HOTLINE: background(20.0)}
    assert simulate(rates, weeks=10, seed=20260105) == []


def test_a_complaint_wave_raises_exactly_one_alert_with_its_evidence() -> None:
    wave_start = 6 * HOURS_PER_WEEK + 2 * 24 + 10  # week 7, Wednesday 10:00
    rates = {
        DELIVERY: with_wave(background(4.0), wave_start, length=12, extra=12.0),
        PRICE: background(4.0),
    }
    alerts = simulate(rates, weeks=8, seed=7)
    assert len(alerts) == 1  # the cooldown holds back the rest of the wave
    hour, alert = alerts[0]
    assert alert.series == DELIVERY
    assert wave_start <= hour < wave_start + 3  # caught within its first hours
    start = MONDAY + timedelta(hours=wave_start)
    assert start - timedelta(hours=2) <= alert.window_start <= start + timedelta(hours=2)
    assert alert.window_end == MONDAY + timedelta(hours=hour + 1)
    assert alert.count >= CONFIG.min_count
    assert alert.count > 2 * alert.baseline
    assert alert.score >= alert.decision_interval == CONFIG.decision_interval
    assert alert.key == f"crisis:category:delivery:{alert.window_end.isoformat()}"


def test_a_wave_outlasting_the_cooldown_alerts_once_per_cooldown() -> None:
    wave_start = 5 * HOURS_PER_WEEK + 9  # week 6, Monday 09:00
    rates = {DELIVERY: with_wave(background(4.0), wave_start, length=60, extra=12.0)}
    hours = [hour for hour, _ in simulate(rates, weeks=7, seed=11)]
    cooldown_hours = CONFIG.cooldown / timedelta(hours=1)
    assert len(hours) == 3  # 60 hours: the first hour, then again after each 24-hour cooldown
    assert all(later - earlier > cooldown_hours for earlier, later in pairwise(hours))
    assert wave_start <= hours[0]
    assert hours[-1] < wave_start + 60


# --------------------------------------------------------------------------- the parts


def test_reference_value_is_lucas_k() -> None:
    config = CrisisConfig(shift_ratio=3.0)
    assert config.reference(2.0) == pytest.approx((6.0 - 2.0) / (math.log(6.0) - math.log(2.0)))


def test_hour_of_week_uses_the_configured_zone() -> None:
    assert hour_of_week(MONDAY, CONFIG) == 0
    assert hour_of_week(MONDAY - timedelta(hours=1), CONFIG) == HOURS_PER_WEEK - 1
    shanghai = CrisisConfig(zone="Asia/Shanghai")  # UTC+8: Sunday 16:00 UTC is Monday 00:00
    assert hour_of_week(MONDAY - timedelta(hours=8), shanghai) == 0


def test_baseline_falls_back_to_the_overall_mean_until_a_slot_warms_up() -> None:
    state = new_detector(DELIVERY)
    for hour in range(10):
        state, _ = observe(state, MONDAY + timedelta(hours=hour), 4, CONFIG)
    assert expected_count(state, 0, CONFIG) == pytest.approx(4.0)  # overall mean
    assert expected_count(state, 100, CONFIG) == pytest.approx(4.0)  # slot never seen
    for week in range(1, CONFIG.slot_warmup):
        state, _ = observe(state, MONDAY + timedelta(weeks=week), 10, CONFIG)
    assert state.slot_counts[0] == CONFIG.slot_warmup
    assert expected_count(state, 0, CONFIG) == pytest.approx((4 + 10 + 10) / 3)


def test_silent_hours_keep_a_positive_floor() -> None:
    state = new_detector(DELIVERY)
    assert expected_count(state, 5, CONFIG) == CONFIG.min_baseline


def test_no_alert_while_warming_up() -> None:
    state = new_detector(DELIVERY)
    for hour in range(CONFIG.warmup_hours):
        state, alert = observe(state, MONDAY + timedelta(hours=hour), 100 * (hour % 2), CONFIG)
        assert alert is None
    assert state.cusum == 0.0


def warmed_up(count: int, config: CrisisConfig) -> tuple[DetectorState, datetime]:
    state = new_detector(DELIVERY)
    for hour in range(config.warmup_hours):
        state, _ = observe(state, MONDAY + timedelta(hours=hour), count, config)
    return state, MONDAY + timedelta(hours=config.warmup_hours)


def test_min_count_holds_back_alerts_on_a_handful_of_complaints() -> None:
    config = CrisisConfig(decision_interval=3.0, min_count=10)
    state, hour = warmed_up(0, config)
    _, alert = observe(state, hour, 5, config)
    assert alert is None
    _, alert = observe(state, hour, 10, config)
    assert alert is not None
    assert (alert.count, alert.window_start) == (10, hour)


def test_cusum_accumulates_over_hours_and_resets_at_zero() -> None:
    state, hour = warmed_up(2, CONFIG)  # k = 2 * 2 / ln 3 = 3.64 per hour
    state, _ = observe(state, hour, 7, CONFIG)
    state, _ = observe(state, hour + timedelta(hours=1), 7, CONFIG)
    assert state.cusum == pytest.approx(2 * (7 - CONFIG.reference(2.0)))
    assert state.run is not None
    assert (state.run.start, state.run.count) == (hour, 14)
    state, _ = observe(state, hour + timedelta(hours=2), 0, CONFIG)
    assert state.cusum == pytest.approx(2 * 7 - 3 * CONFIG.reference(2.0))
    state, _ = observe(state, hour + timedelta(hours=3), 0, CONFIG)
    assert (state.cusum, state.run) == (0.0, None)


def test_gaps_are_allowed_but_hours_must_move_forward() -> None:
    state, hour = warmed_up(1, CONFIG)
    state, _ = observe(state, hour + timedelta(hours=5), 1, CONFIG)
    with pytest.raises(ValueError, match="increase"):
        observe(state, hour, 1, CONFIG)


@pytest.mark.parametrize(
    ("hour_start", "count", "message"),
    [
        (MONDAY + timedelta(minutes=30), 1, "start a UTC hour"),
        (MONDAY.replace(tzinfo=None), 1, "aware"),
        (MONDAY, -1, "negative"),
    ],
)
def test_bad_input_is_rejected(hour_start: datetime, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        observe(new_detector(DELIVERY), hour_start, count, CONFIG)


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="shift_ratio"):
        CrisisConfig(shift_ratio=1.0)
    with pytest.raises(ValueError, match="EWMA"):
        CrisisConfig(slot_alpha=0.0)


def test_observe_all_treats_missing_series_as_zero_and_adds_new_ones() -> None:
    states, _ = observe_all({}, MONDAY, {DELIVERY: 3}, CONFIG)
    states, _ = observe_all(states, MONDAY + timedelta(hours=1), {PRICE: 2}, CONFIG)
    assert states[DELIVERY].hours_seen == 2
    assert states[DELIVERY].overall_mean == pytest.approx(1.5)
    assert states[PRICE].hours_seen == 1
