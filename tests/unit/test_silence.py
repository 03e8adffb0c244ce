"""Silence after a resolved complaint, pure: which windows end in silence and when, by hand
(issue 15 item 8)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from services.complaints.silence import (
    CustomerSilence,
    Watch,
    fold,
    signal_id,
    take_due,
)
from shared.events import RECORDED, Event, validate_event

N = 30  # silent days
R = datetime(2026, 1, 10, 12, tzinfo=UTC)  # the resolution
DAY = timedelta(days=1)
_ids = itertools.count()


def ev(type_name: str, at: datetime, **data: Any) -> Event:
    raw = {
        "specversion": "1.0",
        "id": f"e{next(_ids)}",
        "source": "tests",
        "type": type_name,
        "time": at.isoformat(),
        "subject": "c-1",
        "data": data,
    }
    return validate_event(raw, RECORDED)


def resolved(at: datetime, complaint: str = "k1") -> Event:
    return ev("crm.complaint.resolved", at, complaint_id=complaint)


def purchase(at: datetime) -> Event:
    return ev("crm.purchase.completed", at, order_id=f"o{next(_ids)}", amount="5", currency="USD")


def interaction(at: datetime, direction: str) -> Event:
    return ev("crm.interaction.logged", at, channel="phone", direction=direction)


def signalled(*batches: list[Event], now: datetime) -> list[Watch]:
    """Fold the batches one after the other (as separate deliveries), then sweep at `now`."""
    state = CustomerSilence()
    for batch in batches:
        state = fold(state, batch, N)
    silent, _ = take_due(state, N, now)
    return silent


def test_a_silent_window_is_signalled_when_it_ends_and_not_before() -> None:
    state = fold(CustomerSilence(), [purchase(R - 5 * DAY), resolved(R)], N)
    assert take_due(state, N, R + 30 * DAY - timedelta(seconds=1))[0] == []
    silent, rest = take_due(state, N, R + 30 * DAY)
    assert silent == [Watch("k1", R, None, R - 5 * DAY)]
    assert silent[0].due_at(N) == datetime(2026, 2, 9, 12, tzinfo=UTC)  # 10 Jan + 30 days
    assert rest.watches == ()  # swept once: nothing left to signal again
    assert take_due(rest, N, R + 60 * DAY)[0] == []


def test_a_purchase_or_an_inbound_contact_in_the_window_breaks_the_silence() -> None:
    assert signalled([resolved(R), purchase(R + 10 * DAY)], now=R + 40 * DAY) == []
    assert signalled([resolved(R), interaction(R + 29 * DAY, "inbound")], now=R + 40 * DAY) == []
    survey = ev("crm.survey.nps", R + DAY, score=9)
    assert signalled([resolved(R), survey], now=R + 40 * DAY) == []
    feedback = ev("crm.complaint.feedback", R + DAY, complaint_id="k1", score=4)
    assert signalled([resolved(R), feedback], now=R + 40 * DAY) == []


def test_the_teams_own_contacts_and_steps_do_not() -> None:
    outbound = interaction(R + 3 * DAY, "outbound")
    closed = ev("crm.complaint.closed", R + 2 * DAY, complaint_id="k1")
    assert len(signalled([resolved(R), outbound, closed], now=R + 30 * DAY)) == 1


def test_coming_back_after_the_window_leaves_the_silence_standing() -> None:
    late = purchase(R + 31 * DAY)
    assert len(signalled([resolved(R), late], now=R + 32 * DAY)) == 1


def test_an_act_folded_before_its_resolution_arrives_still_counts() -> None:
    # The purchase topic was read first: the purchase (day 5) is folded before the resolution.
    assert signalled([purchase(R + 5 * DAY)], [resolved(R)], now=R + 40 * DAY) == []
    # And a purchase from before the resolution is no act in its window.
    assert len(signalled([purchase(R - DAY)], [resolved(R)], now=R + 30 * DAY)) == 1


def test_a_later_resolution_replaces_a_running_window() -> None:
    silent = signalled([resolved(R, "k1")], [resolved(R + 10 * DAY, "k2")], now=R + 40 * DAY)
    assert [(w.complaint_id, w.due_at(N)) for w in silent] == [("k2", R + 40 * DAY)]
    # A resolution older than the latest, arriving late, changes nothing.
    assert signalled([resolved(R + 10 * DAY, "k2")], [resolved(R, "k1")], now=R + 39 * DAY) == []


def test_a_window_that_ended_before_the_next_resolution_is_still_signalled() -> None:
    silent = signalled([resolved(R, "k1")], [resolved(R + 35 * DAY, "k2")], now=R + 65 * DAY)
    assert [(w.complaint_id, w.due_at(N)) for w in silent] == [
        ("k1", R + 30 * DAY),
        ("k2", R + 65 * DAY),
    ]


def test_a_reopen_ends_the_window_and_the_next_resolution_starts_one() -> None:
    reopened = ev("crm.complaint.reopened", R + 2 * DAY, complaint_id="k1")
    assert signalled([resolved(R), reopened], now=R + 31 * DAY) == []
    again = resolved(R + 4 * DAY)
    silent = signalled([resolved(R), reopened, again], now=R + 34 * DAY)
    assert [w.resolved_at for w in silent] == [R + 4 * DAY]


def test_an_erasure_ends_the_window() -> None:
    erased = ev("crm.customer.erased", R + DAY)
    assert signalled([resolved(R), erased], now=R + 31 * DAY) == []


def test_the_signal_id_is_the_same_for_the_same_silence() -> None:
    watch = Watch("k1", R)
    assert signal_id("c-1", watch) == "silence:c-1:k1:2026-01-10T12:00:00+00:00"
    assert signal_id("c-1", Watch("k1", R, None, R - DAY)) == signal_id("c-1", watch)
