"""The dashboard says what a crisis alert counted, as the complaints service names it: a
negative-signal alert is never "complaints" (read from the page's script; no browser)."""

from __future__ import annotations

from pathlib import Path

from services.complaints.crisis_severity import COMPLAINTS, SIGNALS

SCRIPT = Path(__file__).parents[2] / "services" / "reporting" / "static" / "dashboard.js"


def test_every_signal_the_detector_counts_has_its_own_words_on_the_dashboard() -> None:
    script = SCRIPT.read_text()
    for value, names in SIGNALS.items():
        assert f'{value}: "{names.en}"' in script, value
        assert f'{value}: "{names.zh}"' in script, value
    assert "complaints in" in script  # complaint alerts keep their wording
    assert COMPLAINTS.zh in script
