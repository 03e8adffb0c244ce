"""Every setting may be given as CRM_<NAME>, which wins over the bare <NAME> that shells and
platforms also set (HOST, PORT, TIMEZONE); the bare names still work (no I/O beyond the
environment)."""

from __future__ import annotations

import pytest

from services.complaints.settings import ComplaintsSettings
from services.scoring.settings import ScoringSettings
from shared.settings import CommonSettings


def test_the_prefixed_name_wins_over_the_bare_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("CRM_PORT", "8100")
    monkeypatch.setenv("TIMEZONE", "UTC")
    monkeypatch.setenv("CRM_TIMEZONE", "Asia/Shanghai")
    settings = CommonSettings()
    assert (settings.port, settings.timezone) == (8100, "Asia/Shanghai")


def test_bare_names_still_work_and_services_take_the_prefix_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("CRM_SCORING_MARGIN", "0.4")
    monkeypatch.setenv("CRM_SLA_WARN_SHARE", "0.5")
    monkeypatch.setenv("CRM_CHURN_AFTER_DAYS", "200")
    assert CommonSettings().host == "0.0.0.0"
    scoring = ScoringSettings()
    assert (scoring.scoring_margin, scoring.churn_after_days) == (0.4, 200)
    assert ComplaintsSettings().sla_warn_share == 0.5


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_PORT", "8100")
    assert CommonSettings(port=8200).port == 8200
