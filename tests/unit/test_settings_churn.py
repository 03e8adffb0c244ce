"""One churn rule for every service: CHURN_AFTER_DAYS, with the services' former names still
read, so a deployment that set them keeps its window (no I/O beyond the environment)."""

from __future__ import annotations

import pytest

from services.reporting.settings import ReportingSettings
from services.scoring.settings import ScoringSettings


@pytest.mark.parametrize(
    "variable", ["CHURN_AFTER_DAYS", "SCORING_CHURN_AFTER_DAYS", "REPORTING_CHURN_AFTER_DAYS"]
)
def test_every_service_reads_one_churn_window(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "180")
    scoring, reporting = ScoringSettings(), ReportingSettings()
    assert scoring.churn_after_days == reporting.churn_after_days == 180
    assert scoring.scoring_config().tier.churn_after_days == 180  # what scoring classes with
    assert scoring.scoring_config().lifecycle.churn_after_days == 180


def test_the_default_window_is_a_year() -> None:
    assert ScoringSettings().churn_after_days == ReportingSettings().churn_after_days == 365
