"""Validating the purchase model on the user's own history, pure: calibration/holdout split.

The check of [FHL05] section 4 (the conditional-expectation figure): fit the model on the
history up to a calibration date, predict each customer's purchases over the holdout period
that follows from their calibration statistics alone, and compare with what they bought in
the holdout, per customer and grouped by the number of repeat purchases in the calibration
period (0, 1, ..., 7+). A model that reads its customers well predicts every group's mean,
not just the total: the light buyers that a regression to the mean pulls up and the heavy
buyers it pulls down.

Purchases are counted as the model counts them: distinct purchase days.

[FHL05] Fader, Hardie & Lee (2005), "'Counting Your Customers' the Easy Way: An Alternative
to the Pareto/NBD Model", Marketing Science 24(2), 275-284.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.scoring import clv
from services.scoring.population import DAYS_PER_WEEK, Population, ScoringConfig, fit_models

FloatArray = npt.NDArray[np.float64]
DEFAULT_TOP_GROUP = 7  # [FHL05]'s figure groups calibration repeat purchases 0, 1, ..., 7+


@dataclass(frozen=True)
class HoldoutGroup:
    """Customers with `repeat_purchases` repeat purchase days in the calibration period (at
    least that many when `open_ended`), and their holdout purchase days."""

    repeat_purchases: int
    open_ended: bool
    customers: int
    actual_total: float
    predicted_total: float

    @property
    def actual_mean(self) -> float:
        return self.actual_total / self.customers

    @property
    def predicted_mean(self) -> float:
        return self.predicted_total / self.customers


@dataclass(frozen=True)
class Validation:
    """The fit on the calibration period and how it predicted the holdout period.

    mean_absolute_error and root_mean_squared_error are per customer, in purchase days;
    total_error is (predicted - actual) / actual of the whole base's holdout purchases.
    """

    fit: clv.BgNbdFit
    time_unit: clv.TimeUnit
    holdout_weeks: float
    customers: int
    groups: tuple[HoldoutGroup, ...]
    actual_total: float
    predicted_total: float
    mean_absolute_error: float
    root_mean_squared_error: float

    @property
    def total_error(self) -> float | None:
        if self.actual_total == 0:
            return None
        return (self.predicted_total - self.actual_total) / self.actual_total


def validate_purchase_model(
    calibration: Population,
    holdout_purchase_days: npt.ArrayLike,
    holdout_days: float,
    config: ScoringConfig,
    top_group: int = DEFAULT_TOP_GROUP,
) -> Validation | None:
    """Fit BG/NBD (scoring's purchase model, in config.time_unit) on `calibration` and compare
    its conditional expectation E[Y(t) | x, t_x, T] ([FHL05] eq. 10) over the holdout with
    `holdout_purchase_days` (aligned with calibration's customers). None when too few
    customers were observed to fit."""
    if holdout_days <= 0:
        raise ValueError("the holdout period must be positive")
    if top_group < 1:
        raise ValueError("top_group must be at least 1")
    actual = np.asarray(holdout_purchase_days, dtype=np.float64)
    if actual.shape != (calibration.size,):
        raise ValueError("one holdout count per calibration customer")
    fitted = fit_models(calibration, config).bgnbd
    if fitted is None:
        return None
    summary = calibration.summary(config.unit_days)
    predicted = clv.bgnbd_expected_purchases(
        fitted.params,
        holdout_days / config.unit_days,
        summary.frequency,
        summary.recency,
        np.maximum(summary.age, 0.0),
    )
    errors = predicted - actual
    return Validation(
        fit=fitted,
        time_unit=config.time_unit,
        holdout_weeks=holdout_days / DAYS_PER_WEEK,
        customers=calibration.size,
        groups=_groups(summary.frequency, actual, predicted, top_group),
        actual_total=float(actual.sum()),
        predicted_total=float(predicted.sum()),
        mean_absolute_error=float(np.abs(errors).mean()),
        root_mean_squared_error=float(np.sqrt(np.mean(errors**2))),
    )


def _groups(
    repeat: FloatArray, actual: FloatArray, predicted: FloatArray, top_group: int
) -> tuple[HoldoutGroup, ...]:
    """One group per repeat count 0 .. top_group - 1, then top_group or more; empty groups
    are left out."""
    group = np.minimum(repeat, top_group).astype(np.int64)
    found = []
    for k in range(top_group + 1):
        members = group == k
        if members.any():
            found.append(
                HoldoutGroup(
                    repeat_purchases=k,
                    open_ended=k == top_group,
                    customers=int(members.sum()),
                    actual_total=float(actual[members].sum()),
                    predicted_total=float(predicted[members].sum()),
                )
            )
    return tuple(found)
