"""An agent's command decided on the complaint as it stands (services/complaints/domain.py
command_event, command_data): the event it becomes, the body completed with what the command
implies, and each kind of refusal with the field it names. The expected events, levels and
fields are worked out by hand from the rules: the default escalation level is one above the
complaint's (10 at most), a step command names its step, a promised date may not be past,
and the state and step order decide the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.complaints.domain import (
    COMMAND_DATA,
    COMMANDS,
    STEP_ORDER,
    Complaint,
    Invalid,
    InvalidBody,
    Rejected,
    StepPolicy,
    command_data,
    command_event,
)
from shared.events import ComplaintEscalated, ComplaintSolutionProposed, ComplaintStepDone

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
# The four steps of the first conversation skipped: propose may come first.
FIRST_FOUR_SKIPPED = StepPolicy(frozenset(STEP_ORDER[:4]))


def complaint(status: str = "opened", level: int = 0) -> Complaint:
    return Complaint("c-7", "cust-7", status=status, escalation_level=level)


def test_every_command_has_the_data_of_its_event() -> None:
    assert set(COMMAND_DATA) == set(COMMANDS)


def test_escalate_without_a_level_goes_one_above_the_complaints() -> None:
    event_type, data = command_event(complaint("investigating", level=2), "escalate", {}, NOW)
    assert event_type == "crm.complaint.escalated"
    assert isinstance(data, ComplaintEscalated)
    assert (data.complaint_id, data.level) == ("c-7", 3)


def test_escalate_with_its_level_keeps_it() -> None:
    _, data = command_event(complaint("investigating", level=2), "escalate", {"level": 5}, NOW)
    assert isinstance(data, ComplaintEscalated)
    assert data.level == 5


def test_escalate_at_the_highest_level_is_rejected_on_the_level() -> None:
    # One above 10 would be 11, over the bound: the default stays 10, which is not above.
    state = complaint("escalated", level=10)
    assert command_data(state, "escalate", {}, NOW) == ComplaintEscalated(
        complaint_id="c-7", level=10
    )
    with pytest.raises(Rejected, match="already at escalation level 10") as refused:
        command_event(state, "escalate", {}, NOW)
    assert refused.value.field == "body.level"


def test_a_step_command_names_its_step() -> None:
    event_type, data = command_event(complaint(), "listen", {"notes": "late parcel"}, NOW)
    assert event_type == "crm.complaint.step_done"
    assert data == ComplaintStepDone(complaint_id="c-7", step="listen", notes="late parcel")


def test_a_step_out_of_order_is_rejected_on_the_step_it_skips() -> None:
    with pytest.raises(Rejected) as refused:
        command_event(complaint(), "thank", {}, NOW)
    assert refused.value.field == "steps.listen"
    # The policy that lets agents skip listening lets them thank first.
    skip_listen = StepPolicy(frozenset({"listen"}))
    assert command_event(complaint(), "thank", {}, NOW, skip_listen)[0] == (
        "crm.complaint.step_done"
    )


def test_a_command_the_status_does_not_allow_is_rejected_on_the_status() -> None:
    # An opened complaint has had no first response: it cannot wait on the customer.
    with pytest.raises(Rejected, match="only after a first response") as refused:
        command_event(complaint("opened"), "wait", {}, NOW)
    assert refused.value.field == "status"


def test_a_promise_in_the_past_is_an_invalid_body() -> None:
    body = {"promised_at": NOW - timedelta(minutes=1)}
    with pytest.raises(InvalidBody) as refused:
        command_event(complaint(), "propose", body, NOW, FIRST_FOUR_SKIPPED)
    assert refused.value.errors == [("body.promised_at", "is in the past")]


def test_a_proposal_with_its_timetable_is_accepted() -> None:
    promised = NOW + timedelta(days=2)
    event_type, data = command_event(
        complaint(), "propose", {"promised_at": promised}, NOW, FIRST_FOUR_SKIPPED
    )
    assert event_type == "crm.complaint.solution_proposed"
    assert data == ComplaintSolutionProposed(complaint_id="c-7", promised_at=promised)


def test_a_proposal_without_a_timetable_is_refused_by_the_policy() -> None:
    with pytest.raises(Invalid, match="timetable") as refused:
        command_event(complaint(), "propose", {"solution": "refund"}, NOW, FIRST_FOUR_SKIPPED)
    assert refused.value.field == "body.promised_at"


def test_a_body_wrong_in_itself_names_each_field() -> None:
    with pytest.raises(InvalidBody) as refused:
        command_event(complaint("resolved"), "feedback", {"score": 6, "colour": "red"}, NOW)
    assert sorted(field for field, _ in refused.value.errors) == ["body.colour", "body.score"]


def test_the_body_is_checked_before_the_state() -> None:
    # Feedback on an opened complaint is not allowed, but the score of 0 is wrong anyway:
    # the body's error comes first, as the agent can fix it whatever the state.
    with pytest.raises(InvalidBody) as refused:
        command_event(complaint("opened"), "feedback", {"score": 0}, NOW)
    assert [field for field, _ in refused.value.errors] == ["body.score"]
