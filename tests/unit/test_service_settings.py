"""ServiceSpec.own_settings: the one conversion of settings to a service's own class, which
create_app and `crm rebuild` both use."""

from __future__ import annotations

import pytest

from services.scoring.main import SPEC
from services.scoring.settings import ScoringSettings
from shared.settings import CommonSettings


def test_common_settings_keep_their_values_and_the_rest_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCORING_MARGIN", "0.25")
    common = CommonSettings(reporting_currency="EUR", timezone="Europe/Paris")
    own = SPEC.own_settings(common)
    assert isinstance(own, ScoringSettings)
    assert (own.reporting_currency, own.timezone) == ("EUR", "Europe/Paris")
    assert own.scoring_margin == 0.25  # a scoring field, read from the environment


def test_the_services_own_settings_are_taken_as_they_are() -> None:
    own = ScoringSettings(scoring_margin=0.5)
    assert SPEC.own_settings(own) is own


def test_no_settings_are_all_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_REPORTING_CURRENCY", "GBP")
    monkeypatch.setenv("SCORING_MARGIN", "0.75")
    own = SPEC.own_settings()
    assert isinstance(own, ScoringSettings)
    assert (own.reporting_currency, own.scoring_margin) == ("GBP", 0.75)
