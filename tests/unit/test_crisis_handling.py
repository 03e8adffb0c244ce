"""Crisis handling, pure: severity by hand, the alert's text says what it counted, and the
four stages move one step forward at a time (issue 15 item 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from services.complaints.crisis import CrisisAlert, Dimension, SeriesKey
from services.complaints.crisis_severity import (
    Reach,
    SeverityConfig,
    assess,
    counted,
    describe,
)
from services.complaints.crisis_stages import Stage, StageRefused, check_move, next_stage

CONFIG = SeverityConfig()  # ratios 3, 6; customers 10, 50; channels 2, 3


@pytest.mark.parametrize(
    ("count", "baseline", "customers", "channels", "expected"),
    [
        # 30 / 6 = 5.0: magnitude 2 (3 <= 5 < 6); 12 customers -> 2, 1 channel -> 1: reach 2;
        # 2 + 2 = 4: medium.
        (30, 6.0, 12, 1, (5.0, 2, 2, 4, "medium")),
        # 36 / 6 = 6.0: the step itself counts, magnitude 3; 50 customers -> 3: reach 3; high.
        (36, 6.0, 50, 3, (6.0, 3, 3, 6, "high")),
        # 10 / 5 = 2.0: magnitude 1; 9 customers -> 1, 2 channels -> 2: reach 2; 3: low.
        (10, 5.0, 9, 2, (2.0, 1, 2, 3, "low")),
        # Reach is the larger of the two: 3 customers -> 1, but 3 channels -> 3; 1 + 3: medium.
        (11, 4.0, 3, 3, (2.75, 1, 3, 4, "medium")),
        # 70 / 10 = 7.0 -> 3; 10 customers -> 2; 5: high.
        (70, 10.0, 10, 1, (7.0, 3, 2, 5, "high")),
    ],
)
def test_severity_by_hand(
    count: int,
    baseline: float,
    customers: int,
    channels: int,
    expected: tuple[float, int, int, int, str],
) -> None:
    found = assess(count, baseline, Reach(customers, channels), CONFIG)
    assert (found.ratio, found.magnitude, found.reach, found.score, found.level) == expected


def test_severity_steps_come_from_the_config() -> None:
    strict = SeverityConfig(ratio_steps=(2.0, 2.5), customer_steps=(2, 4), channel_steps=(5, 9))
    # 10 / 4 = 2.5 -> 3; 4 customers -> 3; 3 + 3 = 6.
    assert assess(10, 4.0, Reach(4, 1), strict).score == 6
    with pytest.raises(ValueError, match="increasing"):
        SeverityConfig(ratio_steps=(6.0, 3.0))
    with pytest.raises(ValueError, match="baseline"):
        assess(5, 0.0, Reach(1, 1), CONFIG)


def _alert(series: SeriesKey, count: int, baseline: float) -> CrisisAlert:
    end = datetime(2026, 3, 2, 12, tzinfo=UTC)
    return CrisisAlert(series, end - timedelta(hours=3), end, count, baseline, 13.0, 12.0)


@pytest.mark.parametrize(
    ("value", "code", "words"),
    [
        ("nps_detractor", "nps_detractors", "negative NPS answers (detractors)"),
        ("csat_negative", "csat_negative", "negative CSAT answers"),
        ("interaction_negative", "negative_interactions", "interactions with negative sentiment"),
    ],
)
def test_a_signal_alert_says_what_it_counted_and_never_complaints(
    value: str, code: str, words: str
) -> None:
    series = SeriesKey(Dimension.SIGNAL, value)
    alert = _alert(series, 14, 2.0)
    reach = Reach(9, 2)
    text = describe(alert, reach, assess(14, 2.0, reach, CONFIG))
    assert counted(series).code == code
    # 14 / 2 = 7.0 -> 3; 9 customers -> 1, 2 channels -> 2; 3 + 2 = 5: high.
    assert text.en == (
        f"14 {words} where 2.0 were expected (7.0x); 9 customers, 2 channels; severity high"
    )
    assert "complaint" not in text.en.lower()
    assert "投诉" not in text.zh


def test_a_complaint_alert_names_its_series() -> None:
    series = SeriesKey(Dimension.CATEGORY, "delivery")
    alert = _alert(series, 30, 6.0)
    reach = Reach(12, 1)
    text = describe(alert, reach, assess(30, 6.0, reach, CONFIG))
    assert counted(series).code == "complaints"
    assert text.en == (
        "30 complaints in category 'delivery' where 6.0 were expected (5.0x); "
        "12 customers, 1 channels; severity medium"
    )
    assert text.zh.startswith("类别“delivery”出现 30 起投诉")


# ---- stages ---------------------------------------------------------------------------------

# Written out, not derived from the module's order: the only moves allowed.
ALLOWED = {("identify", "respond"), ("respond", "control"), ("control", "recover")}


@pytest.mark.parametrize(("current", "requested"), list(product(Stage, Stage)))
def test_only_the_next_stage_is_allowed(current: Stage, requested: Stage) -> None:
    if (current.value, requested.value) in ALLOWED:
        assert check_move(current, requested) == requested
    else:
        with pytest.raises(StageRefused):
            check_move(current, requested)


def test_refusals_say_why() -> None:
    with pytest.raises(StageRefused, match="control cannot follow identify: respond comes first"):
        check_move(Stage.IDENTIFY, Stage.CONTROL)
    with pytest.raises(StageRefused, match="the alert is in control: stages only move forward"):
        check_move(Stage.CONTROL, Stage.RESPOND)
    with pytest.raises(StageRefused, match="the alert is in respond already"):
        check_move(Stage.RESPOND, Stage.RESPOND)
    with pytest.raises(StageRefused, match="recover is the last stage"):
        check_move(Stage.RECOVER, Stage.RECOVER)


def test_the_four_stages_in_order() -> None:
    path = [Stage.IDENTIFY]
    while (following := next_stage(path[-1])) is not None:
        path.append(following)
    assert [s.value for s in path] == ["identify", "respond", "control", "recover"]


def test_every_negative_signal_the_projection_counts_has_a_name() -> None:
    from services.complaints.crisis_severity import SIGNALS
    from services.complaints.projection import signals_of
    from shared.events import RECORDED, validate_event

    def raw(type_name: str, data: dict[str, object]) -> dict[str, object]:
        return {
            "specversion": "1.0",
            "id": type_name,
            "source": "tests",
            "type": type_name,
            "time": "2026-03-02T10:00:00+00:00",
            "subject": "c-1",
            "data": data,
        }

    negative = [
        raw("crm.survey.nps", {"score": 0}),
        raw("crm.survey.csat", {"score": 1}),
        raw(
            "crm.interaction.logged",
            {"channel": "chat", "direction": "inbound", "sentiment": "negative"},
        ),
    ]
    values = {v for r in negative for _, v in signals_of(validate_event(r, RECORDED))}
    assert len(values) == 3
    assert values <= set(SIGNALS)
