"""Scoring's history rows of an erased customer carry no free text, whatever the order in
which the erasure and the customer's interactions reach scoring (same batch, or later)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.scoring.domain import history_of, personal_data
from shared.events import RECORDED, Event, validate_event
from tests.helpers import event

ERASED_AT = datetime(2026, 11, 1, 12, tzinfo=UTC)


def interaction(customer: str, at: datetime) -> Event:
    data = {"channel": "chat", "direction": "inbound", "topic": "Chen Jie's loan"}
    return validate_event(event("crm.interaction.logged", customer, data, time=at), RECORDED)


def test_an_erased_customers_interaction_keeps_its_labels_and_loses_its_topic() -> None:
    before = interaction("cust-gone", ERASED_AT - timedelta(days=1))
    after = interaction("cust-gone", ERASED_AT + timedelta(days=1))  # a new relationship
    other = interaction("cust-here", ERASED_AT - timedelta(days=1))
    rows = history_of(
        [before, after, other],
        UTC,
        {"cust-gone": ERASED_AT},
    ).interactions
    topics = {(row[0], row[3]): row[7] for row in rows}
    assert topics == {
        ("cust-gone", ERASED_AT - timedelta(days=1)): None,
        ("cust-gone", ERASED_AT + timedelta(days=1)): "Chen Jie's loan",
        ("cust-here", ERASED_AT - timedelta(days=1)): "Chen Jie's loan",
    }
    assert {row[4] for row in rows} == {"chat"}  # the labels stay: the counts need them


def test_an_interaction_with_a_topic_asks_for_the_customers_erasures() -> None:
    profiled, erasing = personal_data([interaction("cust-a", ERASED_AT)])
    assert (profiled, erasing) == ({"cust-a"}, set())
